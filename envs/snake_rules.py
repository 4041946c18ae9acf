"""Snake's board geometry, shared by the single game (envs/snake.py) and the batched
twin (envs/snake_batched.py): headings, turns, and the views that re-encode a board."""

import numpy as np

# headings in turning order: a left turn adds one, a right turn subtracts one
RIGHT, UP, LEFT, DOWN = range(4)
DY = (0, -1, 0, 1)


DX = (1, 0, -1, 0)


TURN = (0, 1, 3)  # action -> change of heading (straight, left, right)


ACTION_NAMES = ("straight", "left", "right")


VIEWS = ("board", "turned", "centred")


OFF_BOARD = 3  # channel 0 of a canvas square that is not on the board


def egocentric_turns(heading):
    """Quarter turns (counter-clockwise) that bring `heading` to UP."""
    return (UP - heading) % 4


def view_shape(height: int, width: int, view: str) -> tuple[int, int, int]:
    if view == "board":
        return height, width, 2
    if view not in VIEWS:
        raise ValueError(f"view={view!r} is not one of {VIEWS}")
    side = max(height, width) if view == "turned" else 2 * max(height, width) - 1
    return side, side, 2


def memory_needs(height: int, width: int, view: str, num_envs: int = 1) -> int:
    """Bytes the envs of this board allocate, estimated from above: per game its board
    and body (10 bytes a square) and an observation (2 bytes a viewed square); shared, the
    move table (about 540 bytes a square while Python builds it), a turned or centred
    view's offsets (128 bytes a viewed square) and the observation space's two bounds."""
    squares = height * width
    rows, cols, _ = view_shape(height, width, view)
    offsets = 0 if view == "board" else 128 * rows * cols
    return num_envs * (10 * squares + 2 * rows * cols) + 540 * squares + offsets + 4 * rows * cols


def view_offsets(height: int, width: int, view: str) -> np.ndarray:
    """[4 headings, side, side, 2]: for each square of a turned or centred view, the
    (row, column) of the board square it shows, relative to the board's top-left square
    (turned) or to the head (centred); a turned view's canvas squares beyond the board
    get a far-off coordinate. Built once per env and small on any board; the single env
    and the batched twin both read their views through it."""
    side = view_shape(height, width, view)[0]
    if view == "turned":  # turn the board, then put it in the canvas's top-left corner
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    else:  # centred: the head at the centre, then the canvas turned about it
        rows, cols = np.meshgrid(np.arange(side) - side // 2, np.arange(side) - side // 2,
                                 indexing="ij")
    by_heading = []
    for heading in range(4):
        turned = np.rot90(np.stack([rows, cols], -1), egocentric_turns(heading), axes=(0, 1))
        canvas = np.full((side, side, 2), -side)
        canvas[:turned.shape[0], :turned.shape[1]] = turned
        by_heading.append(canvas)
    return np.stack(by_heading)
