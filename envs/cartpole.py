"""Cart-pole of the tfjs-examples `cart-pole` demo (docs/recipes.md, part 1).

Barto, Sutton & Anderson's cart-pole with Euler integration. The physics are written
once, in `physics_step`, and run by both the gymnasium env (Python floats, float64)
and the batched torch twin (N games in tensors on any device); a test holds them equal.
Reward is 1 for every step that does not end the game and 0 for the step that does.
"""

import math
from dataclasses import dataclass, field, fields

import gymnasium as gym
import numpy as np
import torch
from omegaconf import MISSING

from nn.schema import above, at_least
from nn.seeding import make_generator


@dataclass
class CartPoleEnvConfig:
    _target_: str = MISSING
    gravity: float = above(0)
    cart_mass: float = above(0)
    pole_mass: float = above(0)
    pole_half_length: float = above(0)
    force_mag: float = above(0)
    tau: float = above(0)
    x_threshold: float = above(0)
    theta_threshold_degrees: float = above(0)
    start_x: float = at_least(0)  # start state ~ U(-value, value), per component
    start_x_dot: float = at_least(0)
    start_theta_degrees: float = at_least(0)
    start_theta_dot: float = at_least(0)
    max_steps_per_game: int | None = at_least(1)



@dataclass(frozen=True)
class CartPolePhysics:
    gravity: float
    cart_mass: float
    pole_mass: float
    pole_half_length: float
    force_mag: float
    tau: float
    x_threshold: float
    theta_threshold: float  # radians
    total_mass: float = field(init=False)
    pole_moment: float = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "total_mass", self.cart_mass + self.pole_mass)
        object.__setattr__(self, "pole_moment", self.pole_mass * self.pole_half_length)

    def as_tensors(self, dtype: torch.dtype, device: torch.device) -> "CartPolePhysics":
        """The same constants as 0-dim tensors: tensor-by-tensor ops skip the cost of
        wrapping a Python float on every call, which dominates at small batch sizes."""
        return CartPolePhysics(*[torch.tensor(getattr(self, f.name), dtype=dtype, device=device)
                                 for f in fields(self) if f.init])


def physics_step(x, x_dot, theta, theta_dot, push_right, p: CartPolePhysics, cos, sin):
    """One Euler step. Works on floats (cos=math.cos) and tensors (cos=torch.cos) alike.

    `push_right` is 1 (force +force_mag) or 0 (force -force_mag). Accelerations come
    from the current state, then positions and velocities advance, as in the original.
    """
    force = p.force_mag * (2 * push_right - 1)
    cos_theta, sin_theta = cos(theta), sin(theta)
    temp = (force + p.pole_moment * theta_dot * theta_dot * sin_theta) / p.total_mass
    theta_acc = (p.gravity * sin_theta - cos_theta * temp) / (
        p.pole_half_length * (4.0 / 3.0 - p.pole_mass * cos_theta * cos_theta / p.total_mass)
    )
    x_acc = temp - p.pole_moment * theta_acc * cos_theta / p.total_mass
    x = x + p.tau * x_dot
    x_dot = x_dot + p.tau * x_acc
    theta = theta + p.tau * theta_dot
    theta_dot = theta_dot + p.tau * theta_acc
    failed = (abs(x) > p.x_threshold) | (abs(theta) > p.theta_threshold)
    return x, x_dot, theta, theta_dot, failed


class CartPoleEnv(gym.Env):
    """The single-game env: for `gymnasium.make("rlgen/CartPole-v0")`, watching and checks."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 50}
    action_names = ("push left", "push right")
    # what an export's manifest says of the observation (rl/play.py env_manifest)
    observation_about = ("float32 [4]: cart position (m), cart velocity (m/s), pole angle "
                         "(radians, 0 upright), pole angular velocity (rad/s)")

    def __init__(self, render_mode: str | None = None, gravity: float = 9.8,
                 cart_mass: float = 1.0, pole_mass: float = 0.1, pole_half_length: float = 0.5,
                 force_mag: float = 10.0, tau: float = 0.02, x_threshold: float = 2.4,
                 theta_threshold_degrees: float = 12.0, start_x: float = 0.5,
                 start_x_dot: float = 0.5, start_theta_degrees: float = 6.0,
                 start_theta_dot: float = 0.25, max_steps_per_game: int | None = 500):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not one of "
                             f"{self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.physics = CartPolePhysics(gravity, cart_mass, pole_mass, pole_half_length,
                                       force_mag, tau, x_threshold,
                                       math.radians(theta_threshold_degrees))
        self.start_high = (start_x, start_x_dot, math.radians(start_theta_degrees),
                           start_theta_dot)
        self.max_steps_per_game = max_steps_per_game
        # observations past a limit end the game, so twice the limit bounds what is seen
        big = np.finfo(np.float32).max  # velocities have no limit
        high = np.array([2 * x_threshold, big, 2 * self.physics.theta_threshold, big],
                        dtype=np.float32)
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)  # 0 pushes left, 1 pushes right
        self.state = (0.0, 0.0, 0.0, 0.0)
        self.steps = 0
        self.last_action: int | None = None
        self.caption = ""  # an extra line drawn on screen (e.g. "game 3")
        self._renderer = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "state" in options:
            self.state = tuple(float(v) for v in options["state"])
        else:
            self.state = tuple(float(self.np_random.uniform(-h, h)) for h in self.start_high)
        self.steps = 0
        self.last_action = None
        if self.render_mode == "human":
            self.render()
        return self._obs(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not 0 (left) or 1 (right)")
        *state, failed = physics_step(*self.state, int(action), self.physics, math.cos, math.sin)
        self.state = tuple(state)
        self.steps += 1
        self.last_action = int(action)
        truncated = (not failed and self.max_steps_per_game is not None
                     and self.steps >= self.max_steps_per_game)
        if self.render_mode == "human":
            self.render()
        return self._obs(), 0.0 if failed else 1.0, bool(failed), truncated, {"steps": self.steps}

    def human_action(self, arrow_pressed: str | None, arrows_held: set[str]) -> int:
        """Hold the left or right arrow to push that way (right when neither is held)."""
        return 0 if "left" in arrows_held or arrow_pressed == "left" else 1

    def _obs(self) -> np.ndarray:
        return np.array(self.state, dtype=np.float32)

    @staticmethod
    def mirrored(obs: torch.Tensor, actions: torch.Tensor):
        """The mirror image of a batch of states [N, 4] and pushes: the physics is the
        same with every position, velocity and angle negated and left and right swapped."""
        return -obs, 1 - actions

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='human' "
                            "or 'rgb_array'")
            return None
        if self._renderer is None:
            from envs.cartpole_render import CartPoleRenderer

            self._renderer = CartPoleRenderer(self.physics, self.render_mode,
                                              self.metadata["render_fps"])
        return self._renderer.draw(self.state, self.steps, self.last_action, self.caption)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def batched(self, num_envs: int, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32, seed: int = 0) -> "BatchedCartPole":
        """The torch twin with these same rules, stepping `num_envs` games at once."""
        return BatchedCartPole(num_envs, self.physics, self.start_high, self.max_steps_per_game,
                               torch.device(device), dtype, seed)


class BatchedCartPole:
    """N cart-poles as tensors on one device, all stepped by one call.

    `step` advances every game; games that ended keep being stepped until `reset` or
    `reset_done`, and the caller masks them out (REINFORCE plays each game once).
    The four state variables are kept as separate contiguous tensors: elementwise ops
    on them are several times faster than on strided columns of an [N, 4] tensor.
    """

    counters: dict[str, str] = {}  # per-game counters reported (see BatchedSnake): none
    restores_games = True  # state_dict holds every game in progress

    def __init__(self, num_envs: int, physics: CartPolePhysics, start_high: tuple,
                 max_steps_per_game: int | None, device: torch.device,
                 dtype: torch.dtype = torch.float32, seed: int = 0):
        self.num_envs = num_envs
        self.physics = physics.as_tensors(dtype, device)
        self.float_physics = physics  # Python floats, for the NumPy step on the CPU
        self.max_steps_per_game = max_steps_per_game
        self.device = device
        self.dtype = dtype
        self.generator = make_generator(seed, device)
        self.start_high = torch.tensor(start_high, dtype=dtype, device=device)
        self.variables = list(torch.zeros(4, num_envs, dtype=dtype, device=device))
        self.steps = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.observation_dtype = dtype
        self.numpy_dtype = self.variables[0].numpy().dtype if self.numpy_steps else None
        self.observation_size = 4
        self.num_actions = 2

    @property
    def state(self) -> torch.Tensor:
        """[N, 4]: x, x_dot, theta, theta_dot of every game (the observation).
        Stacked as rows then viewed transposed: a copy of contiguous blocks is cheap."""
        return torch.stack(self.variables, 0).T

    def _random_states(self, n: int) -> torch.Tensor:
        u = torch.rand(4, n, generator=self.generator, device=self.device, dtype=self.dtype)
        return (2 * u - 1) * self.start_high[:, None]

    def reset(self, state: torch.Tensor | None = None) -> torch.Tensor:
        if state is None:
            columns = self._random_states(self.num_envs)
        else:
            columns = state.to(device=self.device, dtype=self.dtype).T
        self.variables = [c.contiguous() for c in columns]
        self.steps.zero_()
        return self.state

    def reset_done(self, done: torch.Tensor) -> torch.Tensor:
        """Start new games where `done` is true (auto-reset for algorithms that need it)."""
        if self.device.type == "cpu":
            # few games end per step, and drawing random numbers is the costly part on
            # CPU: draw only for those games
            index = done.nonzero().squeeze(1)
            if index.numel():
                fresh = self._random_states(index.numel())
                for variable, values in zip(self.variables, fresh, strict=True):
                    variable[index] = values
                self.steps[index] = 0
        else:
            # on an accelerator a full draw and a select avoid a host sync
            fresh = self._random_states(self.num_envs)
            self.variables = [torch.where(done, new, old)
                              for new, old in zip(fresh, self.variables, strict=True)]
            self.steps = torch.where(done, 0, self.steps)
        return self.state

    def state_dict(self) -> dict:
        """Every game's state and the random stream, for a checkpoint."""
        return {"variables": torch.stack(self.variables), "steps": self.steps,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.variables = [v.to(self.device, self.dtype).contiguous() for v in state["variables"]]
        self.steps = state["steps"].to(self.device)
        self.generator.set_state(state["generator"])

    def step(self, push_right: torch.Tensor):
        """Returns (obs, reward, terminated, truncated), each with a leading N dimension."""
        if self.numpy_steps:
            return tuple(torch.from_numpy(array) for array in self._numpy_step(
                push_right.to(self.dtype).numpy()))
        *self.variables, failed = physics_step(*self.variables, push_right.to(self.dtype),
                                               self.physics, torch.cos, torch.sin)
        self.steps += 1
        alive = ~failed
        reward = alive.to(self.dtype)
        if self.max_steps_per_game is None:
            truncated = torch.zeros_like(failed)
        else:
            truncated = alive & (self.steps >= self.max_steps_per_game)
        return self.state, reward, failed, truncated

    @property
    def numpy_steps(self) -> bool:
        """On the CPU below 32,768 games a step runs in NumPy on views of the same memory:
        its small-array operations cost less than PyTorch's, and a step is some twenty
        of them; from 32,768 games on PyTorch spreads each operation over threads."""
        return self.device.type == "cpu" and self.num_envs < 32768

    def step_arrays(self, actions: np.ndarray):
        """`step` for NumPy callers (the gymnasium vector env): int64 actions, checked
        before any game moves, and NumPy arrays out."""
        if actions.view(np.uint64).max(initial=0) > 1:  # negatives read as unsigned are huge
            raise ValueError(f"actions must be in [0, 2), got "
                             f"{actions[(actions < 0) | (actions > 1)][:5].tolist()}")
        if self.numpy_steps:
            return self._numpy_step(actions.astype(self.numpy_dtype))
        return tuple(tensor.numpy() for tensor in self.step(torch.from_numpy(actions)))

    def reset_arrays(self, done: np.ndarray) -> np.ndarray:
        """`reset_done` for NumPy callers: a bool mask in, the observations out."""
        return self.reset_done(torch.from_numpy(done)).numpy()

    def _numpy_step(self, push_right: np.ndarray):
        """The CPU step in NumPy (`numpy_steps`): `push_right` 1 or 0 a game, in the env's
        float dtype; NumPy arrays out."""
        *variables, failed = physics_step(*(v.numpy() for v in self.variables), push_right,
                                          self.float_physics, np.cos, np.sin)
        self.variables = [torch.from_numpy(v) for v in variables]
        steps = self.steps.numpy()
        steps += 1  # in place: the tensor shares this memory
        alive = ~failed
        if self.max_steps_per_game is None:
            truncated = np.zeros_like(failed)
        else:
            truncated = alive & (steps >= self.max_steps_per_game)
        # the observation laid out as `state` lays it out (rows stacked, viewed transposed)
        return np.stack(variables).T, alive.astype(variables[0].dtype), failed, truncated
