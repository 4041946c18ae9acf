"""Why RL Zoo's DQN recipe on CartPole-v1 misses 500 on some seeds: each seed of
`cartpole_v1_dqn` (RL Zoo's hyperparameters, unchanged) trains once with RL Zoo's own
evaluation callback added (every 10,000 steps, 5 greedy episodes, the best kept as
`best_eval`, as RL Zoo's EvalCallback keeps best_model), then both the final model and
the kept one play the same 100 fresh episodes (seeded 10,000-10,099, never seen in
training or in its evaluations, which use seed + 1000). The greedy return at each
evaluation shows what happens to the final model. Writes bench/results/cartpole_v1_misses.json.

    python -m bench.cartpole_v1_misses [--seeds 0 1 2]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import common
from bench.zoo import EVAL_EPISODES, EVAL_SEED, rlgen_figures, train_command

EVALUATION = ["algo.eval_every_frames=10000", "algo.eval_games=5"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--experiment", default="cartpole_v1_dqn")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            run_dir = Path(work) / f"seed{seed}"
            subprocess.run(train_command(args.experiment, seed, run_dir, *EVALUATION),
                           check=True, capture_output=True)
            metrics = json.loads((run_dir / "metrics.json").read_text())
            final, kept = rlgen_figures(run_dir, "last"), rlgen_figures(run_dir, "best_eval")
            kept_at = json.loads(subprocess.run(
                [sys.executable, "-c", "import torch, sys; print(__import__('json').dumps("
                 "torch.load(sys.argv[1], weights_only=False)['meta']['frame']))",
                 str(run_dir / "checkpoints" / "best_eval.pt")],
                capture_output=True, text=True, check=True).stdout)
            rows.append({"seed": seed, "train_seconds": metrics["train_seconds"],
                         "evaluations": [[e["frame"], e["mean_return"]]
                                         for e in metrics["eval_history"]],
                         "final_mean_return": final["mean_return"],
                         "final_std_return": final["std_return"],
                         "kept_frame": kept_at, "kept_mean_return": kept["mean_return"],
                         "kept_std_return": kept["std_return"]})
            print(f"seed {seed}: final {final['mean_return']}, kept (frame {kept_at}) "
                  f"{kept['mean_return']}; evaluations {rows[-1]['evaluations']}", flush=True)
    common.table(f"{args.experiment} on CartPole-v1: final model against the best evaluation's "
                 f"({EVAL_EPISODES} episodes from seed {EVAL_SEED})",
                 [{k: r[k] for k in ("seed", "final_mean_return", "kept_frame",
                                     "kept_mean_return")} for r in rows])
    common.write("cartpole_v1_misses", {"command": "python -m bench.cartpole_v1_misses "
                                        + " ".join(sys.argv[1:]), "experiment": args.experiment,
                                        "evaluation_during_training": EVALUATION,
                                        "scored_on": f"{EVAL_EPISODES} episodes seeded "
                                                     f"{EVAL_SEED}+i", "rows": rows})


def markdown(results: dict) -> str:
    lines = ["| seed | greedy return at 10k / 20k / 30k / 40k / 50k steps (5 episodes) | final "
             "model, 100 episodes | kept (best evaluation) model, 100 episodes |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {r['seed']} | {' / '.join(f'{v:g}' for _, v in r['evaluations'])} | "
              f"{r['final_mean_return']} | {r['kept_mean_return']} (step {r['kept_frame']}) |"
              for r in results["rows"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
