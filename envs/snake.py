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

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from omegaconf import MISSING

from envs.snake_batched import BatchedSnake
from envs.snake_rules import (
    ACTION_NAMES,
    DOWN,
    DX,
    DY,
    LEFT,
    OFF_BOARD,
    RIGHT,
    TURN,
    UP,
    memory_needs,
    view_offsets,
    view_shape,
)
from nn.memory import check_fits
from nn.schema import at_least, one_of


@dataclass
class SnakeEnvConfig:
    _target_: str = MISSING
    height: int = at_least(2)
    width: int = at_least(2)
    num_fruits: int = at_least(1)
    init_len: int = at_least(2)
    max_steps_per_game: int | None = at_least(1)
    reward_fruit: float = MISSING
    reward_step: float = MISSING
    reward_death: float = MISSING
    # board: the book's; turned: the snake heads up, padded to a square; centred: turned,
    # the head at the centre of a canvas of side 2 max(height, width) - 1
    view: str = one_of("board", "turned", "centred")


class SnakeEnv(gym.Env):
    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 8}
    action_names = ACTION_NAMES
    # what an export's manifest says of the observation (rl/play.py env_manifest)
    observation_about = (
        "uint8 [rows, columns, 2]: channel 0 is 2 at the head, 1 on the body, 3 on canvas "
        "squares off the board; channel 1 is 1 on fruit. view=board: the board as it is; "
        "turned: turned so the snake heads up, in the top-left of a square canvas of side "
        "max(height, width); centred: turned, the head at the centre of a canvas of side "
        "2 max(height, width) - 1. Actions turn relative to the heading.")

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
        check_fits(f"a {height}x{width} Snake board", memory_needs(height, width, view),
                   "use a smaller board (env.height, env.width)")
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


