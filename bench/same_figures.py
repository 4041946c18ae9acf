"""Figures unchanged by a code change: this checkout against another one (e.g. the commit
before a refactor), both run through `rlgen-train` on this machine in one command.

- `cartpole_reinforce` (the book's recipe), seeds 0-4, 25 iterations: the first
  iteration whose mean steps reach 475 must be identical.
- `snake_dqn_fast` frames/s over its first 60 s, the two checkouts timed in alternating
  rounds (old, new, old, new, ...), so a machine that slows down mid-bench hits both.

    git worktree add ../before HEAD~5        # or any clone at the older commit
    python -m bench.same_figures --before ../before [--rounds 2] [--seconds 60]

Writes bench/results/same_figures.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common

HERE = Path(__file__).resolve().parent.parent
# rlgen-train's entry point; checkouts from before the tools moved to nn/tools/ had it in nn/cli
TRAIN = ("import sys\nsys.argv[0] = 'rlgen-train'\ntry:\n    from nn.tools.train import main\n"
         "except ImportError:\n    from nn.cli import train_main as main\nmain()")


def train(checkout: Path, *overrides: str) -> dict:
    """One `rlgen-train` run with `checkout`'s code (this venv's packages); its metrics."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=str(checkout), SDL_VIDEODRIVER="dummy")
        done = subprocess.run([sys.executable, "-c", TRAIN, *overrides, "device=cpu",
                               f"hydra.run.dir={tmp}/run"], cwd=checkout, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{checkout}: rlgen-train {' '.join(overrides)} failed:\n"
                             f"{done.stderr[-2000:]}")
        return json.loads((Path(tmp) / "run" / "metrics.json").read_text())


def first_475(checkout: Path, seed: int) -> int | None:
    metrics = train(checkout, "experiment=cartpole_reinforce", "algo.iterations=25",
                    f"seed={seed}")
    return next((h["iteration"] for h in metrics["history"] if h["mean_steps"] >= 475), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    checkouts = {"before": args.before.resolve(), "after": HERE}
    commits = {name: subprocess.run(["git", "describe", "--always", "--dirty"], cwd=path,
                                    capture_output=True, text=True).stdout.strip()
               for name, path in checkouts.items()}
    for name, path in checkouts.items():
        print(f"{name}: {path} at {commits[name]}", flush=True)

    solved = {name: [first_475(path, seed) for seed in range(5)]
              for name, path in checkouts.items()}
    print(f"cartpole_reinforce first iteration >= 475, seeds 0-4: {solved}", flush=True)

    speed: dict[str, list[float]] = {name: [] for name in checkouts}
    for _ in range(args.rounds):
        for name, path in checkouts.items():
            # a fixed frame cap (the recipe's old one), so that neither checkout plans a
            # schedule from the short budget that ends inside the timed window
            m = train(path, "experiment=snake_dqn_fast", f"algo.max_seconds={args.seconds}",
                      "algo.max_frames=20000000", f"threads={args.threads}", "seed=0")
            speed[name].append(m["frames_per_second"])
            print(f"snake_dqn_fast {name}: {m['frames']} frames in {m['train_seconds']} s, "
                  f"{m['frames_per_second']} frames/s", flush=True)
    mean = {name: sum(v) / len(v) for name, v in speed.items()}
    ratio = mean["after"] / mean["before"]
    results = {
        "command": " ".join(["python -m bench.same_figures", *sys.argv[1:]]),
        "machine": common.machine(), "threads": args.threads,
        "date": time.strftime("%Y-%m-%d"), "commits": commits,
        "cartpole_reinforce_first_475_seeds_0_4": solved,
        "cartpole_identical": solved["before"] == solved["after"],
        "snake_dqn_fast_frames_per_second": speed,
        "snake_dqn_fast_ratio_after_before": round(ratio, 4),
    }
    common.table("same figures", [
        {"figure": "cartpole_reinforce first 475, seeds 0-4",
         "before": solved["before"], "after": solved["after"]},
        {"figure": f"snake_dqn_fast frames/s, first {args.seconds:g} s (mean of "
                   f"{args.rounds} rounds)", "before": round(mean["before"], 1),
         "after": f"{mean['after']:.1f} ({ratio:.3f}x)"}])
    common.write("same_figures", results)


if __name__ == "__main__":
    main()
