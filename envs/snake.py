"""Snake of the tfjs-examples `snake-dqn` demo (docs/recipes.md, part 2).

Board height x width, `num_fruits` fruits, a snake of `init_len` squares that starts
straight and horizontal, heading right, head at a random row and at a random column in
[init_len - 1, width), body to its left. Actions are relative: 0 straight, 1 turn left,
2 turn right. Each step the head moves; leaving the board or landing on any body square
(the tail counts: it has not moved yet) ends the game with reward -10. Otherwise a fruit
under the head gives +10, the snake grows and a new fruit appears on a uniformly random
empty square; without a fruit the reward is -0.2 and the tail moves up.

Observation [H, W, 2] uint8: channel 0 is 2 at the head and 1 on the body, channel 1 is 1 on
fruit squares. `view` re-encodes the same board losslessly (`view_offsets`): "board" is the
book's; "turned" turns it so the snake always heads up (so "turn left" always means the
same thing on screen) and pads it onto a square canvas of side max(H, W), the squares off
the board marked 3 in channel 0, so any board shape gives one observation shape; "centred"
also turns, on a canvas of side 2 max(H, W) - 1 with the head always at its centre.
`SnakeEnv` is the readable single game (a list of squares); the batched twin keeps N
boards and N rings of body squares as tensors, so a move writes a few squares
per game. A test holds them equal.
"""

import gymnasium as gym
import numpy as np
import torch

from envs import snake_kernel
from nn.seeding import make_generator

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


class SnakeEnv(gym.Env):
    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 8}

    def __init__(self, render_mode: str | None = None, height: int = 9, width: int = 9,
                 num_fruits: int = 1, init_len: int = 2, max_steps_per_game: int | None = None,
                 reward_fruit: float = 10.0, reward_step: float = -0.2,
                 reward_death: float = -10.0, view: str = "board"):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not one of "
                             f"{self.metadata['render_modes']}")
        if not 2 <= init_len <= width:
            raise ValueError(f"init_len={init_len} must be between 2 and width={width}")
        if height < 2:
            raise ValueError(f"height={height} must be at least 2")
        if not 1 <= num_fruits <= height * width - init_len:
            raise ValueError(f"num_fruits={num_fruits} must be between 1 and height * width - "
                             f"init_len = {height * width - init_len} on a {height}x{width} board")
        self.render_mode = render_mode
        self.view = view
        self.view_offsets = None if view == "board" else view_offsets(height, width, view)
        # the left-right mirror (`mirrored`) maps a view to the view of the mirrored game,
        # except a turned non-square board, which sits in the canvas's left corner
        self.mirror_symmetric = view != "turned" or height == width
        self.height, self.width = height, width
        self.num_fruits, self.init_len = num_fruits, init_len
        self.max_steps_per_game = max_steps_per_game
        self.rewards = (reward_fruit, reward_step, reward_death)
        # uint8, as the batched twin keeps its boards: a quarter of float32's bytes, and
        # nothing to convert when the twin serves as a gymnasium vector env
        self.observation_space = gym.spaces.Box(0, 2 if view == "board" else OFF_BOARD,
                                                view_shape(height, width, view), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.snake: list[tuple[int, int]] = []  # head first
        self.fruits: set[tuple[int, int]] = set()
        self.heading = RIGHT
        self.steps = self.eaten = 0
        self.q_values = None  # shown by render() when set (watch sets it)
        self.caption = ""
        self._renderer = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "snake" in options:  # a given position (tests, the batched twin)
            self.snake = [tuple(int(v) for v in cell) for cell in options["snake"]]
            self.fruits = {tuple(int(v) for v in cell) for cell in options["fruits"]}
            self.heading = int(options.get("heading", RIGHT))
        else:
            y = int(self.np_random.integers(self.height))
            x = int(self.np_random.integers(self.init_len - 1, self.width))
            self.snake = [(y, x - i) for i in range(self.init_len)]
            self.heading = RIGHT
            self.fruits = set()
            for _ in range(self.num_fruits):
                self._place_fruit()
        self.steps = self.eaten = 0
        if self.render_mode == "human":
            self.render()
        return self._obs(), self._info()

    def _place_fruit(self) -> None:
        taken = set(self.snake) | self.fruits
        empty = [(y, x) for y in range(self.height) for x in range(self.width)
                 if (y, x) not in taken]
        if empty:  # a full board gets no new fruit
            self.fruits.add(empty[int(self.np_random.integers(len(empty)))])

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not 0 (straight), 1 (left) or 2 (right)")
        reward_fruit, reward_step, reward_death = self.rewards
        heading = (self.heading + TURN[int(action)]) % 4
        head_y, head_x = self.snake[0]
        new = (head_y + DY[heading], head_x + DX[heading])
        self.steps += 1
        off_board = not (0 <= new[0] < self.height and 0 <= new[1] < self.width)
        if off_board or new in self.snake:  # the tail square counts as body
            return self._obs(), reward_death, True, False, self._info()
        self.heading = heading
        self.snake.insert(0, new)
        if new in self.fruits:
            self.fruits.remove(new)
            self.eaten += 1
            self._place_fruit()
            reward = reward_fruit
        else:
            self.snake.pop()
            reward = reward_step
        truncated = self.max_steps_per_game is not None and self.steps >= self.max_steps_per_game
        if self.render_mode == "human":
            self.render()
        return self._obs(), reward, False, truncated, self._info()

    def _obs(self) -> np.ndarray:
        obs = np.zeros((self.height, self.width, 2), dtype=np.uint8)
        for y, x in self.snake:
            obs[y, x, 0] = 1
        obs[self.snake[0][0], self.snake[0][1], 0] = 2
        for y, x in self.fruits:
            obs[y, x, 1] = 1
        if self.view == "board":
            return obs
        offsets = self.view_offsets[self.heading]
        anchor = self.snake[0] if self.view == "centred" else (0, 0)
        rows, cols = anchor[0] + offsets[..., 0], anchor[1] + offsets[..., 1]
        inside = (rows >= 0) & (rows < self.height) & (cols >= 0) & (cols < self.width)
        seen = obs[rows.clip(0, self.height - 1), cols.clip(0, self.width - 1)]
        seen[~inside] = (OFF_BOARD, 0)
        return seen

    @staticmethod
    def mirrored(obs: torch.Tensor, actions: torch.Tensor):
        """The left-right mirror image of a batch of observations [N, H, W, 2] and their
        actions: Snake's rules do not change under the mirror, which swaps left and right
        turns, so a mirrored transition is as real as the one it came from (a lossless
        augmentation for DQN, `algo.mirror`). Holds for the centred view as well, and for
        the turned view of a square board."""
        return obs.flip(-2), torch.where(actions == 0, actions, 3 - actions)

    def _info(self) -> dict:
        return {"fruits_eaten": self.eaten, "length": len(self.snake), "steps": self.steps}

    def human_action(self, arrow_pressed: str | None, arrows_held: set[str]) -> int:
        """Arrow keys name a direction on screen; turn towards it (reversing is ignored)."""
        wanted = {"right": RIGHT, "up": UP, "left": LEFT, "down": DOWN}.get(arrow_pressed)
        if wanted is None:
            return 0
        return {0: 0, 1: 1, 3: 2}.get((wanted - self.heading) % 4, 0)

    def next_head_squares(self) -> list[tuple[int, int]]:
        """Where the head lands for each action (straight, left, right); may be off board."""
        y, x = self.snake[0]
        squares = []
        for turn in TURN:
            heading = (self.heading + turn) % 4
            squares.append((y + DY[heading], x + DX[heading]))
        return squares

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode")
            return None
        if self._renderer is None:
            from envs.snake_render import SnakeRenderer

            self._renderer = SnakeRenderer(self.height, self.width, self.render_mode,
                                           self.metadata["render_fps"])
        return self._renderer.draw(self)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def batched(self, num_envs: int, device: torch.device | str = "cpu",
                seed: int = 0, kernel: bool | None = None) -> "BatchedSnake":
        return BatchedSnake(num_envs, self.height, self.width, self.num_fruits, self.init_len,
                            self.max_steps_per_game, self.rewards, torch.device(device), seed,
                            self.view, kernel)


class BatchedSnake:
    """N snake games as tensors on one device; finished games restart via `reset_done`.

    The state is kept so that a move touches a few squares per game, not whole boards:
    `board` is every game's observation, flat ([N, H*W*2], square s channel c at 2s + c),
    plus one spare column that masked-off writes go to; `body` is a ring buffer per game
    of the snake's squares, tail at `tail_ptr`, head at `head_ptr`, with a spare column
    of its own. A table gives the
    square each (square, heading, action) leads to, or -1 off the board.

    On the CPU a move runs as one compiled loop over games (`envs.snake_kernel`, the
    same steps); elsewhere, or with `kernel=False`, as tensor operations with no host sync.
    """

    GAME_STATE = ("board", "body", "head", "head_ptr", "tail_ptr", "heading", "length",
                  "steps", "eaten")
    # per-game counters a learner reports, each with its label: training logs <name>100
    # beside cumulativeReward100 (eaten100 is the book's tag), greedy evaluation
    # mean_<label> and max_<label>
    counters = {"eaten": "fruits", "length": "length"}
    restores_games = True  # state_dict holds every game in progress

    def __init__(self, num_envs: int, height: int, width: int, num_fruits: int, init_len: int,
                 max_steps_per_game: int | None, rewards: tuple, device: torch.device,
                 seed: int = 0, view: str = "board", kernel: bool | None = None):
        self.view = view
        self.kernel = device.type == "cpu" if kernel is None else kernel
        if self.kernel and device.type != "cpu":
            raise ValueError(f"the compiled snake loop runs on the CPU, not {device}: "
                             "leave kernel unset")
        self.num_envs, self.height, self.width = num_envs, height, width
        self.num_fruits, self.init_len = num_fruits, init_len
        self.max_steps_per_game = max_steps_per_game
        self.reward_fruit, self.reward_step, self.reward_death = rewards
        self.reward_values = np.array(rewards, dtype=np.float32)
        self.device = device
        self.generator = make_generator(seed, device)
        self.observation_shape = view_shape(height, width, view)
        self.observation_dtype = torch.uint8
        self.num_actions = 3
        self.squares = squares = height * width
        self.spare = 2 * squares  # the board column that masked-off writes go to
        # (square * 4 + heading) * 3 + action -> the square moved to (-1: off the board);
        # heading * 3 + action -> the new heading
        moves, turns = [], []
        for square in range(squares):
            y, x = divmod(square, width)
            for heading in range(4):
                for turn in TURN:
                    new = (heading + turn) % 4
                    ny, nx = y + DY[new], x + DX[new]
                    inside = 0 <= ny < height and 0 <= nx < width
                    moves.append(ny * width + nx if inside else -1)
                    if square == 0:
                        turns.append(new)
        self.move_table = torch.tensor(moves, device=device)
        self.turn_table = torch.tensor(turns, device=device)
        # what a move writes: old head -> body, tail square -> free, new head, eaten fruit
        self.write_values = torch.tensor([1, 0, 2, 0], dtype=torch.uint8,
                                         device=device).expand(num_envs, 4)
        if view != "board":  # per heading: the board square each viewed square shows
            offsets = view_offsets(height, width, view)
            self.off_board = torch.tensor([OFF_BOARD, 0], dtype=torch.uint8, device=device)
            self.view_rows = torch.tensor(offsets[..., 0].reshape(4, -1), device=device)
            self.view_cols = torch.tensor(offsets[..., 1].reshape(4, -1), device=device)
        self.board = torch.zeros(num_envs, 2 * squares + 1, dtype=torch.uint8, device=device)
        self.body = torch.zeros(num_envs, squares + 1, dtype=torch.long, device=device)
        zeros = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.head, self.head_ptr, self.tail_ptr = zeros.clone(), zeros.clone(), zeros.clone()
        self.heading, self.length = zeros.clone(), zeros.clone()
        self.steps, self.eaten = zeros.clone(), zeros.clone()
        if self.kernel:
            self._tables = (self.move_table.numpy(), self.turn_table.numpy())
            self._bind_arrays()

    def _start(self, where: torch.Tensor) -> None:
        """New games in the rows where `where` is true: a straight snake heading right,
        then the fruits. Every row is computed and written through the mask, so nothing
        reads the mask on the host (no sync on a GPU); the state changes in place."""
        n, k, w, spare = self.num_envs, self.init_len, self.width, self.spare
        y = torch.randint(self.height, (n,), generator=self.generator, device=self.device)
        x = torch.randint(k - 1, w, (n,), generator=self.generator, device=self.device)
        tail_to_head = torch.arange(k - 1, -1, -1, device=self.device)
        cells = (y * w + x)[:, None] - tail_to_head  # [n, k], tail first
        self.board.masked_fill_(where[:, None], 0)
        self.board.scatter_(1, torch.where(where[:, None], 2 * cells, spare), 1)
        self.board.scatter_(1, torch.where(where, 2 * cells[:, -1], spare)[:, None], 2)
        for _ in range(self.num_fruits):
            self._place_fruit(where)
        self.body[:, :k] = torch.where(where[:, None], cells, self.body[:, :k])
        for name, value in (("head", cells[:, -1]), ("tail_ptr", 0), ("head_ptr", k - 1),
                            ("heading", RIGHT), ("length", k), ("steps", 0), ("eaten", 0)):
            state = getattr(self, name)
            state.copy_(torch.where(where, value, state))

    def _place_fruit(self, where: torch.Tensor) -> None:
        """A fruit for each game where `where` is true, on a uniformly random empty square
        (none if the board is full): the r-th empty square, r uniform below the empty
        count. Drawn for every row, written through the mask (no host sync)."""
        squares = self.board[:, :self.spare].view(self.num_envs, -1, 2)
        empty = squares.sum(2) == 0
        counts = empty.sum(1)
        u = torch.rand(self.num_envs, generator=self.generator, device=self.device)
        r = torch.minimum((u * counts).long(), counts - 1)
        pick = (empty.cumsum(1) > r[:, None]).to(torch.uint8).argmax(1)
        column = torch.where(where & (counts > 0), 2 * pick + 1, self.spare)
        self.board.scatter_(1, column[:, None], 1)

    def reset(self) -> torch.Tensor:
        self.board.zero_()
        self._start(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self.observation()

    def reset_done(self, done: torch.Tensor) -> torch.Tensor:
        """Start new games where `done` is true; only those games are built afresh."""
        if self.kernel:
            self._start_compiled(done.contiguous().numpy())
        else:
            self._start(done)
        return self.observation()

    def reset_arrays(self, done: np.ndarray) -> np.ndarray:
        """`reset_done` for NumPy callers (the gymnasium vector env; the compiled loop, on
        the CPU): a bool mask in, the observations out."""
        self._start_compiled(done)
        return self.observation().numpy()

    def _start_compiled(self, done: np.ndarray) -> None:
        """`_start` as one compiled loop (CPU) over the games where `done`."""
        new_games = np.count_nonzero(done)
        if new_games:
            uniform = torch.rand(new_games, 2 + self.num_fruits, generator=self.generator)
            snake_kernel.start(*self._arrays, done, uniform.numpy(), self.width,
                               self.init_len, self.num_fruits)

    def state_dict(self) -> dict:
        """Every game's state and the random stream, for a checkpoint."""
        return {**{name: getattr(self, name) for name in self.GAME_STATE},
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        missing = [name for name in self.GAME_STATE if name not in state]
        if missing:
            raise ValueError(f"the saved snake games lack {missing} (an older rlgen wrote "
                             "them); start a new run")
        for name in self.GAME_STATE:
            setattr(self, name, state[name].to(self.device))
        if self.kernel:
            self._bind_arrays()
        self.generator.set_state(state["generator"])

    def observation(self) -> torch.Tensor:
        """[N, *observation_shape] uint8 through the env's view (see `view_offsets`). A copy."""
        if self.view == "board":
            return self.board[:, :self.spare].clone().view(self.num_envs, *self.observation_shape)
        centred = self.view == "centred"
        if self.kernel:
            out = torch.empty(self.num_envs, self.view_rows.shape[1], 2, dtype=torch.uint8)
            snake_kernel.viewed_boards(self.board.numpy(), self.head.numpy(),
                                       self.heading.numpy(), self.view_rows.numpy(),
                                       self.view_cols.numpy(), self.width, centred, out.numpy())
        else:
            rows, cols = self.view_rows[self.heading], self.view_cols[self.heading]
            if centred:
                rows = rows + (self.head // self.width)[:, None]
                cols = cols + (self.head % self.width)[:, None]
            inside = (rows >= 0) & (rows < self.height) & (cols >= 0) & (cols < self.width)
            square = torch.where(inside, rows * self.width + cols, 0)
            out = torch.stack([self.board.gather(1, 2 * square),
                               self.board.gather(1, 2 * square + 1)], 2)
            out[~inside] = self.off_board
        return out.view(self.num_envs, *self.observation_shape)

    def step(self, actions: torch.Tensor):
        """Returns (obs, reward, terminated, truncated). A finished game's obs is its last
        board; call `reset_done` to start new games where needed."""
        if self.kernel:
            moved = self._move_compiled(actions.to(torch.long).contiguous().numpy())
            return self.observation(), *(torch.from_numpy(array) for array in moved)
        reward, dead, ate, truncated = self._move(actions)
        self._place_fruit(ate)  # new fruit only where one was eaten
        return self.observation(), reward, dead, truncated

    def _bind_arrays(self) -> None:
        """NumPy views of the game state that the compiled loops write in place (taken
        once: the state tensors are only ever changed in place, or replaced by a load)."""
        self._arrays = [getattr(self, name).numpy() for name in self.GAME_STATE]

    def step_arrays(self, actions: np.ndarray):
        """`step` for NumPy callers (the gymnasium vector env; the compiled loop, on the
        CPU): int64 actions, checked before any game moves, and NumPy arrays out, with no
        round trip of every array through torch."""
        reward, dead, truncated = self._move_compiled(actions)
        return self.observation().numpy(), reward, dead, truncated

    def _move_compiled(self, actions: np.ndarray):
        """`_move` and the new fruits as one compiled loop (CPU) on int64 actions; returns
        NumPy (reward, terminated, truncated)."""
        n = self.num_envs
        uniform = torch.rand(n, generator=self.generator)  # for the fruits eaten
        reward, dead, truncated = np.empty(n, np.float32), np.empty(n, bool), np.empty(n, bool)
        bad = snake_kernel.move(*self._arrays, actions, *self._tables, uniform.numpy(),
                                self.reward_values,
                                -1 if self.max_steps_per_game is None else self.max_steps_per_game,
                                reward, dead, truncated)
        if bad >= 0:  # no game has moved
            raise ValueError(f"actions must be in [0, 3), got [{actions[bad]}] (game {bad})")
        return reward, dead, truncated

    def _move(self, actions: torch.Tensor):
        """Every game's move, without the new fruit: the same few tensor operations for
        any number of games, with no host sync."""
        move = self.head * 12 + self.heading * 3 + actions
        cell = self.move_table.take(move)
        off = cell < 0
        cell = cell.clamp(min=0)
        at_cell = torch.stack([2 * cell, 2 * cell + 1], 1)  # its body and fruit columns
        here = self.board.gather(1, at_cell)
        dead = off | (here[:, 0] > 0)  # any body square, the tail included
        alive = ~dead
        ate = alive & (here[:, 1] > 0)
        moving = alive & ~ate  # the tail moves up unless the snake ate
        tail = self.body.gather(1, self.tail_ptr[:, None]).squeeze(1)
        writes = torch.cat([torch.stack([2 * self.head, 2 * tail], 1), at_cell], 1)
        applies = torch.stack([alive, moving, alive, ate], 1)
        self.board.scatter_(1, writes.masked_fill(~applies, self.spare), self.write_values)
        self.head_ptr = (self.head_ptr + alive.long()) % self.squares
        self.body.scatter_(1, torch.where(alive, self.head_ptr, self.squares)[:, None],
                           cell[:, None])
        self.tail_ptr = (self.tail_ptr + moving.long()) % self.squares
        self.head = torch.where(alive, cell, self.head)
        self.heading = torch.where(alive, self.turn_table.take(move % 12), self.heading)
        grew = ate.long()
        self.length += grew
        self.eaten += grew
        self.steps += 1
        reward = torch.where(dead, self.reward_death,
                             torch.where(ate, self.reward_fruit, self.reward_step))
        if self.max_steps_per_game is None:
            truncated = torch.zeros_like(dead)
        else:
            truncated = alive & (self.steps >= self.max_steps_per_game)
        return reward, dead, ate, truncated

    def game_state(self, i: int) -> dict:
        """Game i as `SnakeEnv.reset(options=...)` takes it (head first)."""
        body = self.body[i].tolist()
        head_ptr, length = int(self.head_ptr[i]), int(self.length[i])
        cells = [divmod(body[(head_ptr - j) % self.squares], self.width) for j in range(length)]
        fruit = self.board[i, 1:self.spare:2].nonzero().flatten().tolist()
        return {"snake": cells, "fruits": [divmod(square, self.width) for square in fruit],
                "heading": int(self.heading[i])}
