"""Stopping within seconds: every epoch-based trainer checks for a stop request after each
batch, saves where it stands inside the epoch, and a resumed run ends exactly where an
uninterrupted one does (on the CPU). A second Ctrl-C ends the process at once."""

import importlib
import json
import os
import signal
import subprocess
import time

import pytest
import torch
from conftest import BIN, TrainingProcess, compose

from nn.checkpoint import load_checkpoint

# each epoch lasts a second or two on a 2-core machine, so a stop lands inside one
TEXT = ["experiment=lstm_text_fast", "model.embedding_dim=8", "model.hidden_sizes=[24]",
        "algo.sample_len=32", "algo.batch_size=8", "algo.examples_per_epoch=1600",
        "algo.epochs=2", "algo.display_length=20", "algo.warmup_steps=2",
        "data.val_fraction=0.01", "device=cpu"]
VAE = ["experiment=vae_mnist5k", "algo.epochs=2", "algo.batch_size=32", "device=cpu"]
# one epoch of several seconds: the stop must come before its end (see the test)
CLASSIFIER = ["experiment=mnist_cnn", "algo.epochs=1", "algo.batch_size=32", "device=cpu"]
ACGAN = ["experiment=acgan_mnist5k", "model=acgan_light", "algo.epochs=2",
         "algo.epoch_images=160", "algo.batch_size=16", "device=cpu"]
WEIGHTS = {"generative.lstm_text": ["model"], "generative.vae": ["model"],
           "generative.classifier": ["model"],
           "generative.acgan": ["generator", "discriminator", "opt_g", "opt_d"]}
TIMING = {"train_seconds", "step_seconds", "chars_per_second", "examples_per_second",
          "images_per_second", "steps_per_second", "seconds", "wall_seconds"}


def start_training(args, run_dir, console_script: bool = False):
    """rlgen-train in a process of its own (forked from the warm process, or the installed
    console script started afresh), once it is inside its first epoch."""
    if console_script:
        env = dict(os.environ, SDL_VIDEODRIVER="dummy", OMP_NUM_THREADS="1")
        child = subprocess.Popen([str(BIN / "rlgen-train"), *args, f"hydra.run.dir={run_dir}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env)
    else:
        child = TrainingProcess(*args, f"hydra.run.dir={run_dir}")
    deadline, log = time.time() + 120, run_dir / "train.log"
    while not (log.exists() and "training" in log.read_text()):
        assert child.poll() is None and time.time() < deadline, child.communicate()
        time.sleep(0.02)
    time.sleep(0.5)  # into the first epoch
    return child


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


# the book's text windows are drawn as the image trainers' orders are (EpochPosition.draw_order)
# (SIGUSR1, what a scheduler sends before a time limit, on the VAE; SIGINT and SIGTERM on
# the RL trainers: tests/test_preemption.py)
@pytest.mark.parametrize("args,sig", [(TEXT, signal.SIGTERM), (VAE, signal.SIGUSR1),
                                      (CLASSIFIER, signal.SIGTERM), (ACGAN, signal.SIGTERM)],
                         ids=["text-streams", "vae-SIGUSR1", "classifier", "acgan"])
def test_a_signal_inside_an_epoch_stops_in_seconds_and_resumes_exactly(tmp_path, args, sig):
    cut = tmp_path / "cut"
    child = start_training(args, cut)
    sent = time.perf_counter()
    child.send_signal(sig)
    out, err = child.communicate(timeout=60)
    took = time.perf_counter() - sent
    assert child.returncode == 0, err
    assert took < 10, f"took {took:.1f}s to stop"
    assert f"stopped by {signal.Signals(sig).name} after batch" in out and "resume=" in out
    stopped = load_checkpoint(cut / "checkpoints" / "last.pt")
    epoch = int(out.split(" of epoch ")[1].split(";")[0])
    assert stopped["meta"]["epoch"] == epoch - 1 and int(stopped["state"]["position"]["done"]) > 0
    cut_short = json.loads((cut / "metrics.json").read_text())
    assert cut_short["status"] == "stopped"
    if args is CLASSIFIER:  # one epoch in all: stopped inside it, before its end
        assert epoch == 1 and cut_short["history"] == []

    # resumed in this process (the command's resume=RUN_DIR path: tests/test_preemption.py)
    cfg = compose(*args)
    trainer = importlib.import_module(cfg.trainer)
    trainer.train(compose(*args, f"resume={cut}"), cut)
    whole = trainer.train(cfg, tmp_path / "whole")
    resumed = json.loads((cut / "metrics.json").read_text())
    assert resumed["status"] == whole["status"] == "finished"
    assert without_timing(resumed["history"]) == without_timing(whole["history"])
    # inside the epoch: fewer batches done than an epoch has (every epoch has as many)
    whole_meta = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["meta"]
    assert int(stopped["state"]["position"]["done"]) < whole_meta["step"] / whole_meta["epoch"]
    ends = [load_checkpoint(d / "checkpoints" / "last.pt")["state"] for d in (cut, tmp_path / "whole")]
    for key in WEIGHTS[cfg.trainer]:
        assert_same(ends[0][key], ends[1][key], key)


def assert_same(a, b, where: str) -> None:
    """Bit-identical nested state (tensors compared exactly)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def test_a_second_ctrl_c_ends_at_once_in_one_line(tmp_path):
    child = start_training(VAE, tmp_path / "run", console_script=True)
    # Ctrl-C again and again until the process ends: two presses that land before Python
    # runs its handler count as one, so one fixed second press can be swallowed
    deadline = time.time() + 30
    while child.poll() is None and time.time() < deadline:
        child.send_signal(signal.SIGINT)
        time.sleep(0.01)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    lines = [line for line in err.splitlines() if "rlgen-train" in line]
    assert len(lines) == 1 and "interrupted twice, stopped at once" in lines[0], err
