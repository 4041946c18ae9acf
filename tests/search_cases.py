"""What the search tests share: a tiny search, a PostgreSQL server of its own, a search
started in the background and a worker killed in the middle of a trial."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import TrainingProcess, missing_tool, run_cli

# games capped at 100 steps: a trial that learns does not play 500-step games
TINY = ["hparams_search=cartpole_reinforce_fast", "algo.games_per_iteration=4",
        "env.max_steps_per_game=100",
        "search.rerun_seeds=[]", "search.jobs=1", "search.prune_startup_trials=2",
        "search.prune_warmup_steps=2", "search.workers=2"]


def find_postgres() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of its own on 127.0.0.1 (as the postgres user when the tests
    run as root: the server refuses root), stopped after the module."""
    bin_dir = find_postgres()
    if bin_dir is None:
        missing_tool("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="rlgen-pg-"))
    root.chmod(0o755)
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(root / "data"), "-A", "trust",
                    "-U", "postgres", "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-l",
                    str(root / "log"), "-w", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off", "start"],
                   check=True, capture_output=True)
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m",
                    "immediate", "stop"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def storage_of(kind: str, postgres_url) -> list[str]:
    return [f"search.storage={postgres_url}", "search.heartbeat_seconds=1",
            "search.grace_seconds=3"] if kind == "postgresql" else []


def overlapped(trials: list[dict]) -> bool:
    """Some trial of one worker ran while a trial of another did."""
    spans = [(t["worker"]["pid"], datetime.fromisoformat(t["started"]),
              datetime.fromisoformat(t["ended"])) for t in trials if t["ended"]]
    return any(a[0] != b[0] and a[1] < b[2] and b[1] < a[2] for a in spans for b in spans)


def start_search(args: list[str]) -> TrainingProcess:
    """rlgen-search in a process of its own (its workers are processes of their own too)."""
    return TrainingProcess(*args, command="rlgen-search")


def kill_a_worker_mid_trial(storage: str | None, where: Path) -> int:
    """SIGKILL the worker of the first trial seen running; its trial's number."""
    import optuna
    from optuna.trial import TrialState

    from nn.tools.search_worker import open_storage

    deadline = time.time() + 120
    while time.time() < deadline:
        if not (where / "study.json").exists():  # the launcher has not made the study yet
            time.sleep(0.2)
            continue
        try:
            study = optuna.load_study(study_name=where.name,
                                      storage=open_storage(storage, where, 1, 3))
        except KeyError:  # not yet in the storage
            time.sleep(0.2)
            continue
        for trial in study.get_trials(states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get("worker")
            if worker and trial.user_attrs.get("runs"):
                time.sleep(1.0)  # well inside the trial's training
                os.kill(worker["pid"], signal.SIGKILL)
                return trial.number
        time.sleep(0.2)
    raise AssertionError("no trial started")


def shared_search(where: Path, *args: str) -> list[dict]:
    """Two workers on one study: unique numbers, the budget exactly, both workers took
    trials and at the same time, some pruned through rlgen's own stop; the trials."""
    # a step size that cannot learn in 12 iterations beside one that does: the first
    # falls behind the median early, while it still runs (each worker's sampler is seeded
    # by its index: the second trial either worker draws is the hopeless one)
    done = run_cli("rlgen-search", *TINY, *args, "search.trials=4",
                   "algo.iterations=12", "algo.lr=choice(0.00001,0.05)", f"search.dir={where}")
    summary = json.loads((where / "search.json").read_text())
    trials = summary["trials"]
    numbers = [t["number"] for t in trials]
    assert sorted(numbers) == list(range(4)) and len(trials) == summary["budget"] == 4
    assert all(t["state"] in ("complete", "pruned") for t in trials), done.stdout
    assert len({t["worker"]["pid"] for t in trials}) == 2  # both workers took trials
    assert overlapped(trials)
    assert summary["pruned"] >= 1, done.stdout  # hopeless trials stopped early ...
    pruned = [t for t in trials if t["state"] == "pruned"]
    for trial in pruned:  # ... through rlgen's own stop: a run that saved says "stopped"
        metrics = Path(trial["runs"][0]) / "metrics.json"  # (one stopped as it began has none)
        assert not metrics.exists() or json.loads(metrics.read_text())["status"] == "stopped"
        assert str(trial["pruned_at"]) in trial["intermediate"]
    assert len({r for t in trials for r in t["runs"]}) == 4  # no trial folder shared
    return trials
