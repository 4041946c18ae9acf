"""One writer per run folder, and runs that survive being killed: two trainings started
into one folder, a resume of a run still training, a resume after its holder was killed
with SIGKILL, and a DQN run killed at random moments while it checkpoints."""

import json
import random
import re
import signal
import socket
import time

import pytest
from conftest import TINY, TrainingProcess, error_line, run_cli

from nn.checkpoint import load_checkpoint

LONG = ["experiment=cartpole_reinforce", "algo.iterations=100000", "algo.games_per_iteration=4",
        "env.max_steps_per_game=50", "device=cpu"]


def start(*args: str) -> TrainingProcess:
    return TrainingProcess(*args)


def wait_until_training(child: TrainingProcess, run_dir, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    log = run_dir / "train.log"
    while not (log.exists() and "training" in log.read_text()):
        assert child.poll() is None and time.time() < deadline, child.communicate()
        time.sleep(0.05)


def wait_for(child: TrainingProcess, path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert child.poll() is None and time.time() < deadline, child.communicate()
        time.sleep(0.02)


def test_two_trainings_started_at_once_into_one_folder_one_runs_the_other_writes_nothing(
        tmp_path):
    # one race (the start order is the OS's to pick); the loser's two errors are each
    # triggered for certain by the tests after it (a run still training, a finished run)
    for round_ in range(1):
        run_dir = tmp_path / f"r{round_}"
        children = [start(*TINY, f"seed={seed}", f"hydra.run.dir={run_dir}") for seed in (0, 1)]
        outputs = [child.communicate(timeout=120) for child in children]
        done = [(child.returncode, out, err)
                for child, (out, err) in zip(children, outputs, strict=True)]
        codes = sorted(code for code, _, _ in done)
        assert codes == [0, 2], done
        winner = next(i for i, (code, _, _) in enumerate(done) if code == 0)
        loser_err = [line for line in done[1 - winner][2].splitlines() if line.strip()]
        # either still running (the lock) or just finished (checked again under the lock)
        assert len(loser_err) == 1 and re.search("is being written by pid|holds a finished run",
                                                 loser_err[0]), loser_err
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["seed"] == winner and metrics["status"] == "finished"
        assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # one writer's log
        assert f"seed={winner}" in (run_dir / ".hydra" / "overrides.yaml").read_text()


def test_a_resume_of_a_running_run_is_refused_and_after_sigkill_it_takes_over(tmp_path):
    run_dir = tmp_path / "run"
    child = start(*LONG, f"hydra.run.dir={run_dir}")
    wait_until_training(child, run_dir)
    # the two refused commands in this process: the holder's process boundary is the one
    # this is about (the take-over below lets go at its process's end)
    refused = run_cli("rlgen-train", f"resume={run_dir}", check=False)
    line = error_line(refused)
    assert f"is being written by pid {child.pid} on {socket.gethostname()}" in line
    new_run = run_cli("rlgen-train", *LONG, f"hydra.run.dir={run_dir}", check=False)
    assert "is being written by" in error_line(new_run)
    time.sleep(1.0)  # a checkpoint or two
    child.send_signal(signal.SIGKILL)
    child.wait()
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")["meta"]["iteration"]
    resumed = start(f"resume={run_dir}", f"algo.iterations={saved + 3}")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"took over {run_dir} from pid {child.pid}" in out
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "finished"
    assert not (run_dir / ".rlgen.holder").exists()  # a run that ended lets go


DQN = ["experiment=snake_dqn", "device=cpu", "model.channels=[8,8]", "model.hidden_sizes=[16]",
       "algo.replay_size=3000", "algo.replay_warmup=200", "algo.num_envs=8",
       "algo.train_every_frames=8", "algo.max_frames=8000", "algo.checkpoint_every_seconds=0.3",
       "algo.history_every_frames=500"]


def test_sigkill_at_random_moments_while_checkpointing_then_resume_finishes(tmp_path):
    run_dir = tmp_path / "dqn"
    rng = random.Random(0)
    for round_ in range(2):
        args = [*DQN, f"hydra.run.dir={run_dir}"] if round_ == 0 else [f"resume={run_dir}"]
        child = start(*args)
        wait_until_training(child, run_dir)
        if round_ == 0:  # killed among checkpoints, after the first (a busy machine is slow)
            wait_for(child, run_dir / "checkpoints" / "last.pt")
        time.sleep(rng.uniform(0.5, 1.5))
        if child.poll() is not None:
            pytest.fail(f"the run ended before it was killed: {child.communicate()}")
        child.send_signal(signal.SIGKILL)
        child.wait()
        # a kill inside a write leaves only its hidden temporary (.NAME.tmp-PID), never a
        # half-written checkpoint under a checkpoint's name
        files = sorted((run_dir / "checkpoints").glob("*"))
        kept = [p for p in files if not p.name.startswith(".")]
        assert kept and all(p.suffix == ".pt" for p in kept), files
        assert all(".pt.tmp-" in p.name for p in files if p not in kept), files
        for path in kept:
            load_checkpoint(path)  # every kept checkpoint loads
    finished = run_cli("rlgen-train", f"resume={run_dir}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished", finished.stdout
    assert metrics["frames"] >= 8000
    # the dead writers' temporaries went with the run's next writes
    assert not list((run_dir / "checkpoints").glob(".*")), list((run_dir / "checkpoints").iterdir())
