"""One training run from start to end: what every trainer opens first and closes last,
and everything the run saves and restores.

    run = Run(cfg, run_dir)                   # device picked, seeds set, resume payload read
    ...build the networks, optimizers, envs, data...
    loop = run.keep(Counters(epoch=0, ...),   # register once what a checkpoint holds: on
                    model=model, optimizer=optimizer, sampler=sampler)   # resume each is
                                              # restored here, then every random stream
    position = run.epoch_position(rng)        # epoch-based trainers: where inside an epoch
    logger = run.open_logger(total, unit)     # TensorBoard, progress bar, train.log
    for ...:                                  # a step, or a batch of an epoch
        ...
        run.save("last")                      # every part and counter, atomically
        if run.stop_requested(f"batch {b} of epoch {epoch}"):
            break
    return run.finish(metrics, hparams, summary)   # saves "last" once more, writes metrics

A part is anything with `state_dict`/`load_state_dict` (modules, optimizers, schedulers,
grad scalers, replay memories, batched envs, `EpochPosition`), a `torch.Generator`, or a
tensor restored in place. Counters are the loop's plain values (an object whose
attributes are ints, floats, strings, lists and dicts; tensors among them are saved with
the parts). No trainer restores an optimizer, a random stream or a loop counter by hand;
`tests/test_contracts.py` checks that over the sources. No callbacks: every call above
is written out in the trainer, top to bottom.
"""

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import MISSING, DictConfig, OmegaConf

from nn.checkpoint import load_weights, resume_payload, save_checkpoint
from nn.device import select_device
from nn.epochs import EpochPosition
from nn.errors import UserError
from nn.logger import RunLogger
from nn.preemption import GracefulStop
from nn.schema import at_least, check_ranges
from nn.seeding import random_streams, seed_everything, set_random_streams

FINISHED, STOPPED = "finished", "stopped"


def part_state(part: Any) -> Any:
    """What a checkpoint holds of one part of a run (see `Run.keep`)."""
    if isinstance(part, torch.Generator):
        return part.get_state()
    if isinstance(part, torch.Tensor):
        return part.detach().clone()
    return part.state_dict()


@dataclass
class RunConfig:
    name: str = MISSING  # experiment name; also the run dir's parent folder
    trainer: str = MISSING  # module that trains, evaluates and watches this experiment
    seed: int = MISSING
    device: str = MISSING  # auto | cpu | cuda | cuda:N | mps
    bf16: bool = False  # bfloat16 autocast of the networks' forward passes
    compile: bool = False  # torch.compile the networks (first steps are slow: compiling)
    threads: int | None = at_least(1, None)  # torch CPU threads (null: torch's default, all cores)
    resume: str | None = None  # a run dir to continue
    render: bool = False  # show the games live while training (pygame window)
    # the metrics.json figure a sweep optimises and the Hydra task returns (null: the
    # run's headline, its first best_* figure)
    optimized_metric: str | None = None
    search: Any = None  # rlgen-search's settings (conf/hparams_search/; nn/tools/search.py)
    env: Any = None
    model: Any = None
    algo: Any = None
    data: Any = None



class Run:
    """One training run in its run dir (see the module docstring for the calls)."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        problem = check_ranges(cfg)  # rlgen-train checked already; a bench or test may not
        if problem:
            raise UserError(problem)
        self.cfg = cfg
        self.device = select_device(cfg.device)
        # values below float32's normal range (Adam's second moments of tiny gradients) take
        # the CPU's slow path, up to ten times slower per step: count them as zero
        torch.set_flush_denormal(True)
        seed_everything(cfg.seed)  # before the trainer builds any env, network or data order
        self.dir = Path(run_dir)
        self.checkpoints = self.dir / "checkpoints"
        self.config = OmegaConf.to_container(cfg, resolve=True)  # recorded in every checkpoint
        # the `last` checkpoint of the run to continue, read once (a DQN's holds its replay)
        self.resumed: dict | None = resume_payload(cfg.resume, cfg.name) if cfg.resume else None
        self.logger: RunLogger | None = None
        self.position: EpochPosition | None = None  # epoch-based trainers: `epoch_position`
        self._stop = GracefulStop.install(self.dir)
        self.stopped: str | None = None  # the stop message, once a signal stopped the run
        self.parts: dict[str, Any] = {}  # what checkpoints hold (`keep`)
        self.counters: Any = SimpleNamespace()
        self._saved_at: dict[str, float] = {}  # `save_every`'s clock, per checkpoint name

    @property
    def state(self) -> dict:
        """The resumed checkpoint's tensors (nets, optimizers, random streams)."""
        return self.resumed["state"]

    @property
    def meta(self) -> dict:
        """The resumed checkpoint's plain values (counters, history)."""
        return self.resumed["meta"]

    def open_logger(self, total: int, unit: str, done: int = 0,
                    logged_to: int | None = None) -> RunLogger:
        """The logger, its progress bar at `done` of `total`. `logged_to`: the last step a
        resumed run logged scalars at (default `done`); a crashed run's later events go."""
        logged_to = done if logged_to is None else logged_to
        self.logger = RunLogger(self.dir, self.cfg, total=total, unit=unit, initial=done,
                                purge_step=logged_to + 1 if logged_to else None)
        return self.logger

    def progress(self, step: int, record: dict) -> None:
        """One line per evaluation in progress.jsonl, written as it happens: a search
        worker follows it to prune a hopeless trial (nn/tools/search_worker.py)."""
        with open(self.dir / "progress.jsonl", "a") as out:
            out.write(json.dumps({"step": step, **record}) + "\n")

    def keep(self, counters: Any = None, **parts: Any) -> Any:
        """Register what this run's checkpoints hold: `parts` by name (the names the read-back
        tools load, such as "policy" or "model") and the loop's `counters` (a dataclass or
        SimpleNamespace; a dict becomes a SimpleNamespace). On resume every part and
        counter is restored here from the `last` checkpoint, then every random stream the
        run seeded (building networks draws from torch's, so call this once they are all
        built). Returns the counters, which the loop then updates in place."""
        if isinstance(counters, dict):
            counters = SimpleNamespace(**counters)
        self.parts.update(parts)
        self.counters = counters if counters is not None else SimpleNamespace()
        if self.resumed:
            for name, part in self.parts.items():
                self._restore(name, part)
            saved = self.meta.get("counters", self.meta)
            tensors = self.state.get("counters", {})
            for name in vars(self.counters):
                if name in tensors:
                    setattr(self.counters, name, tensors[name].to(self.device))
                elif name in saved:  # (one an older rlgen did not save keeps its default)
                    setattr(self.counters, name, saved[name])
            state = self.state
            set_random_streams(state["random_streams"] if "random_streams" in state
                               else state["torch_rng"])  # a checkpoint from before they all were
        return self.counters

    def _restore(self, name: str, part: Any) -> None:
        state = self.state
        if name not in state:
            raise UserError(f"{self.cfg.resume} holds no {name!r} to resume from (an older rlgen "
                            "or other settings wrote it); start a new run")
        try:
            if isinstance(part, torch.nn.Module):
                load_weights(part, self.resumed, name)
            elif isinstance(part, torch.Generator):
                part.set_state(state[name])
            elif isinstance(part, torch.Tensor):
                with torch.no_grad():  # (a tensor that is learnt, such as SAC's temperature)
                    part.copy_(state[name])
            else:
                part.load_state_dict(state[name])
        except (KeyError, ValueError, RuntimeError, IndexError) as err:
            raise UserError(f"{self.cfg.resume}'s {name!r} does not fit this run's settings "
                            f"({str(err).splitlines()[0][:100]}); resume with the run's own "
                            "settings or start a new run") from err

    def epoch_position(self, generator: torch.Generator | None) -> EpochPosition:
        """Where the run stands inside its epochs (nn/epochs.py), `generator` drawing each
        epoch's order: a part of the run, as the resumed checkpoint left it."""
        self.position = EpochPosition(generator)
        if self.resumed and "position" in self.state:
            self.position.load_state_dict(self.state["position"])
        self.parts["position"] = self.position
        return self.position

    def save(self, name: str, only: tuple[str, ...] | None = None, **meta: Any) -> None:
        """checkpoints/<name>.pt, atomically: every kept part (or those named in `only`),
        the counters, every random stream the run seeded, the experiment, trainer and
        config, and `meta` besides (plain values the read-back tools show)."""
        state = {name: part_state(part) for name, part in self.parts.items()
                 if only is None or name in only}
        counters = vars(self.counters)
        state["counters"] = {k: v for k, v in counters.items() if isinstance(v, torch.Tensor)}
        plain = {k: v for k, v in counters.items() if not isinstance(v, torch.Tensor)}
        state["random_streams"] = random_streams()
        save_checkpoint(self.checkpoints / f"{name}.pt", experiment=self.cfg.name,
                        trainer=self.cfg.trainer, config=self.config, state=state,
                        meta={**plain, **meta})

    def save_every(self, name: str, seconds: float) -> None:
        """`save(name)` if `seconds` have passed since this run's last save of it here (or
        none was made): a loop that calls it often pays for a save now and then, while a
        killed run loses at most `seconds`; the final save and a signal's come from
        `finish` regardless."""
        now = time.monotonic()
        if now - self._saved_at.get(name, -math.inf) >= seconds:
            self.save(name)
            self._saved_at[name] = now

    def stop_requested(self, where: str) -> bool:
        """Whether a stop signal came; the trainer then saves and leaves its loop."""
        if self._stop.requested and self.stopped is None:
            self.stopped = self._stop.message(where, self.dir)
        return self.stopped is not None

    def check_finite(self, value: float, where: str) -> None:
        """A NaN or infinite loss ends the run in one line; the last good `last.pt` stays."""
        if not math.isfinite(value):
            raise UserError(f"loss became {value} at {where}; the last good checkpoint is "
                            f"{self.checkpoints / 'last.pt'}; try a smaller algo.lr")

    def finish(self, metrics: dict, hparams: dict[str, float | None], summary: str) -> dict:
        """Restore the signal handlers, write metrics.json (with `status`) and the HParams
        summary, print the one summary line (or, after a signal, how to resume)."""
        self._stop.restore()
        if self.parts:  # the final save: where the loop ended, a signal's stop included
            self.save("last")
        metrics = {"experiment": self.cfg.name, "seed": self.cfg.seed, **metrics,
                   "status": STOPPED if self.stopped else FINISHED}
        self.logger.finish(metrics, hparams, summary=f"{summary}; run dir {self.dir}",
                           stopped=self.stopped)
        return metrics


def recorded(run_dir: Path) -> dict:
    """What a run dir says of itself: its experiment and status ({} for a fresh dir). A
    run killed before it finished has a config but no metrics.json: status None."""
    run_dir = Path(run_dir)
    found: dict = {}
    config = run_dir / ".hydra" / "config.yaml"
    if config.is_file():
        try:
            found["experiment"] = OmegaConf.load(config).get("name")
        except Exception:  # a damaged config: the metrics below may still say
            pass
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return found
    if isinstance(metrics, dict):
        found.update({k: metrics[k] for k in ("experiment", "status") if k in metrics})
    return found


def run_status(run_dir: Path) -> str | None:
    """"finished", "stopped" (by a signal; resume continues it) or None (no metrics)."""
    return recorded(run_dir).get("status")
