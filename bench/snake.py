"""Snake benchmarks: batched env speed against the single env in a Python loop, DQN
training speed of the fast recipe against the book's, and (with --summarize) the
greedy quality of finished runs. Writes bench/results/snake.json.

    python -m bench.snake                          # speed, about 5 minutes
    python -m bench.snake --summarize RUN_DIR ...  # time to thresholds + greedy eval
    python -m bench.snake --train snake_dqn_strong --seeds 0 1 2   # 3 x 30 minutes
    python -m bench.snake --train snake_dqn_strong --seeds 0 --overrides env.height=8 \
        env.width=12 env.num_fruits=2

--train runs the seeds one after the other (each alone on the machine), then plays 100
fresh greedy games with each run's kept checkpoint (best_eval), on boards drawn from
seed 5000 + run seed: the run picked that checkpoint on boards from seed 1000 + run
seed, so the reported games are not the ones it was selected on.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench import common
from envs.snake import SnakeEnv
from rl import dqn


@torch.inference_mode()
def env_speed(num_envs: int, steps: int, single_steps: int, rounds: int = 3) -> dict:
    """Steps/s of the batched env (its default path, and the tensor-operation path)
    against the single env in a Python loop, timed in alternating rounds so that a
    noisy machine slows all three alike; each is warmed up first (the compiled loop
    compiles, or loads from its cache, on first use)."""
    single = SnakeEnv()
    single.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 3, single_steps).tolist()

    def play_single() -> int:
        for action in actions:
            _, _, terminated, truncated, _ = single.step(action)
            if terminated or truncated:
                single.reset()
        return single_steps

    def batched_player(kernel: bool | None):
        batched = SnakeEnv().batched(num_envs, "cpu", seed=0, kernel=kernel)
        batched.reset()
        all_actions = torch.randint(0, 3, (steps, num_envs))

        def play() -> int:
            for t in range(steps):
                _, _, terminated, truncated = batched.step(all_actions[t])
                batched.reset_done(terminated | truncated)
            return steps * num_envs
        return play

    players = {"single": play_single, "batched": batched_player(None),
               "tensor_ops": batched_player(False)}
    totals = {name: [0, 0.0] for name in players}
    for play in players.values():  # warm-up
        play()
    for _ in range(rounds):
        for name, play in players.items():
            t0 = time.perf_counter()
            totals[name][0] += play()
            totals[name][1] += time.perf_counter() - t0
    rate = {name: count / seconds for name, (count, seconds) in totals.items()}
    return {"games": num_envs, "single_env_steps_per_s": round(rate["single"]),
            "batched_steps_per_s": round(rate["batched"]),
            "ratio": round(rate["batched"] / rate["single"], 1),
            "tensor_ops_steps_per_s": round(rate["tensor_ops"]),
            "tensor_ops_ratio": round(rate["tensor_ops"] / rate["single"], 1)}


def training_speed(seconds: float) -> list[dict]:
    rows = []
    for experiment in ("snake_dqn", "snake_dqn_fast"):
        m = common.train_quiet(dqn.train, f"experiment={experiment}",
                               f"algo.max_seconds={seconds}")
        rows.append({"experiment": experiment, "seconds": m["train_seconds"],
                     "frames": m["frames"], "frames_per_second": m["frames_per_second"],
                     "updates_per_second": round(m["updates"] / m["train_seconds"], 1),
                     "eaten100": m["final_eaten100"]})
    return rows


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def greedy_eval(run: str, checkpoint: str, *options: str) -> dict:
    """`rlgen-eval` of one checkpoint: 100 fresh greedy games."""
    evaluation = subprocess.run(
        [tool("rlgen-eval"), f"run={run}", f"checkpoint={checkpoint}", "episodes=100",
         "device=cpu", *options], capture_output=True, text=True, check=True)
    return json.loads(evaluation.stdout)


def first_passed(eval_history: list[dict], fruits: float) -> dict | None:
    """The first greedy evaluation during training whose mean reached `fruits`."""
    for record in eval_history:
        if record["mean_fruits"] >= fruits:
            return {"wall_seconds": record.get("wall_seconds"), "frame": record["frame"]}
    return None


REPORT_SEED = 5000  # fresh games: run seed + this, away from the selection boards' seeds


def train_seeds(experiment: str, seeds: list[int], overrides: list[str], runs_dir: Path,
                eval_seed: int = REPORT_SEED) -> list[dict]:
    """Train each seed in turn (nothing else of this bench runs meanwhile), then report
    per seed: frames, pace, the plan, when the greedy mean first passed 25 and 35 fruits,
    and 100 fresh greedy games of the kept checkpoint."""
    rows = []
    for seed in seeds:
        run = runs_dir / f"{experiment}{''.join('_' + o.split('=')[-1] for o in overrides)}_s{seed}"
        began = time.perf_counter()
        subprocess.run([tool("rlgen-train"), f"experiment={experiment}", f"seed={seed}",
                        *overrides, f"hydra.run.dir={run}"], check=True)
        metrics = json.loads((run / "metrics.json").read_text())
        fresh = greedy_eval(str(run), "best_eval", f"seed={eval_seed + seed}", "max_steps=100000")
        history = metrics["eval_history"]
        rows.append({
            "experiment": experiment, "overrides": " ".join(overrides), "seed": seed,
            "frames": metrics["frames"], "train_seconds": metrics["train_seconds"],
            "frames_per_second": metrics["frames_per_second"],
            "planned_frames": metrics.get("planned_frames"),
            "planned_pace": metrics.get("planned_pace"),
            "first_25_fruits": first_passed(history, 25), "first_35_fruits": first_passed(history, 35),
            "selection_best_mean_fruits": max(r["mean_fruits"] for r in history),
            "kept_frame": fresh["frame"], "fresh_eval_seed": eval_seed + seed,
            "fresh_greedy_mean_fruits": fresh["mean_fruits"],
            "fresh_greedy_max_fruits": fresh["max_fruits"],
            "fresh_greedy_mean_steps": fresh["mean_steps"],
            "max_steps_without_reward": fresh["max_steps_without_reward"], "run": str(run),
            **common.stamp(time.perf_counter() - began)})
        common.table(f"{experiment} seed {seed}", rows[-1:])
    return rows


def summarize(run_dirs: list[str], checkpoints=("best", "best_eval")) -> list[dict]:
    """Time to the reward thresholds, figures at 20 minutes, and greedy evaluations over
    100 games of the best checkpoint (by cumulativeReward100) and, where the run made
    greedy evaluations, of the best of those (best_eval), for finished training runs."""
    rows = []
    for run in run_dirs:
        metrics = json.loads((Path(run) / "metrics.json").read_text())
        at_20 = [h for h in metrics["history"] if h["seconds"] <= 1200]
        greedy = {name: greedy_eval(run, name) for name in checkpoints
                  if (Path(run) / "checkpoints" / f"{name}.pt").is_file()}
        reached = metrics["reached"]
        rows.append({
            "experiment": metrics["experiment"], "seed": metrics["seed"],
            "train_seconds": metrics["train_seconds"], "frames": metrics["frames"],
            "seconds_to_reward100_100": (reached.get("100") or reached.get("100.0") or {}).get(
                "seconds"),
            "best_cumulativeReward100": round(metrics["best_cumulativeReward100"] or 0, 1),
            "eaten100_at_20_min": at_20[-1]["eaten100"] if at_20 else None,
            **{f"{name}_greedy_{key}_fruits": result[f"{key}_fruits"]
               for name, result in greedy.items() for key in ("mean", "max")},
            "best_eval_frame": greedy["best_eval"]["frame"] if "best_eval" in greedy else None,
            "run": run})
    return rows


def compare_runs(run_dirs: list[str]) -> list[dict]:
    """Finished training runs side by side (e.g. the views, each run with its own
    overrides): frames, pace and the greedy evaluations made during training."""
    rows = []
    for run in map(Path, run_dirs):
        metrics = json.loads((run / "metrics.json").read_text())
        overrides = (run / ".hydra" / "overrides.yaml").read_text().splitlines()
        rows.append({"overrides": " ".join(line.removeprefix("- ") for line in overrides),
                     "frames": metrics["frames"], "train_seconds": metrics["train_seconds"],
                     "frames_per_second": metrics["frames_per_second"],
                     "greedy_mean_fruits_by_frame": [[r["frame"], r["mean_fruits"]]
                                                     for r in metrics["eval_history"]]})
    return rows


def markdown(results: dict) -> str:
    """The seeds trained by `--train` (each row stamped with its own commit and date):
    plan, pace, when the greedy mean passed 25 and 35 fruits, and the fresh games."""
    def when(passed: dict | None) -> str:
        return f"{passed['wall_seconds']:,.0f} s" if passed else "not reached"

    lines = ["| experiment (overrides) | seed | last plan, frames (pace timed at the start) | "
             "frames in training seconds (frames/s) | greedy mean first >= 25 / >= 35 | best "
             "selection mean | 100 fresh games (seed): mean / max fruits | commit, date |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = sorted((r for r in results.get("trained", []) if "commit" in r),
                  key=lambda r: (r["experiment"], r["overrides"], r["seed"]))
    lines += [f"| `{r['experiment']}` ({r['overrides'] or 'as it is'}) | {r['seed']} | "
              f"{r['planned_frames']:,} ({r['planned_pace']:,.0f}/s) | {r['frames']:,} in "
              f"{r['train_seconds']:,.0f} s ({r['frames_per_second']:,.0f}) | "
              f"{when(r['first_25_fruits'])} / {when(r['first_35_fruits'])} | "
              f"{r['selection_best_mean_fruits']} | ({r['fresh_eval_seed']}) "
              f"**{r['fresh_greedy_mean_fruits']}** / {r['fresh_greedy_max_fruits']} | "
              f"{r['commit']}, {r['date']} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--summarize", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--checkpoints", nargs="+", default=["best", "best_eval"],
                        help="which checkpoints --summarize evaluates (100 greedy games each)")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--train", metavar="EXPERIMENT",
                        help="train --seeds of this experiment one at a time, then evaluate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--overrides", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/bench_snake"))
    parser.add_argument("--compare", nargs="+", metavar="RUN_DIR",
                        help="put finished runs side by side (results key 'compared')")
    args = parser.parse_args()
    results_path = common.RESULTS / "snake.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["machine"] = common.machine()
    if args.compare:
        results["compared"] = compare_runs(args.compare)
        common.table("runs side by side", [{k: v for k, v in r.items() if "by_frame" not in k}
                                           for r in results["compared"]])
    elif args.train:
        rows = train_seeds(args.train, args.seeds, args.overrides, args.runs_dir)
        new = {(r["experiment"], r["overrides"], r["seed"]) for r in rows}
        kept = [r for r in results.get("trained", [])
                if (r["experiment"], r["overrides"], r["seed"]) not in new]
        results["trained"] = kept + rows
        common.table("trained seeds: 100 fresh greedy games of the kept checkpoint", rows)
    elif args.summarize:
        results["quality"] = summarize(args.summarize, args.checkpoints)
        common.table("Snake runs: thresholds, 20-minute figures, greedy eval of the best checkpoints",
                     results["quality"])
    else:
        results["env_speed"] = [env_speed(n, 200, 20000) for n in (64, 1024, 4096)]
        results["training_speed"] = training_speed(args.seconds)
        common.table("batched snake env vs the single env in a Python loop", results["env_speed"])
        common.table(f"DQN training speed, {args.seconds:.0f} s each", results["training_speed"])
    common.write("snake", results)


if __name__ == "__main__":
    main()
