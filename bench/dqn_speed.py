"""rlgen's DQN against Stable-Baselines3's on RL Zoo's three envs, for speed: the same
env, RL Zoo's hyperparameters on both sides (bench.zoo reads them from rlgen's config),
each seed's two runs side by side in processes of their own, one torch thread each, for
the first `--steps` env steps of RL Zoo's schedule. The wall time of training (learning
included: CartPole-v1 learns from step 1,000, Acrobot-v1 and LunarLander-v3 from the
first step) over those steps, rlgen's over SB3's per seed. bench.zoo runs the full
budgets and scores them; this bench measures the cost of a step where full runs do not
fit (Acrobot-v1 and LunarLander-v3 take SB3 8-14 minutes a seed on a 2-core CPU).
Writes bench/results/dqn_speed.json.

    python -m bench.dqn_speed [--steps 10000] [--envs cartpole,acrobot,lunarlander] [--seeds 0,1,2]
"""

import argparse
import tempfile
import time
from pathlib import Path

from bench import common, zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--envs", default=",".join(zoo.ZOO))
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.envs.split(","):
            if name not in zoo.ZOO:
                raise SystemExit(f"unknown env {name!r}: choose from {', '.join(zoo.ZOO)}")
            for seed in (int(s) for s in args.seeds.split(",")):
                began = time.perf_counter()
                ours, theirs = zoo.run_pair(name, seed, Path(tmp), args.steps)
                rows.append({"env": ours["env"], "seed": seed, "steps": args.steps,
                             "rlgen_seconds": ours["train_seconds"],
                             "sb3_seconds": theirs["train_seconds"],
                             "ratio": round(ours["train_seconds"] / theirs["train_seconds"], 3),
                             **common.stamp(time.perf_counter() - began)})
                print(rows[-1], flush=True)
    common.table(f"DQN, first {args.steps} steps of RL Zoo's settings: training seconds", rows)
    common.write("dqn_speed", {"command": common.command(), "threads": 1,
                               "side_by_side": True, "rows": rows})


def markdown(results: dict) -> str:
    """docs/results.md's table, from a results file this bench wrote."""
    lines = ["| env | seed | steps | rlgen seconds | SB3 seconds | rlgen / SB3 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        lines.append(f"| {r['env']} | {r['seed']} | {r['steps']:,} | {r['rlgen_seconds']} | "
                     f"{r['sb3_seconds']} | {r['ratio']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
