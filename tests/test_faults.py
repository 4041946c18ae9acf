"""Faults triggered for real: a loss that blows up, a process killed while it writes a
checkpoint, a read-only disk, a full disk, a checkpoint from a newer rlgen or another
experiment. Each ends in one clear line, and no good checkpoint is lost."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import BIN, TINY, call_tool, error_line, run_cli

from nn.checkpoint import load_checkpoint


def last_line(stderr: str) -> str:
    """The last thing on the terminal (progress bars redraw with carriage returns)."""
    assert "Traceback" not in stderr, stderr
    return [line for line in re.split(r"[\r\n]", stderr) if line.strip()][-1]


def train_in_private_mount(mount_options: str, mount_dir, *args, then: str = "true"):
    """rlgen-train with `mount_dir` a fresh tmpfs mounted with `mount_options`, in a mount
    namespace of its own (a real read-only or size-limited disk, without touching ours);
    `then` runs after it in the same namespace. The exit status is rlgen-train's."""
    mount_dir.mkdir(exist_ok=True)
    command = " ".join([f"mount -t tmpfs -o {mount_options} rlgen-test {mount_dir} &&",
                        f"{{ {BIN / 'rlgen-train'}", *args, f"; status=$?; {then}; exit $status; }}"])
    return subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", command],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, SDL_VIDEODRIVER="dummy"), cwd=BIN.parent.parent)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    result = run_cli("rlgen-train", *TINY, "algo.iterations=10", "algo.lr=1e30",
                     f"hydra.run.dir={tmp_path}", check=False)
    assert result.returncode == 2
    message = last_line(result.stderr)
    assert re.match(r"rlgen-train: error: loss became (nan|inf) at iteration (\d+); the last "
                    r"good checkpoint is .*last\.pt", message), message
    failed_at = int(re.search(r"iteration (\d+)", message).group(1))
    payload = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert payload["meta"]["iteration"] == failed_at - 1
    assert all(torch.isfinite(t).all() for t in payload["state"]["policy"].values())


WRITER = """
import sys, torch
from nn.checkpoint import save_checkpoint
path = sys.argv[1]
save_checkpoint(path, experiment="good", trainer="t", config={}, state={"w": torch.ones(3)})
print("saved", flush=True)
big = {"w": torch.randn(64, 1024, 1024)}  # 256 MB: each write takes a while
while True:
    save_checkpoint(path, experiment="big", trainer="t", config={}, state=big)
"""


def test_a_kill_during_a_checkpoint_write_never_replaces_the_good_one(tmp_path):
    path = tmp_path / "last.pt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                              text=True, cwd=BIN.parent.parent)
    assert writer.stdout.readline().strip() == "saved"
    partial = tmp_path / f".last.pt.tmp-{writer.pid}"
    deadline = time.time() + 60
    while not (partial.exists() and partial.stat().st_size > 0):
        assert time.time() < deadline and writer.poll() is None
        time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    payload = load_checkpoint(path)  # a whole checkpoint: the good one (or a whole big one)
    assert payload["experiment"] in ("good", "big")
    assert partial.exists()  # the killed write's remains, never renamed over the good file
    # the next write in the folder clears what killed processes left behind, whatever
    # file they were writing (a live writer's temporary stays)
    from nn.checkpoint import save_checkpoint

    other = tmp_path / f".best.pt.tmp-{writer.pid}"
    other.write_bytes(b"half")
    live = tmp_path / f".best.pt.tmp-{os.getpid()}"
    live.write_bytes(b"being written")
    save_checkpoint(path, experiment="next", trainer="t", config={}, state={})
    assert not partial.exists() and not other.exists() and live.exists()
    assert load_checkpoint(path)["experiment"] == "next"


def test_a_read_only_run_dir_fails_in_one_line_before_any_work(tmp_path):
    result = train_in_private_mount("ro,size=1m", tmp_path / "ro", *TINY,
                                    f"hydra.run.dir={tmp_path / 'ro' / 'run'}")
    assert result.returncode == 2, result.stderr
    assert "is read-only; write runs elsewhere" in error_line(result)


@pytest.mark.slow
def test_a_full_disk_fails_in_one_line_and_keeps_the_previous_checkpoints(tmp_path):
    big = [*TINY, "algo.iterations=6", "model.hidden_sizes=[4096]"]
    free = tmp_path / "free"
    run_cli("rlgen-train", *big, f"hydra.run.dir={free}")
    size = (free / "checkpoints" / "last.pt").stat().st_size
    # room for the first iteration's two checkpoints, not for a third file beside them
    disk = tmp_path / "disk"
    checkpoints = disk / "run" / "checkpoints"
    read_back = (f"{sys.executable} -c 'from nn.checkpoint import load_checkpoint as l; "
                 f"print(\"kept\", l(\"{checkpoints}/last.pt\")[\"meta\"][\"iteration\"], "
                 f"l(\"{checkpoints}/best.pt\")[\"meta\"][\"iteration\"])'")
    result = train_in_private_mount(f"size={int(2.6 * size) // 1024}k", disk, *big,
                                    f"hydra.run.dir={disk / 'run'}", then=read_back)
    assert result.returncode == 2
    message = last_line(result.stderr)
    assert "No space left on device; free some space" in message, message
    assert "(the previous one is kept)" in message
    # inside that disk, the first iteration's checkpoints are whole and readable
    assert "kept 1 1" in result.stdout, result.stdout


def test_a_newer_format_or_another_experiments_checkpoint_is_refused(trained_run, tmp_path):
    newer = tmp_path / "newer"
    shutil.copytree(trained_run, newer)
    best = newer / "checkpoints" / "best.pt"
    payload = torch.load(best, weights_only=True)
    payload["format_version"] = 2
    torch.save(payload, best)
    assert "newer than this rlgen reads (1); upgrade rlgen" in error_line(
        call_tool("rlgen-eval", f"run={newer}", check=False))
    other = run_cli("rlgen-train", "experiment=cartpole_reinforce_fast", f"resume={trained_run}",
                    check=False)
    assert "belongs to experiment 'cartpole_reinforce'" in error_line(other)
    assert json.loads((trained_run / "metrics.json").read_text())["status"] == "finished"
    assert math.isfinite(load_checkpoint(trained_run / "checkpoints" / "last.pt")["meta"]
                         ["best_mean_return"])


def test_a_missing_tool_skips_with_its_reason_and_fails_where_ci_promises_it(monkeypatch):
    from conftest import missing_tool

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed"):
        missing_tool("chromium is not installed")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true, yet chromium is not installed"):
        missing_tool("chromium is not installed")


@pytest.mark.slow  # a pytest process
def test_without_chromium_on_path_the_browser_tests_fail_under_ci(tmp_path):
    """chromium and its driver hidden from PATH (the interpreter is named by its path)."""
    env = {**os.environ, "PATH": str(tmp_path), "CI": "true"}
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/test_browser.py",
                           "-p", "no:cacheprovider"], capture_output=True, text=True, env=env,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    summary = done.stdout.strip().splitlines()[-1]
    assert "error" in summary and "passed" not in summary and "skipped" not in summary, \
        done.stdout[-2000:]
    assert done.returncode != 0 and "CI=true, yet the browser tests need" in done.stdout
