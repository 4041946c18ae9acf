"""The two contracts the framework is built on, written as code.

A *trainer* is a module of rl/ or generative/ that an experiment's config names
(`trainer: rl.dqn`). `rlgen-train` calls its `train`; `rlgen-eval`, `rlgen-watch` and
`rlgen-generate` call its `evaluate`, `watch` and `generate` where it has them, parsing
the command line against the matching `*Args` dataclass (each built on `ToolArgs`).

A *batched env* is what an env's `batched(num_envs, device, seed)` returns: every game
of a batch stepped at once on tensors, which the RL trainers drive (rlgen's own twins,
and any gymnasium env through `envs.gymnasium_env.TorchVectorEnv`).

`tests/test_contracts.py` checks that every trainer and every batched env keeps them.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from omegaconf import MISSING, DictConfig

from nn.schema import one_of


@dataclass
class ToolArgs:
    """The arguments every read-back tool takes; each trainer's `*Args` adds its own."""

    run: str = MISSING  # a run dir made by rlgen-train (or one of its checkpoint files)
    checkpoint: str = "best"  # best | last (the kept or the latest weights)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps


@dataclass
class OnnxToolArgs(ToolArgs):
    """A read-back tool that also runs an export: run=EXPORT_DIR (made by rlgen-export)
    backend=onnx, through ONNX Runtime with no torch model in the loop."""

    backend: str = one_of("torch", "onnx", default="torch")


@runtime_checkable
class Trainer(Protocol):
    """What `rlgen-train` needs of a trainer module."""

    # TensorBoard tags rlgen-plot draws by default: the first one a run logged
    CURVES: tuple[str, ...]

    def train(self, cfg: DictConfig, run_dir: Path) -> dict:
        """Train in `run_dir` (through `nn.run.Run`); return what metrics.json holds."""


@runtime_checkable
class ChecksConfig(Protocol):
    """A trainer with rules beyond its schema's ranges, checked before any run dir is made."""

    def check_config(self, cfg: DictConfig) -> None:
        """Raise `nn.errors.UserError` (one line) on settings this trainer cannot run."""


@runtime_checkable
class Evaluates(Protocol):
    EvalArgs: type[ToolArgs]

    def evaluate(self, payload: dict, args: Any) -> dict:
        """Score a saved checkpoint (`payload`); print and return one JSON-able dict."""


@runtime_checkable
class Watches(Protocol):
    WatchArgs: type[ToolArgs]

    def watch(self, payload: dict, args: Any) -> dict:
        """Show the saved model at work in a pygame window (or record it to a file)."""


@runtime_checkable
class Generates(Protocol):
    GenerateArgs: type[ToolArgs]

    def generate(self, payload: dict, args: Any) -> Any:
        """Sample from the saved model: text to stdout, or an image file."""


@runtime_checkable
class Exports(Protocol):
    """A trainer whose networks `rlgen-export` can write as ONNX files (nn/export.py)."""

    def export(self, payload: dict) -> tuple[list, dict]:
        """The networks a user needs at inference, each with real example inputs
        (`nn.export.Network`), and what the manifest says of them besides: the env's
        observation and actions, the vocabulary, class names, image scaling."""


# the read-back tools: command -> (the protocol its trainer keeps, the function, the args)
READ_BACK = {"rlgen-eval": (Evaluates, "evaluate", "EvalArgs"),
             "rlgen-watch": (Watches, "watch", "WatchArgs"),
             "rlgen-generate": (Generates, "generate", "GenerateArgs")}


@runtime_checkable
class BatchedEnv(Protocol):
    """Games stepped together on tensors; a game that ends stays ended until the trainer
    restarts it with `reset_done`, so the trainer sees every final observation."""

    num_envs: int
    # per-game figures this env counts, as {info key: name in logs} (Snake: fruits eaten)
    counters: ClassVar[dict[str, str]]
    # whether `state_dict` holds the games in progress (else only the random streams)
    restores_games: ClassVar[bool]
    observation_dtype: torch.dtype

    def reset(self) -> torch.Tensor:
        """Start every game; the observations, (num_envs, *observation shape)."""

    def reset_done(self, done: torch.Tensor) -> torch.Tensor:
        """Restart the games where `done` (bool, (num_envs,)); all observations."""

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor]:
        """One move in every game: observations, rewards, terminated, truncated."""

    def state_dict(self) -> dict:
        """What a checkpoint keeps to continue these games (see `restores_games`)."""

    def load_state_dict(self, state: dict) -> None: ...


@runtime_checkable
class BatchesItself(Protocol):
    """A gymnasium env the RL trainers can use: it builds its own batched form."""

    def batched(self, num_envs: int, device: torch.device | str = "cpu",
                seed: int = 0) -> BatchedEnv: ...
