"""`rlgen-search hparams_search=PRESET [override ...]`: hyperparameter search with Optuna.

A preset in conf/hparams_search/ picks the experiment, the figure to optimise
(`optimized_metric`, a key of the run's metrics.json) and `search:` (direction, trials,
parallel jobs, the space in Hydra's sweep syntax, the trials' seeds, the fresh seeds of
the re-run). A trial is one plain `rlgen-train` run per trial seed, in
SEARCH_DIR/trial_NNN_seedS, its value the mean over them, so `rlgen-runs` and
`rlgen-plot` read the trials like any sweep; the best trial's settings, and the
experiment's own, are then re-run on fresh seeds (SEARCH_DIR/best_seedS, default_seedS),
so the winner is judged on seeds the search never saw. SEARCH_DIR/search.json holds every
trial and the re-runs, search.png the search at a glance. A sweep among the overrides
(`'algo.lr=interval(0.001, 0.1)'`, `algo.batch_size=32,64`) joins the preset's space.

Why not Hydra's Optuna sweeper plugin: its latest release pins optuna<3, and a plugin of
rlgen's own would need a top-level `hydra_plugins` package. `rlgen-train -m
hparams_search=PRESET ...` runs this same search.
"""

import copy
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, OmegaConf

from conf.compose import compose
from nn.checkpoint import write_json
from nn.config import explain_config_error
from nn.errors import UserError
from nn.schema import at_least, check_ranges, one_of
from nn.tools.runs import UnknownMetric, optimized_value


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


class TrialFailed(Exception):
    pass


class SearchStopped(UserError):
    """A trial stopped by a signal (the user's Ctrl-C reaches every trial too)."""


def train_command() -> list[str]:
    """The `rlgen-train` of this installation (beside the running interpreter)."""
    beside = Path(sys.executable).with_name("rlgen-train")
    return [str(beside)] if beside.is_file() else ["rlgen-train"]


def failure_cause(stderr: str, returncode: int) -> str:
    """The line that says why a trial failed: rlgen's one-line error, else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("rlgen-train: error:")]
    if errors:
        return errors[-1].removeprefix("rlgen-train: error: ")
    return lines[-1] if lines else f"rlgen-train exited with status {returncode}"


def run_trial(overrides: list[str], run_dir: Path, metric: str | None) -> float:
    """One `rlgen-train` run in `run_dir`; its metrics.json's `metric` figure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*train_command(), *overrides, "threads=1", f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise TrialFailed(failure_cause(done.stderr, done.returncode))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if metrics.get("status") == "stopped":
        raise SearchStopped(f"{run_dir.name} was stopped by a signal; the search ends here "
                            f"(its trials so far: {run_dir.parent / 'search.json'})")
    return optimized_value(metrics, metric)


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


def settings_of(trial) -> list[str]:
    return [f"{key}={value}" for key, value in trial.params.items()]


def plot_search(trials: list[dict], space: dict, direction: str, metric: str, path: Path) -> None:
    """The objective per trial with the best so far, and against each searched setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in trials if t["value"] is not None]
    figure, axes = plt.subplots(1, 1 + len(space), figsize=(3.6 * (1 + len(space)), 3.4),
                                dpi=120, squeeze=False)
    history = axes[0][0]
    numbers, values = [t["number"] for t in done], [t["value"] for t in done]
    pick = max if direction == "maximize" else min
    best_so_far = [pick(values[:i + 1]) for i in range(len(values))]
    history.scatter(numbers, values, s=14, label="trial")
    history.step(numbers, best_so_far, where="post", color="C3", label="best so far")
    history.set_xlabel("trial")
    history.set_ylabel(metric)
    history.legend(fontsize=7)
    for axis, (key, (sweep, choices, _)) in zip(axes[0][1:], space.items(), strict=True):
        xs = [t["params"][key] for t in done]
        if choices is not None:  # categories at evenly spaced places, in the space's order
            axis.set_xticks(range(len(choices)), choices, fontsize=7)
            xs = [choices.index(x) for x in xs]
        elif "log" in sweep.tags:
            axis.set_xscale("log")
        axis.scatter(xs, values, s=14, c=numbers, cmap="viridis")
        axis.set_xlabel(key)
    for axis in axes[0]:
        axis.grid(alpha=0.3)
    figure.suptitle(f"{len(done)} trials, {direction} {metric}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def rerun(settings: dict[str, list[str]], seeds: list[int], base: list[str], search_dir: Path,
          metric: str | None, jobs: int) -> dict:
    """Each labelled group of settings again on every fresh seed, `jobs` runs at a time:
    label -> its settings, each seed's figure (or why it failed) and their mean."""
    from concurrent.futures import ThreadPoolExecutor

    def one(label: str, seed: int):
        try:
            return run_trial([*base, *settings[label], f"seed={seed}"],
                             search_dir / f"{label}_seed{seed}", metric)
        except SearchStopped:
            raise
        except (TrialFailed, UserError) as err:
            return str(err)

    runs = [(label, seed) for label in settings for seed in seeds]
    with ThreadPoolExecutor(jobs) as pool:
        done = dict(zip(runs, pool.map(lambda run: one(*run), runs), strict=True))
    results = {}
    for label in settings:
        per_seed = {seed: done[label, seed] for seed in seeds}
        values = [v for v in per_seed.values() if isinstance(v, float)]
        results[label] = {"settings": settings[label], "per_seed": per_seed,
                          "mean": sum(values) / len(values) if values else None}
    return results


def split_sweeps(overrides: list[str]) -> tuple[list[str], dict[str, str]]:
    """Sweeps on the command line (`'algo.lr=interval(0.001, 0.1)'`, `algo.batch=8,16`)
    join the preset's space, as with Hydra's Optuna sweeper; the rest set every run."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    plain, sweeps = [], {}
    for override in overrides:
        try:
            parsed = parser.parse_overrides([override])[0]
        except Exception:  # composing reports it, in one line
            plain.append(override)
            continue
        if parsed.is_sweep_override():
            sweeps[parsed.key_or_group] = override.split("=", 1)[1]
        else:
            plain.append(override)
    return plain, sweeps


def prepare(overrides: list[str]):
    """The search's config, settings and space, all checked before any trial runs; also
    the overrides that set every run (the command line's sweeps left out)."""
    from nn.tools.checks import check_config, check_writable

    overrides, sweeps = split_sweeps(overrides)
    try:
        cfg = compose(overrides)
    except Exception as err:
        raise UserError(explain_config_error(err)) from err
    if cfg.get("search") is None:
        raise UserError("no search settings: pick a preset, hparams_search=NAME (see "
                        "conf/hparams_search/)")
    try:
        settings = OmegaConf.merge(OmegaConf.structured(SearchConfig),
                                   OmegaConf.to_container(cfg.search, resolve=True))
    except Exception as err:
        raise UserError(f"search: {explain_config_error(err)}") from err
    problem = check_ranges(settings, "search.")
    if problem:
        raise UserError(problem)
    check_config(cfg)  # the experiment as configured trains (env, model, ranges)
    settings.params = {**settings.params, **sweeps}
    space = parse_space(dict(settings.params), cfg)
    if not space:
        raise UserError("search.params is empty: name at least one setting to search")
    if settings.trial_seeds is None:
        settings.trial_seeds = [cfg.seed]
    if not settings.trial_seeds:
        raise UserError("search.trial_seeds is empty: give each trial at least one seed")
    seen = sorted(set(settings.trial_seeds) & set(settings.rerun_seeds))
    if seen:
        raise UserError(f"search.rerun_seeds holds the trials' own seed {seen[0]}: re-run on "
                        "seeds the search never saw")
    search_dir = Path(settings.dir)
    check_writable(search_dir)
    if search_dir.exists() and any(search_dir.iterdir()):
        raise UserError(f"{search_dir} is not empty; choose another search.dir")
    return cfg, settings, space, search_dir, overrides


def search(overrides: list[str]) -> dict:
    import optuna

    cfg, settings, space, search_dir, overrides = prepare(overrides)
    metric = cfg.get("optimized_metric")
    # every run of the search composes as the preset does; the searched settings come last
    base = [o for o in overrides if not o.startswith(("search.", "threads=", "hydra."))]
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials: our own line
    study = optuna.create_study(direction=settings.direction,
                                sampler=optuna.samplers.TPESampler(seed=settings.sampler_seed))
    summary = {"experiment": cfg.name, "metric": metric or "best_*",
               "direction": settings.direction, "trials": []}
    lock = threading.Lock()
    started = time.perf_counter()

    def objective(trial) -> float:
        params = suggest(trial, space)
        runs = {seed: search_dir / f"trial_{trial.number:03d}_seed{seed}"
                for seed in settings.trial_seeds}
        record = {"number": trial.number, "params": dict(trial.params),
                  "runs": [str(r) for r in runs.values()], "value": None, "per_seed": {},
                  "error": None}
        try:
            for seed, run_dir in runs.items():
                record["per_seed"][seed] = run_trial([*base, *params, f"seed={seed}"], run_dir,
                                                     metric)
            record["value"] = sum(record["per_seed"].values()) / len(runs)
        except (UnknownMetric, SearchStopped):
            raise  # every further trial would fail alike, or the user asked to stop
        except (TrialFailed, UserError) as err:
            record["error"] = str(err)
        with lock:  # the record on disk after every trial, so a stopped search keeps it
            summary["trials"] = sorted([*summary["trials"], record], key=lambda t: t["number"])
            write_json(search_dir / "search.json", summary)
            shown = (f"{record['value']:.4g}" if record["error"] is None
                     else f"failed: {record['error']}")
            print(f"trial {trial.number}: {' '.join(params)} -> {shown}", flush=True)
        if record["error"] is not None:
            raise TrialFailed(record["error"])
        return record["value"]

    study.optimize(objective, n_trials=settings.trials, n_jobs=settings.jobs,
                   catch=(TrialFailed,))
    trials = summary["trials"]
    failed = sum(t["error"] is not None for t in trials)
    if failed == len(trials):
        raise UserError(f"all {len(trials)} trials failed; the first: {trials[0]['error']}")
    best = study.best_trial
    summary |= {"failed": failed, "search_seconds": round(time.perf_counter() - started, 1),
                "best": {"number": best.number, "value": best.value, "params": best.params}}
    if settings.rerun_seeds:  # the winner beside the experiment's own settings
        reruns = rerun({"best": settings_of(best), "default": []}, list(settings.rerun_seeds),
                       base, search_dir, metric, settings.jobs)
        summary["best_rerun"], summary["default_rerun"] = reruns["best"], reruns["default"]
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    write_json(search_dir / "search.json", summary)
    plot_search(trials, space, settings.direction, metric or "headline", search_dir / "search.png")
    return summary


def describe_rerun(name: str, rerun_result: dict) -> str:
    seeds = ", ".join(f"{seed}: {v:.4g}" if isinstance(v, float) else f"{seed}: failed"
                      for seed, v in rerun_result["per_seed"].items())
    mean = rerun_result["mean"]
    return f"{name} on fresh seeds: mean {mean:.4g} ({seeds})" if mean is not None else \
        f"{name} on fresh seeds: every run failed ({seeds})"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        from conf.compose import CONF_DIR
        from nn.config import describe_keys

        chosen = [a for a in argv if a.startswith("hparams_search=")]
        values = OmegaConf.create(OmegaConf.to_container(compose(chosen).search, resolve=True)) \
            if chosen else None
        presets = sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml"))
        print(f"{__doc__}\npresets (hparams_search=NAME): {', '.join(presets)}\n")
        print(f"search settings (search.KEY=VALUE){' of ' + chosen[0] if chosen else ''}:")
        print(describe_keys(SearchConfig, values))
        return
    bad = [a for a in argv if "=" not in a]
    try:
        if bad:
            raise UserError(f"argument {bad[0]!r} is not key=value (e.g. "
                            "hparams_search=cartpole_reinforce_fast search.trials=20)")
        summary = search(argv)
    except UserError as err:
        print(f"rlgen-search: error: {err}", file=sys.stderr)
        sys.exit(2)
    best = summary["best"]
    search_dir = Path(summary["trials"][0]["runs"][0]).parent
    print(f"{len(summary['trials'])} trials ({summary['failed']} failed) in "
          f"{summary['search_seconds']:.0f}s; best: trial {best['number']} "
          f"{' '.join(f'{k}={v}' for k, v in best['params'].items())} -> {best['value']:.4g}")
    for name in ("best_rerun", "default_rerun"):
        if name in summary:
            print(describe_rerun(name.split("_")[0], summary[name]))
    print(f"wrote {search_dir / 'search.json'} and {search_dir / 'search.png'}")
