"""What the benchmarks share: composing a config, quiet in-process training, tables."""

import json
import os
import platform
import re
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

    log = logging.getLogger("rlgen")
    level = log.level
    log.setLevel(logging.WARNING)  # only this run: a later one in the process logs again
    cfg = compose(*overrides, f"device={device}")
    if cfg.threads is not None:  # rlgen-train sets them; the trainers leave them alone
        import torch

        torch.set_num_threads(cfg.threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            metrics = train(cfg, Path(tmp))
    finally:
        log.setLevel(level)
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
    """The checkout's commit, `-dirty` when tracked files differ from it (results files
    and pictures under bench/results/ aside: a bench writes those as it goes)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=RESULTS.parent.parent, capture_output=True,
                              text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                         ":(exclude)bench/results") else "")


def machine() -> str:
    """The CPU (model and cores), torch's threads and version: every results file says."""
    return (f"{cpu_model()} ({os.cpu_count()} cores, {platform.machine()}), "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")


def command() -> str:
    """This bench's command line as typed from the repository root."""
    import sys

    try:
        module = Path(sys.argv[0]).resolve().with_suffix("").relative_to(RESULTS.parent.parent)
    except ValueError:  # not run as a bench module (a test calling `write`, say)
        return " ".join(sys.argv)
    return " ".join(["python -m " + ".".join(module.parts), *sys.argv[1:]])


def stamp(seconds: float) -> dict:
    """What one row of a results file carries for itself, so that rows from runs of
    different days, machines or commits can sit in one file."""
    return {"commit": commit(), "command": command(), "machine": machine(),
            "date": date.today().isoformat(), "seconds": round(seconds, 1)}


def table(title: str, rows: list[dict]) -> None:
    print(f"\n## {title}")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")


# an absolute folder path (not one starting "../", which is relative to the repository)
ABSOLUTE_FOLDERS = re.compile(r"(?<![\w.])/(?:[^\s/,'\"]+/)+")


def portable(value):
    """A results value without this machine's folders: an absolute path keeps its last
    part (a temporary run folder's name), so no file names where the bench ran."""
    if isinstance(value, str):
        return ABSOLUTE_FOLDERS.sub("", value)
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    return value


def read(name: str) -> dict:
    """The last bench/results/<name>.json, or {} where there is none yet."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write(name: str, results: dict) -> None:
    """bench/results/<name>.json, stamped with this run's date, machine and commit (over
    any stamp a bench carried over from an earlier file: rows keep their own)."""
    results = {**portable(results), "date": date.today().isoformat(), "machine": machine(),
               "commit": commit(), "command": command()}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")
