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

import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

from omegaconf import OmegaConf

from conf.compose import compose
from nn.checkpoint import write_json
from nn.config import explain_config_error
from nn.errors import UserError
from nn.schema import check_ranges
from nn.tools.runs import optimized_value
from nn.tools.search_space import (
    SearchConfig,
    SearchStopped,
    TrialFailed,
    failure_cause,
    make_pruner,
    parse_space,
    shown_storage,
)
from nn.tools.warm_runs import start_run, stderr_of


def run_trial(overrides: list[str], run_dir: Path, metric: str | None) -> float:
    """One `rlgen-train` run in `run_dir` (forked from the warm process); its
    metrics.json's `metric` figure."""
    run = start_run([*overrides, "threads=1", f"hydra.run.dir={run_dir}"])
    stderr = stderr_of(run)
    if run.exitcode != 0:
        raise TrialFailed(failure_cause(stderr, run.exitcode))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if metrics.get("status") == "stopped":
        raise SearchStopped(f"{run_dir.name} was stopped by a signal; the search ends here "
                            f"(its trials so far: {run_dir.parent / 'search.json'})")
    return optimized_value(metrics, metric)


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


def rerun_one(overrides: list[str], run_dir: Path, metric: str | None) -> float | str:
    """One re-run: its figure, or why it failed (a submitit task returns it too)."""
    try:
        return run_trial(overrides, run_dir, metric)
    except SearchStopped:
        raise
    except (TrialFailed, UserError) as err:
        return str(err)


def rerun(settings: dict[str, list[str]], seeds: list[int], base: list[str], search_dir: Path,
          metric: str | None, parallel: int, executor=None) -> dict:
    """Each labelled group of settings again on every fresh seed, through the workers'
    executor (submitit tasks, or local processes `parallel` at a time): label -> its
    settings, each seed's figure (or why it failed) and their mean."""
    from concurrent.futures import ThreadPoolExecutor

    runs = [(label, seed) for label in settings for seed in seeds]
    arguments = ([[*base, *settings[label], f"seed={seed}"] for label, seed in runs],
                 [search_dir / f"{label}_seed{seed}" for label, seed in runs], [metric] * len(runs))
    if executor is not None:
        outcomes = [job.result() for job in executor.map_array(rerun_one, *arguments)]
    else:
        with ThreadPoolExecutor(parallel) as pool:
            outcomes = list(pool.map(rerun_one, *arguments))
    done = dict(zip(runs, outcomes, strict=True))
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
    study_name = settings.study_name or search_dir.name
    marker = search_dir / "study.json"  # a search's folder: the same command resumes it
    if search_dir.exists() and any(search_dir.iterdir()):
        if not marker.is_file():
            raise UserError(f"{search_dir} is not empty; choose another search.dir")
        earlier = json.loads(marker.read_text())
        if earlier["study_name"] != study_name:
            raise UserError(f"{search_dir} holds study {earlier['study_name']}, not {study_name};"
                            f" resume it with search.study_name={earlier['study_name']}")
    launcher = None
    if any(o.startswith(("hydra/launcher=", "hydra.launcher.")) for o in overrides):
        try:
            launcher = OmegaConf.to_container(
                compose(overrides, return_hydra_config=True).hydra.launcher, resolve=False)
        except Exception as err:
            raise UserError(explain_config_error(err)) from err
    return cfg, settings, space, search_dir, overrides, launcher


def open_study(settings, search_dir: Path, study_name: str, record: dict):
    """The launcher alone creates the storage and the study, before any worker starts; a
    study that exists already is resumed, if it is the same search."""
    import optuna

    from nn.tools import search_worker

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own lines say what happened
    storage = search_worker.open_storage(settings.storage, search_dir, settings.heartbeat_seconds,
                                         settings.grace_seconds)
    if settings.storage and settings.storage.startswith("sqlite"):
        print("rlgen-search: warning: SQLite is not made for workers writing at once; use the "
              "default journal file on one machine, PostgreSQL across machines", file=sys.stderr)
    study = optuna.create_study(storage=storage, study_name=study_name,
                                direction=settings.direction, load_if_exists=True)
    earlier = study.user_attrs.get("plan")
    if earlier is not None:
        same = ("experiment", "metric", "base")
        for key in same:
            if earlier[key] != record[key]:
                raise UserError(f"study {study_name} was started with {key} {earlier[key]}, not "
                                f"{record[key]}; choose another search.dir or search.study_name")
        for key in ("direction", "params", "trial_seeds", "progress", "progress_reduce"):
            if earlier["settings"][key] != record["settings"][key]:
                raise UserError(f"study {study_name} was started with search.{key}="
                                f"{earlier['settings'][key]}; resume it with the same, or choose "
                                "another search.dir")
    study.set_user_attr("plan", record)  # a resume may raise the budget or add workers
    dead = search_worker.fail_dead_workers_trials(study) \
        if search_worker.journal_path(settings.storage, search_dir) else []
    if earlier is not None:
        done = len(study.get_trials(deepcopy=False))
        print(f"resuming study {study_name}: {done} trials so far"
              + (f"; trials {dead} of dead workers failed and queued again" if dead else ""),
              flush=True)
    return study


def submitit_parameters(launcher: dict) -> tuple[str, dict]:
    """submitit's cluster and parameters from a Hydra launcher preset's fields (the names
    hydra-submitit-launcher gives them: Slurm's own get a slurm_ prefix)."""
    local = launcher["_target_"].endswith("LocalLauncher")
    generic = {"timeout_min", "nodes", "tasks_per_node", "cpus_per_task", "gpus_per_node",
               "mem_gb", "name", "stderr_to_stdout"}
    parameters = {}
    for key, value in launcher.items():
        if key in ("_target_", "submitit_folder") or value is None or value == {}:
            continue
        if key in generic:
            parameters[key] = value
        elif not local:
            parameters[f"slurm_{key}"] = value
    return ("local" if local else "slurm"), parameters


def submitit_executor(launcher: dict, search_dir: Path):
    """One submitit job array for the workers (and then the re-runs)."""
    import submitit

    cluster, parameters = submitit_parameters(launcher)
    try:
        executor = submitit.AutoExecutor(folder=search_dir / ".submitit" / "%j", cluster=cluster)
    except RuntimeError as err:  # no srun: not a Slurm machine
        raise UserError(f"hydra/launcher=submitit_{cluster}: {err}; run it on the cluster's "
                        "login node, or use hydra/launcher=submitit_local here") from err
    executor.update_parameters(**parameters)
    return executor


def workers_needed(settings, study) -> int:
    """search.workers, or fewer where the study has fewer trials left to run: those the
    budget has not handed out, those queued again and those still marked running (on a
    database a dead worker's trial is failed and retried by a live worker)."""
    from optuna.trial import TrialState

    from nn.tools.search_worker import budget_taken

    trials = study.get_trials(deepcopy=False)
    taken, _ = budget_taken(trials)
    pending = sum(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials)
    return min(settings.workers, -(-(max(settings.trials - taken, 0) + pending) // settings.jobs))


def run_workers(settings, search_dir: Path, study_name: str, executor, n: int) -> None:
    """`n` workers: in this process (one), local processes, or submitit tasks."""
    from nn.tools import search_worker

    storage = settings.storage
    if n == 0:  # a finished budget: nothing to run
        return
    if executor is not None:
        jobs = executor.map_array(search_worker.work, [str(search_dir)] * n, [storage] * n,
                                  [study_name] * n, list(range(n)))
        print(f"{n} workers submitted as submitit jobs "
              f"{', '.join(j.job_id for j in jobs)}", flush=True)
        for job in jobs:
            try:
                job.result()
            except Exception as err:  # the job's own log says more
                first = str(err).strip().splitlines()
                print(f"rlgen-search: worker job {job.job_id} failed: "
                      f"{first[-1] if first else type(err).__name__}", file=sys.stderr)
    elif n == 1:
        search_worker.work(str(search_dir), storage, study_name)
    else:
        command = [sys.executable, "-m", "nn.tools.search_worker", str(search_dir), study_name]
        children = [subprocess.Popen([*command, str(i), *([storage] if storage else [])])
                    for i in range(n)]
        for child in children:
            child.wait()


def summarize(study, cfg, settings, metric: str | None, started: float) -> dict:
    """search.json from the storage, not from one process's memory: every trial of every
    worker, with its state, settings, value, seeds and worker."""
    from optuna.trial import TrialState

    trials = []
    for t in study.get_trials(deepcopy=False):
        trials.append({
            "number": t.number, "state": t.state.name.lower(), "params": dict(t.params),
            "value": t.value if t.state == TrialState.COMPLETE else None,
            "per_seed": t.user_attrs.get("per_seed", {}), "runs": t.user_attrs.get("runs", []),
            "error": t.user_attrs.get("error") or t.user_attrs.get("stopped"),
            "pruned_at": t.user_attrs.get("pruned_at"), "retry_of": t.user_attrs.get("retry_of"),
            "worker": t.user_attrs.get("worker"),
            "started": t.datetime_start.isoformat() if t.datetime_start else None,
            "ended": t.datetime_complete.isoformat() if t.datetime_complete else None,
            "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())}})
    states = [t["state"] for t in trials]
    summary = {"experiment": cfg.name, "metric": metric or "best_*",
               "direction": settings.direction, "study": study.study_name,
               "storage": shown_storage(settings.storage) or "study.log (journal)",
               "workers": settings.workers, "jobs": settings.jobs, "budget": settings.trials,
               "pruner": make_pruner(settings).__class__.__name__,
               "complete": states.count("complete"), "pruned": states.count("pruned"),
               "failed": states.count("fail"), "trials": trials,
               "search_seconds": round(time.perf_counter() - started, 1)}
    stamps = [(t["started"], t["ended"]) for t in trials if t["started"] and t["ended"]]
    if stamps:
        from datetime import datetime

        first = min(datetime.fromisoformat(a) for a, _ in stamps)
        last = max(datetime.fromisoformat(b) for _, b in stamps)
        summary["trials_span_seconds"] = round((last - first).total_seconds(), 1)
    complete = [t for t in trials if t["value"] is not None]
    if complete:
        pick = max if settings.direction == "maximize" else min
        best = pick(complete, key=lambda t: t["value"])
        summary["best"] = {"number": best["number"], "value": best["value"],
                           "params": best["params"]}
    return summary


def search(overrides: list[str]) -> dict:
    cfg, settings, space, search_dir, overrides, launcher = prepare(overrides)
    metric = cfg.get("optimized_metric")
    # every run of the search composes as the preset does; the searched settings come last
    base = [o for o in overrides if not o.startswith(("search.", "threads=", "hydra.", "hydra/"))]
    study_name = settings.study_name or search_dir.name
    record = {"experiment": cfg.name, "metric": metric, "base": base,
              "settings": OmegaConf.to_container(settings)}
    started = time.perf_counter()
    executor = submitit_executor(launcher, search_dir) if launcher is not None else None
    made = not search_dir.exists()
    search_dir.mkdir(parents=True, exist_ok=True)
    try:
        study = open_study(settings, search_dir, study_name, record)
    except UserError:  # a storage that cannot be opened: leave nothing behind
        if made:
            shutil.rmtree(search_dir, ignore_errors=True)
        raise
    write_json(search_dir / "study.json", {"study_name": study_name,
                                          "storage": shown_storage(settings.storage)})
    if launcher is not None and settings.storage is None and launcher["_target_"].endswith(
            "SlurmLauncher"):
        print("rlgen-search: warning: a journal file shared by several hosts may lose its "
              "locks (NFS); give search.storage a PostgreSQL URL", file=sys.stderr)
    run_workers(settings, search_dir, study_name, executor, workers_needed(settings, study))
    summary = summarize(study, cfg, settings, metric, started)
    trials = summary["trials"]
    write_json(search_dir / "search.json", summary)
    if any(t["state"] == "waiting" for t in trials):  # a user's stop queued its trial again
        raise SearchStopped("the search was stopped; the same command finishes its budget "
                            f"(its trials so far: {search_dir / 'search.json'})")
    if "best" not in summary:
        errors = [t["error"] for t in trials if t["error"]]
        raise UserError(f"all {len(trials)} trials failed; the first: "
                        f"{errors[0] if errors else 'no trial finished'}")
    best = summary["best"]
    if settings.rerun_seeds:  # the winner beside the experiment's own settings
        reruns = rerun({"best": [f"{k}={v}" for k, v in best["params"].items()], "default": []},
                       list(settings.rerun_seeds), base, search_dir, metric,
                       settings.jobs * settings.workers, executor)
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
    warnings.filterwarnings("ignore", message="(?s).*validated against ConfigStore schema")
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
    print(f"{len(summary['trials'])} trials ({summary['failed']} failed, {summary['pruned']} "
          f"pruned) in {summary['search_seconds']:.0f}s; best: trial {best['number']} "
          f"{' '.join(f'{k}={v}' for k, v in best['params'].items())} -> {best['value']:.4g}")
    for name in ("best_rerun", "default_rerun"):
        if name in summary:
            print(describe_rerun(name.split("_")[0], summary[name]))
    print(f"wrote {search_dir / 'search.json'} and {search_dir / 'search.png'}")
