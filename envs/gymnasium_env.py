"""Any registered gymnasium env for rlgen's algorithms (`env=gymnasium env.id=Acrobot-v1`).

`GymnasiumEnv` is the single game (for watching and recording) and builds the batched
view the algorithms train on: `gymnasium.make_vec` steps many copies (sync, or async in
worker processes) and `TorchVectorEnv` hands the algorithms tensors on the training
device, with the same `reset` / `step` / `reset_done` calls as rlgen's own batched envs.

An id of the form `module:EnvId` imports `module` first, as `gymnasium.make` does. That
runs code, so it is allowed only for modules the user named: `rlgen-train` allows the
modules of `env.id=` overrides typed on its command line, `rlgen-eval` and `rlgen-watch`
those of a run dir only with `import_env_module=true` (a config read from elsewhere
cannot import anything by itself).
"""

import difflib
import importlib
import os
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.error import DependencyNotInstalled
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from omegaconf import MISSING

from nn.errors import UserError
from nn.schema import at_least, one_of


@dataclass
class GymnasiumEnvConfig:
    _target_: str = MISSING
    id: str = MISSING  # a registered id (e.g. Acrobot-v1), or module:EnvId for your own package
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the env's constructor
    vectorization_mode: str = one_of("sync", "async")
    max_steps_per_game: int | None = at_least(1, None)



ALLOWED_MODULES = "RLGEN_ENV_MODULES"  # environment variable: also reaches launcher jobs
VECTORIZATION_MODES = ("sync", "async")
# gymnasium env families whose packages come with an rlgen extra (pyproject.toml)
RLGEN_EXTRAS = {"box2d": "box2d"}


def allow_module_of(env_id: str) -> None:
    """Let this process (and the jobs it starts) import the module named in `env_id`."""
    module = env_id.rpartition(":")[0]
    if module:
        allowed = set(filter(None, os.environ.get(ALLOWED_MODULES, "").split(",")))
        os.environ[ALLOWED_MODULES] = ",".join(sorted(allowed | {module}))


def find_spec(env_id: str) -> gymnasium.envs.registration.EnvSpec:
    """The registered spec of `env_id`, importing its module if allowed; one line if not."""
    module, _, name = env_id.rpartition(":")
    if module:
        if module not in os.environ.get(ALLOWED_MODULES, "").split(","):
            raise UserError(f"env.id={env_id!r} would import module {module!r}; that is only "
                            "done for an env.id given on rlgen-train's command line, or with "
                            "import_env_module=true for rlgen-eval and rlgen-watch")
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise UserError(f"env.id={env_id!r}: cannot import module {module!r} ({err})"
                            ) from err
    spec = gymnasium.registry.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(gymnasium.registry), n=3, cutoff=0.4)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UserError(f"env.id={name!r} is not a registered gymnasium env{hint}")
    return spec


def missing_extra(spec, err: Exception) -> UserError:
    entry = str(spec.entry_point)
    family = next((f for f in RLGEN_EXTRAS if f in entry), None)
    if family:
        return UserError(f"{spec.id} needs the {family} package: pip install -e "
                         f"'.[{RLGEN_EXTRAS[family]}]' (rlgen's {RLGEN_EXTRAS[family]} extra)")
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return UserError(f"{spec.id} needs a package that is not installed: {first}")


def check_spaces(env_id: str, env: gymnasium.Env) -> None:
    """rlgen's networks read a Box of numbers. (Which actions an algorithm can take is
    its own check: rl.play.check_action_space.)"""
    if not isinstance(env.observation_space, gymnasium.spaces.Box):
        raise UserError(f"{env_id} observes a {type(env.observation_space).__name__} space; "
                        "rlgen's networks need a Box observation (wrap the env so it "
                        "observes a Box, e.g. with gymnasium.wrappers.FlattenObservation)")


class GymnasiumEnv(gymnasium.Wrapper):
    """One game of a registered gymnasium env, checked for what rlgen's algorithms need.

    `kwargs` go to the env's constructor; `max_steps_per_game` overrides its registered
    step limit (null keeps it)."""

    def __init__(self, id: str, kwargs: dict | None = None, vectorization_mode: str = "sync",
                 max_steps_per_game: int | None = None, render_mode: str | None = None):
        if vectorization_mode not in VECTORIZATION_MODES:
            raise UserError(f"env.vectorization_mode={vectorization_mode!r} is not one of "
                            f"{', '.join(VECTORIZATION_MODES)}")
        spec = find_spec(id)
        self.id, self.kwargs = id, dict(kwargs or {})
        self.vectorization_mode = vectorization_mode
        try:
            env = gymnasium.make(id, render_mode=render_mode,
                                 max_episode_steps=max_steps_per_game, **self.kwargs)
        except DependencyNotInstalled as err:
            raise missing_extra(spec, err) from err
        except TypeError as err:  # an unknown constructor argument
            raise UserError(f"{id} does not take these env.kwargs: {err}") from err
        check_spaces(id, env)
        super().__init__(env)
        self.max_steps_per_game = max_steps_per_game or spec.max_episode_steps

    def batched(self, num_envs: int, device: torch.device | str = "cpu",
                seed: int = 0) -> "TorchVectorEnv":
        """`num_envs` copies stepped together, seen as tensors on `device`."""
        vector = gymnasium.make_vec(
            self.id, num_envs=num_envs, vectorization_mode=self.vectorization_mode,
            # rlgen's algorithms start new games themselves (`reset_done`)
            # copy=False: gymnasium would deep-copy every observation; `_tensor` copies
            # it once, into the tensor the algorithm keeps
            vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED, "copy": False},
            max_episode_steps=self.max_steps_per_game, **self.kwargs)
        return TorchVectorEnv(vector, torch.device(device), seed)


def is_gymnasium(env_cfg) -> bool:
    """Whether an env config names a gymnasium env through this module."""
    return env_cfg.get("_target_") == f"{__name__}.GymnasiumEnv"


class TorchVectorEnv:
    """A gymnasium vector env seen as rlgen's batched envs are: `reset()` and
    `reset_done(mask)` return the observations, `step(actions)` returns (obs, reward,
    terminated, truncated), all tensors on `device`, one row per game.

    Games that ended keep their last values until `reset_done`; one that is stepped
    again without it starts afresh first (gymnasium may not step an ended game), and
    callers ignore what such a game returns, as they do with rlgen's envs.
    """

    counters: dict[str, str] = {}  # gymnasium envs declare no per-game counters
    restores_games = False  # a checkpoint keeps the random streams, not games in progress

    def __init__(self, vector: gymnasium.vector.VectorEnv, device: torch.device, seed: int):
        self.vector, self.device, self.seed = vector, device, seed
        self.num_envs = vector.num_envs
        self.observation_dtype = (torch.uint8 if vector.single_observation_space.dtype == np.uint8
                                  else torch.float32)
        self.seeded = False
        self.ended = np.zeros(self.num_envs, dtype=bool)
        self.obs = None  # the observations as tensors, a copy of the vector env's buffer
        # one game in gymnasium's plain sync vector env (RL Zoo's DQN settings): stepped
        # directly, as the vector env steps it, without its per-step concatenation, info
        # merging and copies, which cost five times the step of a classic-control env
        self.single = vector.envs[0] if (
            type(vector) is SyncVectorEnv and self.num_envs == 1
            and isinstance(vector.single_action_space, gymnasium.spaces.Discrete)) else None

    def _tensor(self, array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        """A tensor of its own (the vector env reuses its arrays at the next step)."""
        return torch.tensor(np.asarray(array), dtype=dtype, device=self.device)

    def reset(self) -> torch.Tensor:
        """New games everywhere; the first reset seeds game i with seed + i."""
        obs, _ = self.vector.reset(seed=None if self.seeded else self.seed)
        self.seeded = True
        self.ended[:] = False
        self.obs = self._tensor(obs, self.observation_dtype)
        return self.obs

    def reset_done(self, done: torch.Tensor) -> torch.Tensor:
        mask = done.cpu().numpy().astype(bool)
        if mask.any():
            obs, _ = self.vector.reset(options={"reset_mask": mask})
            self.ended[mask] = False
            self.obs = self._tensor(obs, self.observation_dtype)
        return self.obs

    def step(self, actions: torch.Tensor):
        if self.ended.any():
            self.reset_done(torch.from_numpy(self.ended))
        if self.single is not None:
            obs, reward, terminated, truncated, _ = self.single.step(actions.item())
            self.ended[0] = terminated or truncated
            self.obs = self._tensor(np.asarray(obs)[None], self.observation_dtype)
            return (self.obs, torch.tensor([reward], dtype=torch.float32, device=self.device),
                    torch.tensor([terminated], device=self.device),
                    torch.tensor([truncated], device=self.device))
        obs, reward, terminated, truncated, _ = self.vector.step(actions.cpu().numpy())
        self.ended = terminated | truncated
        self.obs = self._tensor(obs, self.observation_dtype)
        return (self.obs, self._tensor(reward, torch.float32),
                self._tensor(terminated, torch.bool), self._tensor(truncated, torch.bool))

    def state_dict(self) -> dict:
        """Each game's random stream: resume starts new games from where they were."""
        return {"np_random": [g.bit_generator.state for g in self.vector.get_attr("np_random")],
                "seeded": self.seeded}

    def load_state_dict(self, state: dict) -> None:
        generators = []
        for saved in state["np_random"]:
            generator = np.random.default_rng()
            generator.bit_generator.state = saved
            generators.append(generator)
        self.vector.set_attr("np_random", generators)
        self.seeded = state["seeded"]

    def close(self) -> None:
        self.vector.close()
