"""What the launcher of `rlgen-search` (nn/tools/search.py) and its workers
(nn/tools/search_worker.py) share: the search's settings, its space in Hydra's sweep
syntax and the trial's settings drawn from it, the plan every worker reads from the
study, the pruner, and how a trial's `rlgen-train` is called and its failure read."""

import copy
from dataclasses import dataclass, field
from typing import Any

import yaml
from omegaconf import MISSING, OmegaConf

from conf.compose import compose
from nn.config import explain_config_error
from nn.errors import UserError
from nn.schema import at_least, check_ranges, one_of


@dataclass
class SearchConfig:
    direction: str = one_of("maximize", "minimize")
    trials: int = at_least(1)
    jobs: int = at_least(1)  # trials run at once, each with threads=1
    # setting -> Hydra sweep: interval(a, b), tag(log, interval(a, b)), range(a, b), choice(...)
    params: dict[str, str] = field(default_factory=dict)
    # each trial's seeds, its value the mean over them (null: the run's seed alone)
    trial_seeds: list[int] | None = None
    rerun_seeds: list[int] = field(default_factory=list)  # fresh seeds for the best trial
    # TPE's own seed: one trial at a time, the same search proposes the same trials (with
    # several at once, later proposals depend on which trial finishes first)
    sampler_seed: int = 0
    dir: str = MISSING  # where the trials go
    # where the study lives (nn/tools/search_worker.py): null, a journal file in the search
    # folder (workers on one machine); a database URL, e.g.
    # postgresql+psycopg://user@host/db, for workers on several; a path: a journal file there
    storage: str | None = None
    study_name: str | None = None  # null: the search folder's name
    # worker processes, each running `jobs` trials at once; with hydra/launcher=submitit_slurm
    # (or submitit_local) one submitit job array of that many tasks
    workers: int = at_least(1, 1)
    # the history figure each run reports at every evaluation, for pruning (null: no pruning),
    # reduced over the evaluations so far as the optimised metric is (mean: an area under
    # the curve, best: a best_* figure, last: a final one)
    progress: str | None = None
    progress_reduce: str = one_of("last", "mean", "best", default="last")
    pruner: str = one_of("median", "hyperband", "none", default="median")
    prune_startup_trials: int = at_least(0, 4)  # median: trials finished before any is pruned
    prune_warmup_steps: int = at_least(0, 0)  # median: steps of a trial before it may be pruned
    heartbeat_seconds: int = at_least(1, 10)  # on a database: a running trial's sign of life
    grace_seconds: int = at_least(1, 60)  # silent this long: failed and retried once


class TrialFailed(Exception):
    pass


class SearchStopped(UserError):
    """A trial stopped by a signal (the user's Ctrl-C reaches every trial too)."""


def failure_cause(stderr: str, returncode: int) -> str:
    """The line that says why a trial failed: rlgen's one-line error, else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("rlgen-train: error:")]
    if errors:
        return errors[-1].removeprefix("rlgen-train: error: ")
    return lines[-1] if lines else f"rlgen-train exited with status {returncode}"


def parse_space(params: dict[str, str], cfg) -> dict[str, Any]:
    """Each searched setting's Hydra sweep, checked against the experiment's config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    parser = OverridesParser.create()
    space = {}
    for key, spec in params.items():
        if OmegaConf.select(cfg, key, default=MISSING) is MISSING:
            raise UserError(f"search.params: {key} is not a setting of experiment {cfg.name}")
        try:
            override = parser.parse_overrides([f"{key}={spec}"])[0]
        except Exception as err:
            raise UserError(f"search.params.{key}: {explain_config_error(err)}") from err
        sweep = override.value()
        if not isinstance(sweep, (ChoiceSweep, IntervalSweep, RangeSweep)):
            raise UserError(f"search.params.{key}={spec} is not a sweep: use interval(a, b), "
                            "tag(log, interval(a, b)), range(a, b) or choice(x, y, ...)")
        integer = isinstance(OmegaConf.select(cfg, key), int)
        if isinstance(sweep, IntervalSweep):
            choices, ends = None, [sweep.start, sweep.end]
            ends = [int(v) for v in ends] if integer else ends
        else:
            choices = list(override.sweep_string_iterator())
            ends = [yaml.safe_load(c) for c in choices]
        for value in ends:  # the space's edges inside the settings' ranges, before any trial
            trial_cfg = copy.deepcopy(cfg)
            OmegaConf.update(trial_cfg, key, value)
            problem = check_ranges(trial_cfg)
            if problem:
                raise UserError(f"search.params.{key}={spec} reaches outside its range: {problem}")
        space[key] = (sweep, choices, integer)
    return space


def suggest(trial, space: dict[str, Any]) -> list[str]:
    """The trial's settings as overrides."""
    from hydra.core.override_parser.types import IntervalSweep

    overrides = []
    for key, (sweep, choices, integer) in space.items():
        if isinstance(sweep, IntervalSweep):
            log = "log" in sweep.tags
            value = (trial.suggest_int(key, int(sweep.start), int(sweep.end), log=log) if integer
                     else trial.suggest_float(key, sweep.start, sweep.end, log=log))
        else:
            value = trial.suggest_categorical(key, choices)
        overrides.append(f"{key}={value}")
    return overrides


@dataclass
class Plan:
    """What every worker of a search needs; kept in the study's attributes, so a worker on
    another machine needs only the storage and the study's name."""
    settings: Any  # SearchConfig
    metric: str | None
    base: list[str]  # the overrides that set every run of the search
    space: dict[str, Any]
    experiment: str


def plan_from(record: dict) -> Plan:
    settings = OmegaConf.merge(OmegaConf.structured(SearchConfig), record["settings"])
    cfg = compose(record["base"])
    return Plan(settings, record["metric"], record["base"], parse_space(dict(settings.params), cfg),
                record["experiment"])


def make_pruner(settings):
    """Median (Optuna's and RL Zoo's default) or Hyperband; none without a progress figure."""
    import optuna

    if settings.progress is None or settings.pruner == "none":
        return optuna.pruners.NopPruner()
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=settings.prune_startup_trials,
                                       n_warmup_steps=settings.prune_warmup_steps)


def shown_storage(storage: str | None) -> str | None:
    """A storage URL as it may be printed and recorded: its password hidden."""
    if storage is None or "://" not in storage:
        return storage
    from sqlalchemy.engine import make_url

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except Exception:
        return storage.split("://", 1)[0] + "://..."
