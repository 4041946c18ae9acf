"""Sweeps through hydra-submitit-launcher: the local executor really runs the jobs (the
same code path as Slurm, without a cluster), a preempted job is requeued and continues
its own run, and the Slurm preset composes."""

import json
import os
import signal
import time
from pathlib import Path

from conftest import TINY, TrainingProcess, run_cli

LONG = ["experiment=cartpole_reinforce", "algo.iterations=40", "algo.games_per_iteration=8",
        "env.max_steps_per_game=100", "device=cpu"]


def test_local_submitit_sweep_runs_every_job(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("rlgen-train", "-m", *TINY, "seed=0,1", "threads=1", "hydra/launcher=submitit_local",
            f"hydra.sweep.dir={sweep}")
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in runs] == ["0_cartpole_reinforce", "1_cartpole_reinforce"]
    seeds = [json.loads((p / "metrics.json").read_text())["seed"] for p in runs]
    assert seeds == [0, 1]
    assert all(json.loads((p / "metrics.json").read_text())["status"] == "finished"
               for p in runs)
    # each job ran in its own process, under submitit
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2
    table = json.loads(run_cli("rlgen-runs", str(sweep), "--json").stdout)
    assert sorted(r["seed"] for r in table) == [0, 1]


def job_pids(sweep: Path) -> list[int]:
    """The submitit task processes running jobs of this sweep."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in cmdline and any(str(sweep).encode() in a for a in cmdline):
            pids.append(int(proc.name))
    return pids


def test_preempted_job_is_requeued_and_continues_its_run(tmp_path):
    sweep = tmp_path / "sweep"
    master = TrainingProcess("-m", *LONG, "hydra/launcher=submitit_local",
                             f"hydra.sweep.dir={sweep}")
    run = sweep / "0_cartpole_reinforce"
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.pt").exists() or not job_pids(sweep):
        assert master.poll() is None and time.time() < deadline, master.communicate()
        time.sleep(0.02)
    for pid in job_pids(sweep):
        os.kill(pid, signal.SIGUSR2)  # what submitit has Slurm send before a time limit
    out, err = master.communicate(timeout=240)
    assert master.returncode == 0, err
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    assert "stopped by SIGUSR2" in logs and "continuing the run in" in logs
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    assert [h["iteration"] for h in metrics["history"]] == list(range(1, 41))
    # the same result as a run never interrupted
    whole = tmp_path / "whole"
    run_cli("rlgen-train", *LONG, f"hydra.run.dir={whole}")
    uninterrupted = json.loads((whole / "metrics.json").read_text())
    assert [h["mean_steps"] for h in metrics["history"]] == \
        [h["mean_steps"] for h in uninterrupted["history"]]


def test_slurm_preset_composes_with_documented_defaults():
    out = run_cli("rlgen-train", "experiment=snake_dqn_fast", "hydra/launcher=submitit_slurm",
                  "hydra.launcher.partition=gpu", "--cfg", "hydra", "-p", "hydra.launcher").stdout
    assert "SlurmLauncher" in out and "partition: gpu" in out
    assert "gpus_per_node: 1" in out and "timeout_min: 240" in out
    assert "max_num_timeout: 5" in out and "signal_delay_s: 120" in out
    job = run_cli("rlgen-train", "experiment=snake_dqn_fast", "hydra/launcher=submitit_slurm",
                  "--cfg", "job").stdout
    assert "name: snake_dqn_fast" in job


def test_the_same_command_continues_a_stopped_run_in_its_run_dir(tmp_path):
    """What a scheduler's plain requeue does: the same command into the same run dir."""
    run_cli("rlgen-train", *TINY, f"hydra.run.dir={tmp_path}")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    (tmp_path / "metrics.json").write_text(json.dumps({**metrics, "status": "stopped"}))
    again = run_cli("rlgen-train", *TINY, "algo.iterations=5", f"hydra.run.dir={tmp_path}")
    assert "continuing the run in" in again.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [h["iteration"] for h in metrics["history"]] == [1, 2, 3, 4, 5]
    assert metrics["status"] == "finished"
