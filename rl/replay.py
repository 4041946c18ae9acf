"""Replay memory for off-policy learning (DQN, SAC), kept as preallocated tensors on the
training device: a ring buffer with uniform sampling, or prioritized by TD error.
Observations are stored in the env's own compact dtype (uint8 boards for Snake), not as
float32; actions as one index each (Discrete) or a vector of floats (Box).

Each stored transition carries its own bootstrap `discount` (gamma^n, or 0 when the
game ended inside the n steps), so one-step and n-step transitions share one buffer.
"""

import math

import torch

from nn.memory import check_fits


def check_memory_fits(capacity: int, obs_shape: tuple, obs_dtype: torch.dtype,
                      device: torch.device) -> None:
    """Refuse, in one line before anything is allocated or written, a replay memory too
    large for what the process may use (nn/memory.py)."""
    per_transition = 2 * math.prod(obs_shape) * obs_dtype.itemsize + 8 + 3 * 4
    check_fits(f"a replay memory of {capacity} transitions of shape {tuple(obs_shape)}",
               capacity * per_transition, "lower algo.replay_size or use a smaller board", device)


class ReplayMemory:
    def __init__(self, capacity: int, obs_shape: tuple, obs_dtype: torch.dtype,
                 device: torch.device, action_shape: tuple = ()):
        self.capacity = capacity
        self.device = device
        self.obs = torch.zeros((capacity, *obs_shape), dtype=obs_dtype, device=device)
        self.next_obs = torch.zeros_like(self.obs)
        # an index per transition (Discrete actions), or a vector of floats (Box)
        self.actions = torch.zeros((capacity, *action_shape), device=device,
                                   dtype=torch.float32 if action_shape else torch.long)
        self.rewards = torch.zeros(capacity, device=device)
        self.discounts = torch.zeros(capacity, device=device)
        self.position = 0  # where the next transition goes
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, actions, rewards, next_obs, discounts) -> None:
        """Add a batch of transitions (leading dimension B), overwriting the oldest."""
        n = actions.shape[0]
        if self.position + n <= self.capacity:  # a slice: cheaper than an index list
            index = slice(self.position, self.position + n)
        else:
            index = (self.position + torch.arange(n, device=self.device)) % self.capacity
        self.obs[index] = obs
        self.next_obs[index] = next_obs
        self.actions[index] = actions
        self.rewards[index] = rewards
        self.discounts[index] = discounts
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    FIELDS = ("obs", "next_obs", "actions", "rewards", "discounts")

    def state_dict(self) -> dict:
        """The filled part of the memory, for a checkpoint (resume keeps what was learnt
        from)."""
        return {**{name: getattr(self, name)[:self.size] for name in self.FIELDS},
                "position": self.position, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        if state["size"] > self.capacity:
            raise ValueError(f"a memory of {state['size']} transitions does not fit in "
                             f"{self.capacity}")
        for name in self.FIELDS:
            getattr(self, name)[:state["size"]] = state[name].to(self.device)
        self.position, self.size = state["position"], state["size"]

    def sample(self, batch_size: int, generator: torch.Generator,
               without_replacement: bool = False, batches: int = 1,
               beta: float | None = None) -> dict:
        """`batches` uniform batches of `batch_size` transitions, one after the other
        (`beta` is prioritized replay's; uniform draws need no importance weights)."""
        if without_replacement:  # the original draws distinct transitions for each batch
            index = torch.cat([torch.randperm(self.size, generator=generator,
                                              device=self.device)[:batch_size]
                               for _ in range(batches)])
        else:
            index = torch.randint(self.size, (batches * batch_size,), generator=generator,
                                  device=self.device)
        return self.transitions(index)

    def transitions(self, index: torch.Tensor) -> dict:
        return {"obs": self.obs[index], "actions": self.actions[index],
                "rewards": self.rewards[index], "next_obs": self.next_obs[index],
                "discounts": self.discounts[index]}


class PrioritizedReplayMemory(ReplayMemory):
    """Proportional prioritized replay (Schaul et al. 2016): transition i is drawn with
    probability p_i^alpha / sum_j p_j^alpha, p_i its last absolute TD error (new ones get
    the largest seen so far), and the batch carries importance weights
    (size * P(i))^-beta, divided by the batch's largest, that undo the bias in the loss.
    At a few hundred thousand transitions one cumulative sum per draw costs well under a
    millisecond, so no sum tree."""

    FIELDS = (*ReplayMemory.FIELDS, "priorities")

    def __init__(self, capacity: int, obs_shape: tuple, obs_dtype: torch.dtype,
                 device: torch.device, alpha: float, epsilon: float = 0.01):
        super().__init__(capacity, obs_shape, obs_dtype, device)
        self.alpha, self.epsilon = alpha, epsilon
        self.priorities = torch.zeros(capacity, device=device)  # p^alpha
        # kept on the device: reading it back after every update would sync a GPU
        self.max_priority = torch.ones((), device=device)

    def add(self, obs, actions, rewards, next_obs, discounts) -> None:
        start, n = self.position, actions.shape[0]
        super().add(obs, actions, rewards, next_obs, discounts)
        index = (start + torch.arange(n, device=self.device)) % self.capacity
        self.priorities[index] = self.max_priority ** self.alpha

    def sample(self, batch_size: int, generator: torch.Generator,
               without_replacement: bool = False, batches: int = 1,
               beta: float | None = 1.0) -> dict:
        if without_replacement:
            raise ValueError("prioritized replay draws with replacement")
        weights = self.priorities[:self.size]
        total = weights.cumsum(0)
        draws = torch.rand(batches * batch_size, generator=generator, device=self.device)
        index = torch.searchsorted(total, draws * total[-1], right=True).clamp_(max=self.size - 1)
        beta = 1.0 if beta is None else beta
        importance = ((self.size * weights[index] / total[-1]) ** -beta).view(batches, -1)
        return {**self.transitions(index), "index": index,
                "weights": (importance / importance.amax(1, keepdim=True)).flatten()}

    def update_priorities(self, index: torch.Tensor, td_errors: torch.Tensor) -> None:
        priority = td_errors.abs() + self.epsilon
        self.priorities[index] = priority ** self.alpha
        self.max_priority = torch.maximum(self.max_priority, priority.max())

    def state_dict(self) -> dict:
        return {**super().state_dict(), "max_priority": self.max_priority}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.max_priority = torch.as_tensor(state["max_priority"], dtype=torch.float32,
                                            device=self.device)


class NStepWindow:
    """Turns one-step transitions of N parallel games into n-step transitions.

    Keeps the last n steps; once full, each new step releases the oldest one with
    reward r_t + gamma r_{t+1} + ... cut at the end of its game, the observation n steps
    later and discount gamma^n (0 if the game ended within the window). With n = 1 it
    passes transitions straight through with discount gamma * (1 - terminated).
    """

    def __init__(self, n: int, gamma: float, device: torch.device | None = None):
        self.n, self.gamma, self.device = n, gamma, device
        self.steps: list[tuple] = []

    def clear(self) -> None:
        """Forget the steps of games that will not go on (new games start)."""
        self.steps = []

    def state_dict(self) -> dict:
        return {"steps": [list(step) for step in self.steps]}

    def load_state_dict(self, state: dict) -> None:
        self.steps = [tuple(t if self.device is None else t.to(self.device) for t in step)
                      for step in state["steps"]]

    def push(self, obs, actions, rewards, next_obs, terminated, ended):
        """`terminated`: the game ended by failing (no bootstrap); `ended`: it ended by
        failing or by a step limit (the window must not run on into the next game)."""
        if self.n == 1:  # what the loop below gives for one step, in one operation
            return obs, actions, rewards, next_obs, torch.where(terminated, 0.0, self.gamma)
        self.steps.append((obs, actions, rewards, next_obs, terminated, ended))
        if len(self.steps) < self.n:
            return None
        obs0, actions0 = self.steps[0][0], self.steps[0][1]
        total = torch.zeros_like(rewards)
        discount = torch.ones_like(rewards)
        bootstrap = self.steps[-1][3]
        running = torch.ones_like(terminated)  # the oldest step's game is still going
        for _, _, r, nxt, term, end in self.steps:
            total = total + running * discount * r
            step_discount = torch.where(term, 0.0, discount * self.gamma)
            discount = torch.where(running, step_discount, discount)
            stop = running & end
            # a game cut by the step limit bootstraps from its own last observation
            bootstrap = torch.where(stop.view(-1, *[1] * (nxt.dim() - 1)), nxt, bootstrap)
            running = running & ~end
        self.steps.pop(0)
        return obs0, actions0, total, bootstrap, discount
