"""Searches shared by worker processes through the default journal file: two workers on
one study within its budget, one of them killed with SIGKILL, its trial failed and retried
on resume; and the Slurm preset mapped to submitit's parameters. (Two submitit array tasks
sharing a study, with pruning: tests/test_search_postgres.py.)"""

import json
from pathlib import Path

from search_cases import TINY, kill_a_worker_mid_trial, start_search

from conf.compose import compose
from nn.tools.search import submitit_parameters
from tests.conftest import run_cli


def test_a_killed_worker_on_a_journal_is_failed_on_resume_and_the_budget_finished(tmp_path):
    where = tmp_path / "killed_journal"
    args = [*TINY, "search.trials=2", "algo.iterations=12", "search.pruner=none",
            f"search.dir={where}"]
    search = start_search(args)
    killed = kill_a_worker_mid_trial(None, where)
    search.communicate(timeout=300)  # the other worker spends what is left of the budget
    first = json.loads((where / "search.json").read_text())
    assert {t["number"]: t["state"] for t in first["trials"]}[killed] == "running"
    # the two workers shared the study: one trial each, the budget not overrun
    assert sorted(t["number"] for t in first["trials"]) == [0, 1]
    assert len({t["worker"]["pid"] for t in first["trials"]}) == 2
    resumed = run_cli("rlgen-search", *args)  # the same command: the budget finished
    assert f"trials [{killed}] of dead workers failed and queued again" in resumed.stdout
    summary = json.loads((where / "search.json").read_text())
    states = {t["number"]: t["state"] for t in summary["trials"]}
    assert states[killed] == "fail" and list(states.values()).count("complete") == 2
    retry = [t for t in summary["trials"] if t["retry_of"] == killed]
    assert len(retry) == 1 and retry[0]["state"] == "complete"
    again = run_cli("rlgen-search", *args)  # a finished search runs nothing more
    assert len(json.loads((where / "search.json").read_text())["trials"]) == 3, again.stdout


def test_the_slurm_preset_maps_to_submitit_and_needs_slurm(tmp_path):
    slurm = compose([*TINY, "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"],
                    return_hydra_config=True).hydra.launcher
    cluster, parameters = submitit_parameters(dict(slurm))
    assert cluster == "slurm" and parameters["slurm_partition"] == "gpu"
    assert parameters["timeout_min"] == 240 and parameters["slurm_array_parallelism"] == 64
    no_slurm = run_cli("rlgen-search", *TINY, "search.trials=1", "hydra/launcher=submitit_slurm",
                       f"search.dir={tmp_path / 'nowhere'}", check=False)
    lines = [line for line in no_slurm.stderr.splitlines() if line.strip()]
    assert no_slurm.returncode == 2 and len(lines) == 1 and "submitit_local" in lines[0]


def test_a_run_forked_from_the_warm_process_trains_as_rlgen_train_does(tmp_path):
    """The search's runs come from a fork server (nn/tools/warm_runs.py): the same
    command line gives the same run as `rlgen-train` itself, a bad one its one-line error
    in the run's stderr and exit status 2."""
    from nn.tools.search_space import failure_cause
    from nn.tools.warm_runs import start_run

    args = ["experiment=cartpole_reinforce", "algo.iterations=3", "algo.games_per_iteration=4",
            "env.max_steps_per_game=60", "threads=1"]
    forked = start_run([*args, f"hydra.run.dir={tmp_path / 'forked'}"], tmp_path / "forked.err")
    run_cli("rlgen-train", *args, f"hydra.run.dir={tmp_path / 'direct'}")
    forked.join()
    assert forked.exitcode == 0, (tmp_path / "forked.err").read_text()
    timing = {"train_seconds", "steps_per_second", "solved_train_seconds"}
    histories = [[{k: v for k, v in record.items() if k not in timing} for record in
                  json.loads((tmp_path / name / "metrics.json").read_text())["history"]]
                 for name in ("forked", "direct")]
    assert len(histories[0]) == 3 and histories[0] == histories[1]
    bad = start_run([*args, "algo.iterations=-1", f"hydra.run.dir={tmp_path / 'bad'}"],
                    tmp_path / "bad.err")
    bad.join()
    assert bad.exitcode == 2
    assert "algo.iterations" in failure_cause((tmp_path / "bad.err").read_text(), bad.exitcode)
    assert not (tmp_path / "bad").exists()


def test_a_forked_run_stops_when_the_process_that_started_it_is_killed(tmp_path):
    """A run forked from the warm process is the fork server's child, not its worker's:
    still, a worker killed with SIGKILL leaves no run training on (it gets SIGTERM, saves
    and stops), as a run that was the worker's own child did."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    worker = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from nn.tools.warm_runs import start_run; "
         "run = start_run(sys.argv[2:], Path(sys.argv[1])); print(run.pid, flush=True); "
         "time.sleep(600)", str(tmp_path / "run.err"), "experiment=cartpole_reinforce",
         "algo.iterations=100000", "algo.games_per_iteration=4", "env.max_steps_per_game=50",
         f"hydra.run.dir={run_dir}"], stdout=subprocess.PIPE, text=True)
    run_pid = int(worker.stdout.readline())
    deadline = time.time() + 120
    while not ((run_dir / "train.log").exists() and "iteration 2:" in
               (run_dir / "train.log").read_text()):
        assert time.time() < deadline, (tmp_path / "run.err").read_text()
        time.sleep(0.05)
    worker.kill()
    worker.wait()
    deadline = time.time() + 30
    try:
        while Path(f"/proc/{run_pid}").exists() and "Z" not in \
                Path(f"/proc/{run_pid}/stat").read_text().split(")")[-1].split()[:1]:
            assert time.time() < deadline, "the run went on after its worker was killed"
            time.sleep(0.05)
    finally:  # a run that went on is not left training after the test
        with contextlib.suppress(ProcessLookupError):
            os.kill(run_pid, signal.SIGKILL)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "stopped"  # rlgen's own stop: saved where it stood
