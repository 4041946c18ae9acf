"""Where DQN's time goes, at a commit and another: `cartpole_v1_dqn` (RL Zoo's settings on
gymnasium's CartPole-v1) trained for 12,000 steps under cProfile, one thread, in a
scratch worktree of each commit. Per learning update: the optimizer step, the backward
pass, the online forward with its loss, the target's batched values and the sampling;
per acting step: choosing the action and stepping the env; target syncs; the whole run.
Writes bench/results/dqn_profile.json.

    python -m bench.dqn_profile --revs BEFORE HEAD [--frames 12000]
"""

import argparse
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import common
from bench.mutation import checkout_of

ROOT = Path(__file__).resolve().parent.parent
# function (file suffix, name) -> label; per call of the unit it belongs to
PARTS = {("", "torch._fused_adam_"): "optimizer step",
         ("", "run_backward"): "backward pass",
         ("dqn.py", "td_loss"): "online forward and loss",
         ("dqn.py", "training_batches"): "sampling and target values",
         ("dqn.py", "act"): "choosing the action",
         ("gymnasium_env.py", "step"): "env step (gymnasium's env through rlgen's adapter)",
         ("dqn.py", "train"): "whole run"}
PROFILE = ("import cProfile, os, sys; sys.argv = ['rlgen-train', *sys.argv[1:]]; "
           "from nn.tools.train import main; cProfile.run('main()', os.environ['PROFILE_OUT'])")


def profile(checkout: Path, frames: int, out: Path) -> dict:
    run_dir = out.parent / f"run-{checkout.name}"
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1",
           "PROFILE_OUT": str(out)}
    subprocess.run([sys.executable, "-c", PROFILE, "experiment=cartpole_v1_dqn",
                    f"algo.max_frames={frames}", "threads=1", "device=cpu",
                    f"hydra.run.dir={run_dir}"], cwd=checkout, env=env, check=True,
                   capture_output=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stats = pstats.Stats(str(out)).stats
    found = {}
    for (file, _, name), (_, calls, tottime, cumtime, _) in stats.items():
        for (suffix, wanted), label in PARTS.items():
            builtin = not suffix and file == "~" and wanted in name
            if builtin or (suffix and file.endswith(suffix) and name == wanted):
                # C functions: their own time; Python functions: all they call
                seconds = tottime if not suffix else cumtime
                calls_, total = found.get(label, (0, 0.0))
                found[label] = (calls_ + calls, total + seconds)
    updates = max(metrics["updates"], 1)
    per = {}
    for label, (calls, seconds) in found.items():
        unit = "run" if label == "whole run" else "update" if label in (
            "optimizer step", "backward pass", "online forward and loss",
            "sampling and target values") else "step" if label in (
            "choosing the action", "env step (gymnasium's env through rlgen's adapter)") else "call"
        count = {"run": 1, "update": updates, "step": frames, "call": calls}[unit]
        per[label] = {"calls": calls, "seconds": round(seconds, 3),
                      "per_unit_ms": round(1000 * seconds / count, 4), "unit": unit}
    return {"updates": metrics["updates"], "train_seconds": metrics["train_seconds"],
            "parts": per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revs", nargs="+", default=["HEAD"])
    parser.add_argument("--frames", type=int, default=12000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rlgen-dqn-profile-"))
    rows = []
    try:
        for rev in args.revs:
            checkout, commit = checkout_of(rev, folder)
            rows.append({"commit": commit, **profile(checkout, args.frames,
                                                     folder / f"{commit}.prof")})
            subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT,
                           check=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)
    labels = list(dict.fromkeys(label for r in rows for label in r["parts"]))
    common.table("cartpole_v1_dqn, ms per unit (update, env step, call or run)",
                 [{"part": label, **{r["commit"]: r["parts"].get(label, {}).get("per_unit_ms")
                                     for r in rows}} for label in labels])
    common.write("dqn_profile", {"command": "python -m bench.dqn_profile " + " ".join(sys.argv[1:]),
                                 "frames": args.frames, "rows": rows})


def markdown(results: dict) -> str:
    rows = results["rows"]
    labels = list(dict.fromkeys(label for r in rows for label in r["parts"]))
    lines = ["| part (per) | " + " | ".join(f"{r['commit']}" for r in rows) + " |",
             "| --- |" + " --- |" * len(rows)]
    for label in labels:
        cells = []
        for r in rows:
            part = r["parts"].get(label)
            cells.append("" if part is None else
                         f"{part['per_unit_ms']:.3f} ms ({part['calls']:,} calls)")
        unit = next(r["parts"][label]["unit"] for r in rows if label in r["parts"])
        lines.append(f"| {label} ({unit}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
