"""rlgen's batched envs as gymnasium vector envs, for other libraries and loops:

    gymnasium.make_vec("rlgen/Snake-v0", num_envs=64, vectorization_mode="vector_entry_point")

steps 64 games in one call of the batched twin (`SnakeEnv.batched`), not a Python loop
over single games. `reset(seed=, options=)` and `step` return NumPy arrays shaped by
the vector spaces and info dicts in gymnasium's vector form (a value array and a
`_name` mask per key). On the CPU the arrays share memory with the twin's tensors
(copied where the twin changes them in place), so the wrapper costs little.

Autoreset: `AutoresetMode.DISABLED` by default, as rlgen's own trainers play: a game
that ended stays ended until `reset(options={"reset_mask": mask})` starts new games
where the mask is true (stepping it on is allowed and returns values to ignore).
`autoreset_mode=AutoresetMode.SAME_STEP` starts new games inside `step` and puts the ended games'
last observations in `infos["final_obs"]`. The next-step mode is not offered: the
twin steps every game at once and cannot hold some of them back for a step.

On a GPU, train on the twin itself (`env.batched(n, "cuda")`): it keeps every tensor on
the device, which a NumPy interface cannot.
"""

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from envs.cartpole import CartPoleEnv
from envs.snake import SnakeEnv

SUPPORTED_MODES = (AutoresetMode.DISABLED, AutoresetMode.SAME_STEP)


class BatchedVectorEnv(gymnasium.vector.VectorEnv):
    """A `gymnasium.vector.VectorEnv` over the batched twin of `single_env_class`."""

    single_env_class: type[gymnasium.Env]

    def __init__(self, num_envs: int = 1, autoreset_mode: str | AutoresetMode =
                 AutoresetMode.DISABLED, **env_kwargs):
        mode = AutoresetMode(autoreset_mode)
        if mode not in SUPPORTED_MODES:
            raise ValueError(f"autoreset_mode={mode.value!r}: rlgen's batched envs offer "
                             f"{' and '.join(m.value for m in SUPPORTED_MODES)}")
        env_kwargs.pop("render_mode", None)  # the batched games are not drawn
        if "max_episode_steps" in env_kwargs:  # gymnasium's name for the step limit
            env_kwargs["max_steps_per_game"] = env_kwargs.pop("max_episode_steps")
        self.single_env = self.single_env_class(**env_kwargs)
        self.twin = self.single_env.batched(num_envs, "cpu")
        self.num_envs = num_envs
        self.autoreset_mode = mode
        self.metadata = {"autoreset_mode": mode, "render_modes": []}
        self.single_observation_space = self.single_env.observation_space
        self.single_action_space = self.single_env.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.every_game = np.ones(num_envs, dtype=bool)  # the infos' masks: all games report
        self.views = {}
        # (the twin's counter, its info name as the single game reports it, its mask name)
        names = {"steps": "steps", **{name: name for name in self.twin.counters}}
        if "eaten" in names:
            names["eaten"] = "fruits_eaten"
        self.info_keys = [(attribute, name, f"_{name}") for attribute, name in names.items()]

    def _infos(self) -> dict:
        """Every game's counters (copies: the twin changes them in place)."""
        infos = {}
        for attribute, name, mask_name in self.info_keys:
            infos[name] = self._array(attribute).copy()
            infos[mask_name] = self.every_game
        return infos

    def _array(self, attribute: str) -> np.ndarray:
        """A NumPy view of one of the twin's tensors, made again only when the twin
        replaced the tensor (a NumPy copy of a view costs less than any torch call)."""
        tensor = getattr(self.twin, attribute)
        cached = self.views.get(attribute)
        if cached is None or cached[0] is not tensor:
            cached = self.views[attribute] = (tensor, tensor.numpy())
        return cached[1]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.twin.generator.manual_seed(seed)
        mask = (options or {}).get("reset_mask")
        if mask is None:
            obs = self.twin.reset().numpy()
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape "
                                 f"({self.num_envs},), not {mask.dtype} {mask.shape}")
            obs = self.twin.reset_arrays(mask)
        return obs, self._infos()

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), not {actions.shape}")
        # the twins' NumPy-level step (no round trip of every array through torch), which
        # checks the actions before any game moves
        obs, reward, terminated, truncated = self.twin.step_arrays(
            np.ascontiguousarray(actions, dtype=np.int64))
        infos = self._infos()
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            ended = terminated | truncated
            if ended.any():
                final = {"final_obs": obs, "_final_obs": ended.copy(), "final_info": infos,
                         "_final_info": ended.copy()}
                obs = self.twin.reset_arrays(ended)
                infos = {**self._infos(), **final}
        return obs, reward, terminated, truncated, infos

    def close_extras(self, **kwargs):
        self.single_env.close()


class CartPoleVectorEnv(BatchedVectorEnv):
    single_env_class = CartPoleEnv


class SnakeVectorEnv(BatchedVectorEnv):
    single_env_class = SnakeEnv
