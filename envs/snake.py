"""Snake of the tfjs-examples `snake-dqn` demo (SPEC section 2).

Board height x width, `num_fruits` fruits, a snake of `init_len` squares that starts
straight and horizontal, heading right, head at a random row and at a random column in
[init_len - 1, width), body to its left. Actions are relative: 0 straight, 1 turn left,
2 turn right. Each step the head moves; leaving the board or landing on any body square
(the tail counts: it has not moved yet) ends the game with reward -10. Otherwise a fruit
under the head gives +10, the snake grows and a new fruit appears on a uniformly random
empty square; without a fruit the reward is -0.2 and the tail moves up.

Observation [H, W, 2]: channel 0 is 2 at the head and 1 on the body, channel 1 is 1 on
fruit squares. With `egocentric=True` (square boards) the same board is turned so the
snake always heads up: a lossless re-encoding under which "turn left" always means the
same thing on screen. `SnakeEnv` is the readable single game (a list of squares); the batched
twin keeps N boards as tensors, each body square holding the number of steps until the
tail leaves it, so a move is a few whole-board operations. A test holds them equal.
"""

import gymnasium as gym
import numpy as np
import torch

from nn.seeding import make_generator

# headings in turning order: a left turn adds one, a right turn subtracts one
RIGHT, UP, LEFT, DOWN = range(4)
DY = (0, -1, 0, 1)
DX = (1, 0, -1, 0)
TURN = (0, 1, 3)  # action -> change of heading (straight, left, right)
ACTION_NAMES = ("straight", "left", "right")


def egocentric_turns(heading):
    """Quarter turns (counter-clockwise) that bring `heading` to UP."""
    return (UP - heading) % 4


class SnakeEnv(gym.Env):
    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 8}

    def __init__(self, render_mode: str | None = None, height: int = 9, width: int = 9,
                 num_fruits: int = 1, init_len: int = 2, max_steps_per_game: int | None = None,
                 reward_fruit: float = 10.0, reward_step: float = -0.2,
                 reward_death: float = -10.0, egocentric: bool = False):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not one of "
                             f"{self.metadata['render_modes']}")
        if not 2 <= init_len <= width:
            raise ValueError(f"init_len={init_len} must be between 2 and width={width}")
        if height < 2 or num_fruits < 1 or num_fruits > height * width - init_len:
            raise ValueError(f"a {height}x{width} board cannot hold a snake of {init_len} "
                             f"and {num_fruits} fruit(s)")
        if egocentric and height != width:
            raise ValueError(f"egocentric observations need a square board, not {height}x{width}")
        self.render_mode = render_mode
        self.egocentric = egocentric
        self.height, self.width = height, width
        self.num_fruits, self.init_len = num_fruits, init_len
        self.max_steps_per_game = max_steps_per_game
        self.rewards = (reward_fruit, reward_step, reward_death)
        self.observation_space = gym.spaces.Box(0, 2, (height, width, 2), dtype=np.float32)
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
        obs = np.zeros((self.height, self.width, 2), dtype=np.float32)
        for y, x in self.snake:
            obs[y, x, 0] = 1
        obs[self.snake[0][0], self.snake[0][1], 0] = 2
        for y, x in self.fruits:
            obs[y, x, 1] = 1
        if self.egocentric:
            return np.rot90(obs, egocentric_turns(self.heading), axes=(0, 1)).copy()
        return obs

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
                seed: int = 0) -> "BatchedSnake":
        return BatchedSnake(num_envs, self.height, self.width, self.num_fruits, self.init_len,
                            self.max_steps_per_game, self.rewards, torch.device(device), seed,
                            self.egocentric)


class BatchedSnake:
    """N snake games as tensors on one device; finished games restart via `reset_done`.

    `life[n, y, x]` is 0 on a free square and, on a snake square, the number of moves
    until the tail leaves it: the head holds the snake's length, the tail 1.
    """

    def __init__(self, num_envs: int, height: int, width: int, num_fruits: int, init_len: int,
                 max_steps_per_game: int | None, rewards: tuple, device: torch.device,
                 seed: int = 0, egocentric: bool = False):
        self.egocentric = egocentric
        self.num_envs, self.height, self.width = num_envs, height, width
        self.num_fruits, self.init_len = num_fruits, init_len
        self.max_steps_per_game = max_steps_per_game
        self.reward_fruit, self.reward_step, self.reward_death = rewards
        self.device = device
        self.generator = make_generator(seed, device)
        self.observation_shape = (height, width, 2)
        self.observation_dtype = torch.uint8
        self.num_actions = 3
        self.dy = torch.tensor(DY, device=device)
        self.dx = torch.tensor(DX, device=device)
        self.turn = torch.tensor(TURN, device=device)
        self.rows = torch.arange(num_envs, device=device)
        self.life = torch.zeros(num_envs, height, width, dtype=torch.int16, device=device)
        self.fruit = torch.zeros(num_envs, height, width, dtype=torch.bool, device=device)
        zeros = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.head_y, self.head_x, self.heading = zeros.clone(), zeros.clone(), zeros.clone()
        self.length, self.steps, self.eaten = zeros.clone(), zeros.clone(), zeros.clone()

    def _fresh(self, n: int):
        """n new start positions: snake boards, fruit boards, head rows and columns."""
        h, w, k = self.height, self.width, self.init_len
        y = torch.randint(h, (n,), generator=self.generator, device=self.device)
        x = torch.randint(k - 1, w, (n,), generator=self.generator, device=self.device)
        life = torch.zeros(n, h, w, dtype=torch.int16, device=self.device)
        rows = self.rows[:n]
        for i in range(k):
            life[rows, y, x - i] = k - i
        fruit = torch.zeros(n, h, w, dtype=torch.bool, device=self.device)
        for _ in range(self.num_fruits):
            fruit |= self._random_empty(life, fruit)
        return life, fruit, y, x

    def _random_empty(self, life: torch.Tensor, fruit: torch.Tensor) -> torch.Tensor:
        """A one-hot board per game marking a uniformly random empty square (none if full):
        random scores, occupied squares scored -1, the best score wins."""
        n = life.shape[0]
        occupied = ((life > 0) | fruit).view(n, -1)
        scores = torch.rand(occupied.shape, generator=self.generator, device=self.device)
        best = scores.masked_fill(occupied, -1.0).max(1)
        pick = torch.zeros_like(occupied).scatter_(1, best.indices[:, None],
                                                   (best.values >= 0)[:, None])
        return pick.view_as(fruit)

    def reset(self) -> torch.Tensor:
        self.life, self.fruit, self.head_y, self.head_x = self._fresh(self.num_envs)
        self.heading.zero_()
        self.length.fill_(self.init_len)
        self.steps.zero_()
        self.eaten.zero_()
        return self.observation()

    def reset_done(self, done: torch.Tensor) -> torch.Tensor:
        """Start new games where `done` is true; only those games are built afresh."""
        index = done.nonzero().flatten()
        if index.numel():
            life, fruit, y, x = self._fresh(index.numel())
            self.life[index], self.fruit[index] = life, fruit
            self.head_y[index], self.head_x[index] = y, x
            self.heading[index] = 0
            self.length[index] = self.init_len
            self.steps[index] = 0
            self.eaten[index] = 0
        return self.observation()

    GAME_STATE = ("life", "fruit", "head_y", "head_x", "heading", "length", "steps", "eaten")

    def state_dict(self) -> dict:
        """Every game's state and the random stream, for a checkpoint."""
        return {**{name: getattr(self, name) for name in self.GAME_STATE},
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        for name in self.GAME_STATE:
            setattr(self, name, state[name].to(self.device))
        self.generator.set_state(state["generator"])

    def observation(self) -> torch.Tensor:
        """[N, H, W, 2] uint8: 2 at the head, 1 on the body; 1 on fruit."""
        body = self.life > 0
        head = self.life == self.length[:, None, None]
        board = torch.stack([body.to(torch.uint8) + head.to(torch.uint8),
                             self.fruit.to(torch.uint8)], dim=-1)
        if not self.egocentric:
            return board
        turned = torch.stack([torch.rot90(board, k, dims=(1, 2)) for k in range(4)])
        return turned[egocentric_turns(self.heading), self.rows]

    def step(self, actions: torch.Tensor):
        """Returns (obs, reward, terminated, truncated). A finished game's obs is its last
        board; call `reset_done` to start new games where needed."""
        n, w = self.num_envs, self.width
        heading = (self.heading + self.turn[actions]) % 4
        ny, nx = self.head_y + self.dy[heading], self.head_x + self.dx[heading]
        off = (ny < 0) | (ny >= self.height) | (nx < 0) | (nx >= w)
        cell = ny.clamp(0, self.height - 1) * w + nx.clamp(0, w - 1)
        life, fruit = self.life.view(n, -1), self.fruit.view(n, -1)
        dead = off | (life[self.rows, cell] > 0)  # any body square, the tail included
        alive = ~dead
        ate = alive & fruit[self.rows, cell]
        # the tail moves up unless the snake ate; then the head takes its square
        moving = (alive & ~ate)[:, None]
        life = life - (moving & (life > 0)).to(life.dtype)
        self.length = self.length + ate.long()
        life[self.rows, cell] = torch.where(alive, self.length.to(life.dtype), life[self.rows, cell])
        fruit[self.rows, cell] &= ~ate
        self.life, self.fruit = life.view_as(self.life), fruit.view_as(self.fruit)
        eaters = ate.nonzero().flatten()
        if eaters.numel():  # new fruit only where one was eaten
            self.fruit[eaters] |= self._random_empty(self.life[eaters], self.fruit[eaters])
        self.heading = torch.where(alive, heading, self.heading)
        self.head_y = torch.where(alive, ny, self.head_y)
        self.head_x = torch.where(alive, nx, self.head_x)
        self.steps += 1
        self.eaten += ate.long()
        reward = torch.full((n,), self.reward_step, device=self.device)
        reward = torch.where(ate, self.reward_fruit, reward)
        reward = torch.where(dead, self.reward_death, reward)
        if self.max_steps_per_game is None:
            truncated = torch.zeros_like(dead)
        else:
            truncated = alive & (self.steps >= self.max_steps_per_game)
        return self.observation(), reward, dead, truncated

    def game_state(self, i: int) -> dict:
        """Game i as `SnakeEnv.reset(options=...)` takes it (head first)."""
        life = self.life[i].cpu()
        cells = [(int(y), int(x)) for y, x in (life > 0).nonzero()]
        cells.sort(key=lambda c: -int(life[c]))
        fruits = [(int(y), int(x)) for y, x in self.fruit[i].cpu().nonzero()]
        return {"snake": cells, "fruits": fruits, "heading": int(self.heading[i])}
