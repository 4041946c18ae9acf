"""What the benchmarks share: composing a config, quiet in-process training, tables."""

import json
import os
import platform
import tempfile
from datetime import date
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def compose(*overrides):
    from conf.compose import compose as compose_config

    return compose_config(list(overrides), job_name="bench")


def train_quiet(train, *overrides, device: str = "cpu") -> dict:
    """Run `train` (an algorithm module's) on a composed config in a temporary run dir."""
    import logging

    logging.getLogger("rlgen").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train(compose(*overrides, f"device={device}"), Path(tmp))
    if metrics["status"] == "stopped":  # a stop signal ends the bench, not just this run
        raise SystemExit(f"bench stopped by a signal during {' '.join(overrides)}")
    return metrics


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit() -> str:
    """The checkout's commit, `-dirty` when tracked files differ from it."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=RESULTS.parent.parent, capture_output=True,
                              text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> str:
    """The CPU (model and cores), torch's threads and version: every results file says."""
    return (f"{cpu_model()} ({os.cpu_count()} cores, {platform.machine()}), "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")


def table(title: str, rows: list[dict]) -> None:
    print(f"\n## {title}")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")


def write(name: str, results: dict) -> None:
    """bench/results/<name>.json, stamped with the date and machine if not already."""
    results = {"date": date.today().isoformat(), "machine": machine(), "commit": commit(),
               **results}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")
