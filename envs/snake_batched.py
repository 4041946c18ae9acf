"""Snake's batched torch twin: N games stepped at once on any device, with the rules of
envs/snake.py (a test holds the two equal step for step)."""

import numpy as np
import torch

from envs.snake_rules import DX, DY, OFF_BOARD, RIGHT, TURN, memory_needs, view_offsets, view_shape
from nn.memory import check_fits
from nn.seeding import make_generator


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
        check_fits(f"{num_envs} Snake games on {height}x{width} boards",
                   memory_needs(height, width, view, num_envs),
                   "use a smaller board (env.height, env.width) or fewer games at once "
                   "(algo.num_envs)", device)
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
        from envs import snake_kernel  # numba loads here: a run without Snake never pays for it

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
            from envs import snake_kernel

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
        from envs import snake_kernel

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
