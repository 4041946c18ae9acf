"""rlgen's DQN on RL Zoo's own benchmark: CartPole-v1, Acrobot-v1 and LunarLander-v3 with
RL Zoo's tuned DQN hyperparameters (the experiments cartpole_v1_dqn, acrobot_dqn,
lunarlander_dqn), against Stable-Baselines3's DQN given the same hyperparameters (read
from rlgen's composed config, so both sides get the same numbers) in the same
invocation. For each seed the two train side by side, one torch thread each, so they
share the machine evenly. RL Zoo scores its final model: the greedy policy over
evaluation episodes. Here each final model plays 100 episodes seeded 10,000-10,099
(training seeds are 0-2), the same episodes for both libraries, through the same
batched player. Then the rlgen variants (`*_dqn_fast`); a variant that evaluates itself
while training is scored by the model its evaluations kept (`scored_checkpoint`).
Writes bench/results/zoo.json. Needs the `bench` and `box2d` extras.

    python -m bench.zoo                         # all, about an hour on a 2-core CPU
    python -m bench.zoo --envs acrobot --seeds 0
    python -m bench.zoo --no-variants       # the variants' rows kept from the last file
    python -m bench.zoo --variants-only     # the faithful rows kept from the last file
    python -m bench.zoo --variants-only --seeds 100,101,102 --eval-seed 20000 --name zoo_tuning
                                            # a recipe's tuning split, apart from the reported one
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib
import torch

from bench import common

ROOT = Path(__file__).resolve().parent.parent
EVAL_SEED, EVAL_EPISODES = 10_000, 100
# RL Zoo's published DQN results (one run each; +- over its evaluation episodes)
ZOO = {"cartpole": ("cartpole_v1_dqn", "CartPole-v1", 500.0, 0.0, 50_000),
       "acrobot": ("acrobot_dqn", "Acrobot-v1", -76.6, 11.8, 100_000),
       "lunarlander": ("lunarlander_dqn", "LunarLander-v3", 154.4, 79.2, 100_000)}


def sb3_settings(cfg) -> dict:
    """The rlgen experiment's hyperparameters in SB3's DQN names."""
    algo = cfg.algo
    return dict(learning_rate=algo.lr, batch_size=algo.batch_size, buffer_size=algo.replay_size,
                learning_starts=algo.replay_warmup, gamma=algo.gamma,
                target_update_interval=algo.sync_every_frames, train_freq=algo.train_every_frames,
                gradient_steps=algo.updates_per_train,
                exploration_fraction=algo.exploration_fraction,
                exploration_initial_eps=algo.epsilon_init,
                exploration_final_eps=algo.epsilon_final, max_grad_norm=algo.max_grad_norm,
                policy_kwargs=dict(net_arch=list(cfg.model.hidden_sizes)))


def greedy_returns(env_id: str, act, eval_seed: int = EVAL_SEED) -> dict:
    """The 100 evaluation episodes, played at once by rlgen's batched player."""
    from envs.gymnasium_env import GymnasiumEnv
    from rl.play import play_batched

    env = GymnasiumEnv(env_id)
    games = play_batched(env.batched(EVAL_EPISODES, "cpu", seed=eval_seed), act,
                         env.max_steps_per_game)
    returns = games["returns"]
    return {"mean_return": round(returns.mean().item(), 2),
            "std_return": round(returns.std(unbiased=False).item(), 2)}


def sb3_job(name: str, seed: int, steps: int | None = None, eval_seed: int = EVAL_SEED) -> None:
    """One SB3 run in this process (started by `run_pair`); prints its JSON line."""
    import gymnasium
    from stable_baselines3 import DQN

    torch.set_num_threads(1)
    experiment, env_id, *_ = ZOO[name]
    cfg = common.compose(f"experiment={experiment}")
    model = DQN("MlpPolicy", gymnasium.make(env_id), seed=seed, device="cpu", verbose=0,
                **sb3_settings(cfg))
    began = time.perf_counter()
    model.learn(total_timesteps=steps or cfg.algo.max_frames)
    seconds = time.perf_counter() - began
    model.q_net.eval()
    figures = greedy_returns(env_id, lambda obs: model.q_net(obs.float()).argmax(1), eval_seed)
    print(json.dumps({"train_seconds": round(seconds, 1), **figures}), flush=True)


def console_script(checkout: Path, name: str) -> list[str]:
    """The command that runs console script `name` as `checkout` defines it (the entry
    points moved between modules over the project's history)."""
    project = tomllib.loads((checkout / "pyproject.toml").read_text())["project"]
    module, function = project["scripts"][name].split(":")
    return [sys.executable, "-c", f"from {module} import {function}; {function}()"]


def in_checkout(checkout: Path, command: list[str]) -> str:
    """Run `command` with `checkout`'s packages first on the import path; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[3:])} failed in {checkout.name}: "
                         f"{done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def rlgen_figures(run_dir: Path, checkpoint: str = "last", checkout: Path = ROOT,
                  eval_seed: int = EVAL_SEED) -> dict:
    """The checkpoint's greedy returns over the evaluation episodes (`checkout`'s
    rlgen-eval: the code that trained it)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    out = in_checkout(checkout, console_script(checkout, "rlgen-eval") + [
        f"run={run_dir}", f"checkpoint={checkpoint}", f"episodes={EVAL_EPISODES}",
        f"seed={eval_seed}", "device=cpu"])
    summary = json.loads(out.strip().splitlines()[-1])
    return {"train_seconds": metrics["train_seconds"], "frames": metrics["frames"],
            "mean_return": round(summary["mean_return"], 2),
            "std_return": round(summary["std_return"], 2)}


def train_command(experiment: str, seed: int, run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-c", "from nn.tools.train import main; main()",
            f"experiment={experiment}", f"seed={seed}", "threads=1", "device=cpu",
            f"hydra.run.dir={run_dir}", *overrides]


def run_pair(name: str, seed: int, work: Path, steps: int | None = None,
             eval_seed: int = EVAL_SEED) -> list[dict]:
    """rlgen and SB3 on one seed, side by side (`steps`: fewer than RL Zoo's)."""
    experiment = ZOO[name][0]
    run_dir = work / f"{experiment}_{seed}"
    shorter = [f"algo.max_frames={steps}"] if steps else []
    rlgen = subprocess.Popen(train_command(experiment, seed, run_dir, *shorter),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sb3 = subprocess.run([sys.executable, "-m", "bench.zoo", "--sb3-job", name, str(seed),
                          *(["--sb3-steps", str(steps)] if steps else []),
                          "--eval-seed", str(eval_seed)],
                         capture_output=True, text=True)
    if rlgen.wait() or sb3.returncode:
        raise SystemExit(f"{name} seed {seed} failed: {sb3.stderr[-2000:]}")
    sb3_row = json.loads(sb3.stdout.strip().splitlines()[-1])
    return [{"env": ZOO[name][1], "library": "rlgen", "experiment": experiment, "seed": seed,
             **rlgen_figures(run_dir, eval_seed=eval_seed)},
            {"env": ZOO[name][1], "library": "stable-baselines3", "experiment": experiment,
             "seed": seed, "frames": steps or ZOO[name][4], **sb3_row}]


def scored_checkpoint(experiment: str) -> str:
    """The model a run is scored by: the final one, as RL Zoo scores it, unless the
    experiment evaluates itself while training; then the one its evaluations kept
    (`checkpoints/best_eval`, RL Zoo's `--load-best`), which is also the final one when
    the run stopped at its evaluation threshold."""
    cfg = common.compose(f"experiment={experiment}")
    return "best_eval" if cfg.algo.get("eval_every_frames") else "last"


def run_variants(name: str, seeds: list[int], work: Path, eval_seed: int = EVAL_SEED) -> list[dict]:
    """The rlgen variant, two seeds at a time."""
    experiment = f"{ZOO[name][0]}_fast"
    checkpoint = scored_checkpoint(experiment)
    rows = []
    for first in range(0, len(seeds), 2):
        batch = seeds[first:first + 2]
        jobs = [subprocess.Popen(train_command(experiment, s, work / f"{experiment}_{s}"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for s in batch]
        if any(job.wait() for job in jobs):
            raise SystemExit(f"{experiment} failed")
        rows += [{"env": ZOO[name][1], "library": "rlgen", "experiment": experiment, "seed": s,
                  "checkpoint": checkpoint,
                  **rlgen_figures(work / f"{experiment}_{s}", checkpoint, eval_seed=eval_seed)}
                 for s in batch]
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    table = []
    for experiment, env_id, zoo_mean, zoo_std, steps in ZOO.values():
        for exp in (experiment, f"{experiment}_fast"):
            mine = [r for r in rows if r["experiment"] == exp]
            ours = [r for r in mine if r["library"] == "rlgen"]
            if not ours:
                continue
            sb3 = [r for r in mine if r["library"] == "stable-baselines3"]
            mean = sum(r["mean_return"] for r in ours) / len(ours)
            row = {"env": env_id, "experiment": exp, "steps": ours[0]["frames"],
                   "rl_zoo": f"{zoo_mean} +- {zoo_std} ({steps} steps)",
                   "rlgen_per_seed": [r["mean_return"] for r in ours],
                   "rlgen_mean": round(mean, 1), "at_least_rl_zoo": mean >= zoo_mean,
                   "every_seed_at_least_rl_zoo": all(r["mean_return"] >= zoo_mean for r in ours),
                   "model_scored": "kept by evaluation" if ours[0].get("checkpoint") == "best_eval"
                   else "final"}
            # the variants run without SB3: their columns stay empty
            row["sb3_per_seed"] = [r["mean_return"] for r in sb3] or None
            row["sb3_mean"] = round(sum(r["mean_return"] for r in sb3) / len(sb3), 1) if sb3 else None
            row["wall_time_ratio_rlgen_to_sb3"] = [
                round(a["train_seconds"] / b["train_seconds"], 3)
                for a, b in zip(ours, sb3, strict=True)] if sb3 else None
            table.append(row)
    return table


def markdown(results: dict) -> str:
    """docs/results.md's table, from a results file this bench wrote: each row says the
    date and commit of the runs it holds (a partial re-run keeps the other rows)."""
    lines = ["| env, steps | experiment | RL Zoo | rlgen per seed (mean) | SB3 per seed (mean) | "
             "wall time rlgen / SB3 per seed | measured (commit) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in results["summary"]:
        runs = [r for r in results["runs"] if r["experiment"] == row["experiment"]]
        when = sorted({f"{r.get('date', results['date'])} ({r.get('commit') or 'not recorded'})"
                       for r in runs})
        sb3 = (f"{' / '.join(f'{v:g}' for v in row['sb3_per_seed'])} ({row['sb3_mean']:g})"
               if row["sb3_per_seed"] else "")
        ratios = ", ".join(f"{v:g}" for v in row["wall_time_ratio_rlgen_to_sb3"] or [])
        scored = " (kept by evaluation)" if row.get("model_scored") == "kept by evaluation" else ""
        # a run that stops at its evaluation threshold takes fewer steps than its budget
        frames = sorted({r["frames"] for r in runs if r["library"] == "rlgen"})
        steps = "-".join(f"{f:,}" for f in (frames[0], frames[-1])[:len(frames)])
        lines.append(f"| {row['env']}, {steps} | `{row['experiment']}`{scored} | "
                     f"{row['rl_zoo'].split(' (')[0]} | "
                     f"{' / '.join(f'{v:g}' for v in row['rlgen_per_seed'])} "
                     f"({row['rlgen_mean']:g}) | {sb3} | {ratios} | {', '.join(when)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", default=",".join(ZOO))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--no-variants", action="store_true")
    parser.add_argument("--variants-only", action="store_true",
                        help="run only the *_fast variants; keep the other rows of zoo.json")
    parser.add_argument("--eval-seed", type=int, default=EVAL_SEED,
                        help="first seed of the 100 scoring episodes; a tuning run scores on "
                             "episodes of its own (e.g. 20000 with --seeds 100,101,102)")
    parser.add_argument("--name", default="zoo",
                        help="results file bench/results/NAME.json (a tuning run: zoo_tuning)")
    parser.add_argument("--sb3-job", nargs=2, metavar=("ENV", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--sb3-steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sb3_job:
        sb3_job(args.sb3_job[0], int(args.sb3_job[1]), args.sb3_steps, args.eval_seed)
        return
    names = args.envs.split(",")
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        raise SystemExit(f"unknown env {unknown[0]!r}: choose from {', '.join(ZOO)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, commands = [], [common.command()]
    if args.variants_only or args.no_variants:
        # the rows this run does not make stay from the last file, each with the date and
        # commit of the run that made it
        last = common.RESULTS / f"{args.name}.json"
        kept = json.loads(last.read_text()) if last.exists() else {"runs": [], "date": None}
        rerun = {f"{ZOO[n][0]}{'_fast' if args.variants_only else ''}" for n in names}
        rows = [{"date": kept["date"], "commit": kept.get("commit"), **r} for r in kept["runs"]
                if r["experiment"] not in rerun]
        commands = (kept.get("commands") or [c for c in [kept.get("command")] if c]) + commands
    with tempfile.TemporaryDirectory() as tmp:
        for name in [] if args.variants_only else names:
            for seed in seeds:
                began = time.perf_counter()
                pair = run_pair(name, seed, Path(tmp), eval_seed=args.eval_seed)
                rows += [{**row, **common.stamp(time.perf_counter() - began)} for row in pair]
                print(json.dumps(rows[-2:]), flush=True)
        if not args.no_variants:
            for name in names:
                began = time.perf_counter()
                rows += [{**row, **common.stamp(time.perf_counter() - began)}
                         for row in run_variants(name, seeds, Path(tmp), args.eval_seed)]
                print(json.dumps(rows[-len(seeds):]), flush=True)
    table = summarize(rows)
    common.table("DQN on RL Zoo's benchmark: greedy, 100 episodes per seed", table)
    common.write(args.name, {"threads": "one torch thread per run, two runs side by side",
                         "commands": commands,
                         "eval": f"{EVAL_EPISODES} episodes seeded {args.eval_seed}+i, greedy; the "
                                 "final model, or for an experiment that evaluates itself in "
                                 "training the model its evaluations kept",
                         "summary": table, "runs": rows})


if __name__ == "__main__":
    main()
