"""Why RL Zoo's DQN recipe on CartPole-v1 misses 500 on some seeds: each seed of
`cartpole_v1_dqn` (RL Zoo's hyperparameters, unchanged) trains once with RL Zoo's own
evaluation callback added (every 10,000 steps, 5 greedy episodes, the best kept as
`best_eval`, as RL Zoo's EvalCallback keeps best_model), then both the final model and
the kept one play the same 100 fresh episodes (seeded 10,000-10,099, never seen in
training or in its evaluations, which use seed + 1000). The greedy return at each
evaluation shows what happens to the final model.

The same seeds can be trained at other commits (`--revs`, each checked out in a
temporary worktree and run with its own `rlgen-train`/`rlgen-eval`; commits from before
the evaluation callback score the final model only), with other torch thread counts
(`--threads`: torch may split a product's sums differently between threads, which
changes the last bits of the results and nothing else; for these small networks it
did not, in the one pair tried) and other experiments (`--experiments`). Writes
bench/results/cartpole_v1_misses.json, or NAME.json: any DQN experiment can be looked at
this way (`--experiments lunarlander_dqn --name lunarlander_final_models`).

    python -m bench.cartpole_v1_misses [--seeds 0 1 2]
    python -m bench.cartpole_v1_misses --revs 0dfa70e HEAD --threads 1 \
        --experiments cartpole_v1_dqn cartpole_v1_dqn_fast --jobs 2
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import common
from bench.mutation import checkout_of
from bench.zoo import EVAL_EPISODES, EVAL_SEED, ROOT, console_script, in_checkout, rlgen_figures

EVALUATION = ["algo.eval_every_frames=10000", "algo.eval_games=5"]


def has_evaluation(checkout: Path) -> bool:
    """Whether the commit's DQN knows the evaluation callback's setting."""
    return any("eval_every_frames" in path.read_text()
               for folder in ("rl", "conf") for path in (checkout / folder).rglob("*.*")
               if path.suffix in (".py", ".yaml"))


def added_evaluation(checkout: Path, experiment: str) -> list[str]:
    """RL Zoo's evaluation callback's settings, where the commit has the callback and the
    experiment does not evaluate as part of its own recipe (then it keeps its schedule)."""
    recipe = (checkout / "conf" / "experiment" / f"{experiment}.yaml").read_text()
    return EVALUATION if has_evaluation(checkout) and "eval_every_frames" not in recipe else []


def one_run(checkout: Path, commit: str, experiment: str, threads: int, seed: int,
            work: Path) -> dict:
    run_dir = work / f"{commit}_{experiment}_t{threads}_s{seed}"
    evaluating = has_evaluation(checkout)
    in_checkout(checkout, console_script(checkout, "rlgen-train") + [
        f"experiment={experiment}", f"seed={seed}", f"threads={threads}", "device=cpu",
        f"hydra.run.dir={run_dir}", *added_evaluation(checkout, experiment)])
    final = rlgen_figures(run_dir, "last", checkout)
    row = {"commit": commit, "experiment": experiment, "threads": threads, "seed": seed,
           "train_seconds": final["train_seconds"], "final_mean_return": final["mean_return"],
           "final_std_return": final["std_return"]}
    if evaluating:
        kept = rlgen_figures(run_dir, "best_eval", checkout)
        kept_at = json.loads(in_checkout(checkout, [
            sys.executable, "-c", "import torch, sys, json; print(json.dumps(torch.load("
            "sys.argv[1], weights_only=False)['meta']['frame']))",
            str(run_dir / "checkpoints" / "best_eval.pt")]))
        history = json.loads((run_dir / "metrics.json").read_text())["eval_history"]
        row.update(evaluations=[[e["frame"], e["mean_return"]] for e in history],
                   kept_frame=kept_at, kept_mean_return=kept["mean_return"],
                   kept_std_return=kept["std_return"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--experiments", nargs="+", default=["cartpole_v1_dqn"])
    parser.add_argument("--revs", nargs="+", default=[None],
                        help="commits to train at (default: this checkout as it is)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--name", default="cartpole_v1_misses",
                        help="the results file (another env's DQN experiments: another name)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at once (one thread each: more threads than cores spin)")
    args = parser.parse_args()
    rows, checkouts = [], []
    work = Path(tempfile.mkdtemp(prefix="rlgen-cartpole-misses-"))
    try:
        jobs = []
        for rev in args.revs:
            checkout, commit = (ROOT, common.commit()) if rev is None else checkout_of(rev, work)
            checkouts += [checkout] if rev is not None else []
            jobs += [(checkout, commit, experiment, threads, seed, work)
                     for experiment in args.experiments for threads in args.threads
                     for seed in args.seeds]
        # the outcomes do not depend on what else runs (the arithmetic is the same), so
        # runs may share the machine; their seconds then do
        with ThreadPoolExecutor(args.jobs) as pool:
            for row in pool.map(lambda job: one_run(*job), jobs):
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for checkout in checkouts:
            subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT,
                           capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    common.table(f"Final model and best evaluation's ({EVAL_EPISODES} episodes "
                 f"from seed {EVAL_SEED})",
                 [{k: r.get(k, "") for k in ("commit", "experiment", "threads", "seed",
                                             "final_mean_return", "kept_mean_return")}
                  for r in rows])
    common.write(args.name, {"command": common.command(),
                                        "evaluation_during_training": EVALUATION,
                                        "scored_on": f"{EVAL_EPISODES} episodes seeded "
                                                     f"{EVAL_SEED}+i", "rows": rows})


def markdown(results: dict) -> str:
    lines = ["| code | experiment | torch threads | seed | greedy evaluations in training "
             "(5 episodes every 10k steps, or the experiment's own) | final model, "
             "100 episodes | kept (best evaluation) model, 100 episodes |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        curve = " / ".join(f"{v:g}" for _, v in r.get("evaluations", [])) or "(not evaluated)"
        kept = (f"{r['kept_mean_return']} (step {r['kept_frame']})" if "kept_frame" in r
                else "")
        lines.append(f"| {r.get('commit', '')} | `{r.get('experiment', results.get('experiment'))}` "
                     f"| {r.get('threads', 1)} | {r['seed']} | {curve} | "
                     f"{r['final_mean_return']} | {kept} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
