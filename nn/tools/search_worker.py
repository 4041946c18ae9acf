"""A worker of `rlgen-search` (nn/tools/search.py): it loads the study from its storage and
runs trials, `jobs` at a time, until the search's trial budget is spent.

The study lives in Optuna's storage, never in one process: a journal file in the search
folder by default (processes on one machine), or a database URL such as
`postgresql+psycopg://user@host/db` for workers on several machines. The launcher alone
creates the storage and the study (two workers creating PostgreSQL's tables at once can
crash, optuna issue 1092), then starts the workers; a worker on another machine needs
only the storage, the study's name and the search folder, and finds everything else in
the study's attributes.

The budget is a cap over all workers together: under a lock (a PostgreSQL advisory lock,
or a file lock beside a journal), a worker counts the trials that hold a share of it
(complete, pruned, running, waiting, and failed by an error of their own: a config that
always fails must not retry forever) and asks Optuna for a trial only while some remain.
A trial whose worker died (its heartbeat stopped, on a database; its pid gone, on a
journal, seen when the search is resumed) is failed, holds no share, and is retried once
with the same settings.

A trial is one `rlgen-train` per trial seed (forked from a warm process,
nn/tools/warm_runs.py), all of its seeds at once, each writing one
line per evaluation to `progress.jsonl` in its run folder. The worker reports the mean
over seeds at every step all seeds have reached to the trial, and when the pruner says
so it stops the runs with SIGTERM, rlgen's own graceful stop (they save as usual), and
tells Optuna the trial was pruned. A run stopped by a signal the worker did not send
(the user's Ctrl-C reaches every process of the terminal) stops the search instead; the
interrupted trial is queued again for the resume.
"""

import json
import os
import signal
import socket
import sys
import threading
import time
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from nn.errors import UserError
from nn.tools.runs import UnknownMetric, optimized_value
from nn.tools.search_space import (
    Plan,
    failure_cause,
    make_pruner,
    plan_from,
    shown_storage,
    suggest,
)
from nn.tools.warm_runs import start_run, stderr_of, warm_up

POLL_SECONDS = 0.2  # how often a worker reads its runs' progress files


def journal_path(storage: str | None, search_dir: Path) -> Path | None:
    """The journal file of a search (None when the storage is a database)."""
    if storage is None:
        return search_dir / "study.log"
    return None if "://" in storage else Path(storage)


def open_storage(storage: str | None, search_dir: Path, heartbeat: int, grace: int):
    """Optuna's storage for `search.storage` (see the module docstring)."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    journal = journal_path(storage, search_dir)
    if journal is not None:
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
        except OSError as err:  # its folder missing, a file in its place, not writable
            raise UserError(f"cannot open the search journal {journal}: "
                            f"{err.strerror or err}; give search.storage a path in a "
                            "writable folder") from err
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(storage, heartbeat_interval=heartbeat, grace_period=grace,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                  max_retry=1))
    except Exception as err:  # a wrong URL, a server not running, a driver not installed
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot open search.storage={shown_storage(storage)}: {detail}") from err


def load_plan(search_dir: Path, storage: str | None, study_name: str) -> Plan:
    import optuna

    study = optuna.load_study(study_name=study_name,
                              storage=open_storage(storage, search_dir, 60, 120))
    return plan_from(study.user_attrs["plan"])


@contextmanager
def budget_lock(storage, search_dir: Path, study_name: str):
    """Held while a worker counts the budget and takes a trial: on PostgreSQL an advisory
    lock in the database every worker shares; else a file lock in the search folder."""
    from optuna.storages import RDBStorage

    if isinstance(storage, RDBStorage) and storage.engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with storage.engine.begin() as connection:  # released when the transaction ends
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": zlib.crc32(study_name.encode())})
            yield
    else:
        with FileLock(search_dir / ".budget.lock"):
            yield


def budget_taken(trials) -> tuple[int, bool]:
    """The trials that hold a share of the budget, and whether one waits to be run."""
    from optuna.trial import TrialState

    held = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    taken = sum(t.state in held or (t.state == TrialState.FAIL and "error" in t.user_attrs)
                for t in trials)
    return taken, any(t.state == TrialState.WAITING for t in trials)


def identity() -> dict:
    """Who runs a trial: recorded with it, so a resume can tell a dead worker's trials."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if job is None:
        try:
            import submitit

            job = submitit.JobEnvironment().job_id
        except RuntimeError:  # not inside a submitit job
            job = None
    return {"host": socket.gethostname(), "pid": os.getpid(), "job": job}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def fail_dead_workers_trials(study) -> list[int]:
    """Journal storage has no heartbeats: the running trials of workers on this host whose
    process is gone are failed and queued again once with the same settings."""
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker") or {}
        if worker.get("host") == socket.gethostname() and not pid_alive(worker.get("pid", 0)):
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            if "retry_of" not in trial.user_attrs:
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            failed.append(trial.number)
    return failed


class Follower:
    """Reads one run's progress.jsonl as it grows: step -> the figure to prune on, reduced
    over the evaluations so far as the search's metric is ('last', 'mean' or 'best')."""

    def __init__(self, path: Path, key: str, reduce: str, maximize: bool):
        self.path, self.key, self.reduce, self.maximize = path, key, reduce, maximize
        self.offset, self.values, self.reduced = 0, [], {}

    def read(self) -> None:
        if not self.path.exists():
            return
        with open(self.path) as progress:
            progress.seek(self.offset)
            chunk = progress.read()
        complete = chunk[:chunk.rfind("\n") + 1]  # a line still being written waits
        self.offset += len(complete.encode())
        for line in complete.splitlines():
            record = json.loads(line)
            if record.get(self.key) is None:  # (no figure yet: e.g. no game has finished)
                continue
            self.values.append(record[self.key])
            if self.reduce == "mean":
                value = sum(self.values) / len(self.values)
            elif self.reduce == "best":
                value = max(self.values) if self.maximize else min(self.values)
            else:
                value = record[self.key]
            self.reduced[record["step"]] = value


class Worker:
    """One worker process: `jobs` threads, each taking trials until the budget is spent."""

    def __init__(self, search_dir: Path, storage_name: str | None, study_name: str,
                 index: int = 0):
        import optuna

        self.search_dir = Path(search_dir)
        self.storage_name, self.study_name = storage_name, study_name
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials: our own line
        plan = load_plan(self.search_dir, storage_name, study_name)
        warm_up()  # the runs' fork server imports while the study loads
        self.settings, self.metric, self.base = plan.settings, plan.metric, plan.base
        self.space = plan.space
        self.storage = open_storage(storage_name, self.search_dir, self.settings.heartbeat_seconds,
                                    self.settings.grace_seconds)
        self.study = optuna.load_study(study_name=study_name, storage=self.storage,
                                       # each worker its own proposals; worker 0 those of
                                       # a one-worker search
                                       sampler=optuna.samplers.TPESampler(
                                           seed=self.settings.sampler_seed + 7919 * index),
                                       pruner=make_pruner(self.settings))
        self.who = identity()
        self.stopping = threading.Event()  # the user stopped the search
        self.lock = threading.Lock()  # threads of this worker take turns with Optuna

    def run(self) -> int:
        """Run trials until the budget is spent; the number of trials this worker ran."""
        from optuna.storages import RDBStorage

        self.database = isinstance(self.storage, RDBStorage)
        done = [0] * self.settings.jobs
        threads = [threading.Thread(target=self.take_trials, args=(done, i))
                   for i in range(self.settings.jobs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(done)

    def next_trial(self):
        """A trial of the budget, under the budget lock; None when none is left."""
        from optuna.storages import fail_stale_trials

        with self.lock, budget_lock(self.storage, self.search_dir, self.study_name):
            if self.database:
                fail_stale_trials(self.study)  # dead workers' trials: failed, queued again
            taken, waiting = budget_taken(self.study.get_trials(deepcopy=False))
            if taken >= self.settings.trials and not waiting:
                return None
            trial = self.study.ask()
            trial.set_user_attr("worker", self.who)
            return trial

    def others_running(self) -> bool:
        from optuna.trial import TrialState

        return bool(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    def take_trials(self, done: list[int], index: int) -> None:
        while not self.stopping.is_set():
            trial = self.next_trial()
            if trial is None:
                # on a database a dead worker's trial comes back once its heartbeat is
                # stale: wait for the running ones before leaving
                if self.database and self.others_running():
                    time.sleep(self.settings.heartbeat_seconds)
                    continue
                return
            self.run_trial(trial)
            done[index] += 1

    def heartbeat(self, trial, finished: threading.Event) -> None:
        while not finished.wait(self.settings.heartbeat_seconds):
            self.storage.record_heartbeat(trial._trial_id)

    def run_trial(self, trial) -> None:
        from optuna.trial import TrialState

        params = suggest(trial, self.space)
        runs = {seed: self.search_dir / f"trial_{trial.number:03d}_seed{seed}"
                for seed in self.settings.trial_seeds}
        trial.set_user_attr("runs", [str(r) for r in runs.values()])
        finished = threading.Event()
        if self.database:
            self.storage.record_heartbeat(trial._trial_id)
            threading.Thread(target=self.heartbeat, args=(trial, finished), daemon=True).start()
        try:
            outcome, detail = self.follow(trial, params, runs)
        finally:
            finished.set()
        with self.lock:
            if outcome == "complete":
                trial.set_user_attr("per_seed", {str(s): v for s, v in detail.items()})
                value = sum(detail.values()) / len(detail)
                self.study.tell(trial, value)
                shown = f"{value:.4g}"
            elif outcome == "pruned":
                trial.set_user_attr("pruned_at", detail)
                self.study.tell(trial, state=TrialState.PRUNED)
                shown = f"pruned at step {detail}"
            elif outcome == "stopped":  # by the user: queued again for the resume
                trial.set_user_attr("stopped", detail)
                self.study.tell(trial, state=TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                self.stopping.set()
                shown = f"stopped: {detail}"
            else:
                trial.set_user_attr("error", detail)
                self.study.tell(trial, state=TrialState.FAIL)
                shown = f"failed: {detail}"
        print(f"trial {trial.number}: {' '.join(params)} -> {shown}", flush=True)

    def follow(self, trial, params: list[str], runs: dict[int, Path]) -> tuple[str, object]:
        """Run the trial's seeds at once, reporting their mean at every step all have
        reached; ('complete', per-seed values), ('pruned', step), ('stopped', why) or
        ('failed', why)."""
        maximize = self.settings.direction == "maximize"
        followers = {seed: Follower(run / "progress.jsonl", self.settings.progress,
                                    self.settings.progress_reduce, maximize)
                     for seed, run in runs.items()}
        children = {seed: start_run([*self.base, *params, f"seed={seed}", "threads=1",
                                     f"hydra.run.dir={run}"]) for seed, run in runs.items()}
        reported, pruned_at, running = set(), None, True
        while running:
            time.sleep(POLL_SECONDS)
            running = any(child.is_alive() for child in children.values())
            if self.settings.progress is None or pruned_at is not None:
                continue
            for follower in followers.values():
                follower.read()
            common = set.intersection(*(set(f.reduced) for f in followers.values())) - reported
            for step in sorted(common):
                trial.report(sum(f.reduced[step] for f in followers.values()) / len(followers),
                             step)
                reported.add(step)
                if running and trial.should_prune():  # a run that ended is not pruned
                    pruned_at = step
                    for child in children.values():
                        if child.is_alive():
                            child.terminate()  # SIGTERM: the run saves and stops
                    break
        stderr = {seed: stderr_of(child) for seed, child in children.items()}
        if pruned_at is not None and any(stopped(run) for run in runs.values()):
            return "pruned", pruned_at  # else every run had ended before the signal came
        per_seed = {}
        for seed, child in children.items():
            # a run that ended as the pruning signal came may die of it after it finished
            late = pruned_at is not None and not stopped(runs[seed])
            if child.exitcode != 0 and not late:
                return "failed", failure_cause(stderr[seed], child.exitcode)
            try:
                metrics = json.loads((runs[seed] / "metrics.json").read_text())
                if metrics.get("status") == "stopped":
                    return "stopped", f"{runs[seed].name} was stopped by a signal"
                per_seed[seed] = optimized_value(metrics, self.metric)
            except UnknownMetric as err:  # every further trial would fail alike
                self.stopping.set()
                return "failed", str(err)
            except (OSError, ValueError, UserError) as err:
                return "failed", str(err)
        return "complete", per_seed


def stopped(run: Path) -> bool:
    try:
        return json.loads((run / "metrics.json").read_text()).get("status") == "stopped"
    except (OSError, ValueError):
        return True  # stopped before it wrote anything


def work(search_dir: str, storage: str | None, study_name: str, index: int = 0) -> int:
    """A worker's entry point (a local process or a submitit task; `index` tells the
    workers' proposals apart): stops on the user's Ctrl-C or SIGTERM once its trials have
    saved."""
    worker = Worker(Path(search_dir), storage, study_name, index)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: worker.stopping.set())
    return worker.run()


def main() -> None:
    """`python -m nn.tools.search_worker SEARCH_DIR STUDY_NAME INDEX [STORAGE]`: join a
    search (its launcher created the study)."""
    args = sys.argv[1:]
    if len(args) not in (3, 4) or not args[2].isdigit():
        print("usage: python -m nn.tools.search_worker SEARCH_DIR STUDY_NAME INDEX [STORAGE]",
              file=sys.stderr)
        sys.exit(2)
    try:
        work(args[0], args[3] if len(args) == 4 else None, args[1], int(args[2]))
    except UserError as err:
        print(f"rlgen-search worker: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
