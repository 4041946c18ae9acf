"""Searches shared by several worker processes: one Optuna study in a journal file or a
real PostgreSQL server, a trial budget over all workers, pruning, dead workers' trials
retried, and the resume of a search that lost a worker."""

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

from conf.compose import compose
from nn.tools.search import submitit_parameters
from tests.conftest import BIN, run_cli

TINY = ["hparams_search=cartpole_reinforce_fast", "algo.games_per_iteration=4",
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
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
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


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_two_workers_share_one_study_within_its_budget_and_prune(kind, request, tmp_path):
    url = request.getfixturevalue("postgres") if kind == "postgresql" else None
    where = tmp_path / f"shared_{kind}"
    done = run_cli("rlgen-search", *TINY, *storage_of(kind, url), "search.trials=6",
                   "algo.iterations=12", f"search.dir={where}")
    summary = json.loads((where / "search.json").read_text())
    trials = summary["trials"]
    numbers = [t["number"] for t in trials]
    assert sorted(numbers) == list(range(6)) and len(trials) == summary["budget"] == 6
    assert all(t["state"] in ("complete", "pruned") for t in trials), done.stdout
    assert len({t["worker"]["pid"] for t in trials}) == 2  # both workers took trials
    assert overlapped(trials)
    assert summary["pruned"] >= 1, done.stdout  # hopeless trials stopped early ...
    pruned = [t for t in trials if t["state"] == "pruned"]
    for trial in pruned:  # ... through rlgen's own stop: the run saved and said so
        run = json.loads((Path(trial["runs"][0]) / "metrics.json").read_text())
        assert run["status"] == "stopped" and len(run["history"]) < 12
        assert str(trial["pruned_at"]) in trial["intermediate"]
    assert len({r for t in trials for r in t["runs"]}) == 6  # no trial folder shared


def start_search(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "rlgen-search"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, SDL_VIDEODRIVER="dummy"))


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


def test_a_killed_workers_trial_is_retried_on_postgresql(postgres, tmp_path):
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

    where = tmp_path / "killed_pg"
    search = start_search([*TINY, *storage_of("postgresql", postgres), "search.trials=5",
                           "algo.iterations=40", "search.pruner=none", f"search.dir={where}"])
    killed = kill_a_worker_mid_trial(postgres, where)
    out, err = search.communicate(timeout=300)
    assert search.returncode == 0, err
    study = optuna.load_study(study_name="killed_pg", storage=postgres)
    trials = study.get_trials()
    by_number = {t.number: t for t in trials}
    assert by_number[killed].state.name == "FAIL"
    retried = [t for t in trials if Retry.retried_trial_number(t) == killed]
    assert len(retried) == 1 and retried[0].params == by_number[killed].params
    assert retried[0].state.name == "COMPLETE"
    # the budget: five trials that count, the failed one beside them
    assert sum(t.state.name == "COMPLETE" for t in trials) == 5 and len(trials) == 6


def test_a_killed_worker_on_a_journal_is_failed_on_resume_and_the_budget_finished(tmp_path):
    where = tmp_path / "killed_journal"
    args = [*TINY, "search.trials=4", "algo.iterations=40", "search.pruner=none",
            f"search.dir={where}"]
    search = start_search(args)
    killed = kill_a_worker_mid_trial(None, where)
    search.communicate(timeout=300)  # the other worker spends what is left of the budget
    first = json.loads((where / "search.json").read_text())
    assert {t["number"]: t["state"] for t in first["trials"]}[killed] == "running"
    resumed = run_cli("rlgen-search", *args)  # the same command: the budget finished
    assert f"trials [{killed}] of dead workers failed and queued again" in resumed.stdout
    summary = json.loads((where / "search.json").read_text())
    states = {t["number"]: t["state"] for t in summary["trials"]}
    assert states[killed] == "fail" and list(states.values()).count("complete") == 4
    retry = [t for t in summary["trials"] if t["retry_of"] == killed]
    assert len(retry) == 1 and retry[0]["state"] == "complete"
    again = run_cli("rlgen-search", *args)  # a finished search runs nothing more
    assert len(json.loads((where / "search.json").read_text())["trials"]) == 5, again.stdout


def test_workers_run_as_a_submitit_array_and_the_slurm_preset_maps_to_submitit(tmp_path):
    where = tmp_path / "array"
    run_cli("rlgen-search", *TINY, "search.trials=2", "algo.iterations=5",
            "hydra/launcher=submitit_local", f"search.dir={where}")
    trials = json.loads((where / "search.json").read_text())["trials"]
    jobs = {t["worker"]["job"] for t in trials}
    assert None not in jobs and len(jobs) == 2  # two array tasks, each a submitit job
    slurm = compose([*TINY, "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"],
                    return_hydra_config=True).hydra.launcher
    cluster, parameters = submitit_parameters(dict(slurm))
    assert cluster == "slurm" and parameters["slurm_partition"] == "gpu"
    assert parameters["timeout_min"] == 240 and parameters["slurm_array_parallelism"] == 64
    no_slurm = run_cli("rlgen-search", *TINY, "search.trials=1", "hydra/launcher=submitit_slurm",
                       f"search.dir={tmp_path / 'nowhere'}", check=False)
    lines = [line for line in no_slurm.stderr.splitlines() if line.strip()]
    assert no_slurm.returncode == 2 and len(lines) == 1 and "submitit_local" in lines[0]
