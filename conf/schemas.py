"""Types of the config tree, registered in Hydra's ConfigStore.

Each yaml file in conf/ names its schema in its defaults list, so a misspelt key or a
value of the wrong type fails when the config is composed, before any work starts.
Values live in the yaml files (the book's numbers); here are only names and types.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class RunConfig:
    name: str = MISSING  # experiment name; also the run dir's parent folder
    trainer: str = MISSING  # module that trains, evaluates and watches this experiment
    seed: int = MISSING
    device: str = MISSING  # auto | cpu | cuda | cuda:N | mps
    resume: str | None = None  # a run dir to continue
    render: bool = False  # show the games live while training (pygame window)
    env: Any = None
    model: Any = None
    algo: Any = None
    data: Any = None


@dataclass
class CartPoleEnvConfig:
    _target_: str = MISSING
    gravity: float = MISSING
    cart_mass: float = MISSING
    pole_mass: float = MISSING
    pole_half_length: float = MISSING
    force_mag: float = MISSING
    tau: float = MISSING
    x_threshold: float = MISSING
    theta_threshold_degrees: float = MISSING
    start_x: float = MISSING  # start state ~ U(-value, value), per component
    start_x_dot: float = MISSING
    start_theta_degrees: float = MISSING
    start_theta_dot: float = MISSING
    max_steps_per_game: int | None = MISSING


@dataclass
class MLPConfig:
    _target_: str = MISSING
    hidden_sizes: list[int] = field(default_factory=lambda: [])
    activation: str = MISSING
    init: str = MISSING  # glorot_normal (tf.js default) | torch_default


@dataclass
class ReinforceConfig:
    iterations: int = MISSING
    games_per_iteration: int = MISSING  # all games of an iteration run in parallel
    gamma: float = MISSING
    lr: float = MISSING
    optimizer: Any = MISSING  # a `_partial_: true` torch.optim target; lr comes from `lr`
    baseline: str = MISSING  # none (book: normalise returns globally) | time_step
    max_grad_norm: float | None = None
    stop_mean_steps: float | None = None  # end early once an iteration's mean steps reach this
    target_mean_steps: float = MISSING  # "solved" level reported in metrics.json


def register() -> None:
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(group="env", name="cartpole_schema", node=CartPoleEnvConfig)
    store.store(group="model", name="mlp_schema", node=MLPConfig)
    store.store(group="algo", name="reinforce_schema", node=ReinforceConfig)
