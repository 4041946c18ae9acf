"""Signals sent to a real RL training process: it saves, exits cleanly, and a resumed
run ends exactly where an uninterrupted one does."""

import importlib
import json
import signal
import time

import pytest

from tests.conftest import TrainingProcess, compose

REINFORCE = ["experiment=cartpole_reinforce", "algo.iterations=60", "algo.games_per_iteration=8",
             "env.max_steps_per_game=100", "device=cpu"]
DQN = ["experiment=snake_dqn", "device=cpu", "model.channels=[8,8]", "model.hidden_sizes=[16]",
       "algo.replay_size=2000", "algo.replay_warmup=200", "algo.num_envs=8",
       "algo.train_every_frames=8", "algo.n_step=2", "algo.max_frames=4000",
       "algo.history_every_frames=500"]


def train_until_signalled(args, run_dir, sig):
    """Start training, send `sig` once it is under way, wait for a clean exit."""
    child = TrainingProcess(*args, f"hydra.run.dir={run_dir}")
    deadline = time.time() + 120
    log = run_dir / "train.log"
    while not (log.exists() and "training" in log.read_text()):
        assert child.poll() is None and time.time() < deadline, child.communicate()
        time.sleep(0.01)
    time.sleep(0.5)  # into the training loop
    sent = time.perf_counter()
    child.send_signal(sig)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert time.perf_counter() - sent < 10  # a stop takes seconds, not an epoch
    return out


# (the epoch-based trainers, SIGUSR1 among them: tests/test_stop.py)
@pytest.mark.parametrize("args,sig", [(REINFORCE, signal.SIGTERM), (DQN, signal.SIGINT)],
                         ids=["reinforce-SIGTERM", "dqn-SIGINT"])
def test_signal_saves_and_resume_matches_an_uninterrupted_run(tmp_path, args, sig):
    out = train_until_signalled(args, tmp_path / "cut", sig)
    assert f"stopped by {signal.Signals(sig).name}" in out and "resume=" in out
    stopped = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert stopped["status"] == "stopped"
    # the resume and the straight run in this process: the signal is the process's part
    trainer = importlib.import_module(compose(*args).trainer)
    trainer.train(compose(*args, f"resume={tmp_path / 'cut'}"), tmp_path / "cut")
    trainer.train(compose(*args), tmp_path / "whole")
    resumed = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert resumed["status"] == whole["status"] == "finished"
    # the signal cut the run short: fewer records (DQN: fewer frames) than at its end
    def progress(metrics):
        history = metrics["history"]
        return history[-1]["frame"] if history and "frame" in history[-1] else len(history)

    assert progress(stopped) < progress(resumed) and len(resumed["history"]) > 1
    drop = {"train_seconds", "steps_per_second", "images_per_second", "seconds"}
    assert [{k: v for k, v in h.items() if k not in drop} for h in resumed["history"]] == \
        [{k: v for k, v in h.items() if k not in drop} for h in whole["history"]]
