"""Peer comparison, time to a score: rlgen's DQN against Stable-Baselines3's DQN on
gymnasium's CartPole-v1, Acrobot-v1 and LunarLander-v3, both with RL Zoo's tuned settings
for that env (rlgen's faithful experiment, `cartpole_v1_dqn`, `acrobot_dqn`,
`lunarlander_dqn`; SB3 gets the same numbers, read from rlgen's composed config as
bench.zoo does). Epsilon decays over RL Zoo's steps on both sides, whatever the cap.
Both are measured the same way: every `--eval-every` env steps the greedy agent plays
20 evaluation games, the same games for both libraries (gymnasium's env seeded run seed
+ 1,000 on, played by rlgen's batched player), and a run is done once their mean return
reaches the env's own reward threshold (gymnasium's `reward_threshold`: 475, -100, 200).
For each seed: env steps and training seconds (evaluation time left out on both sides)
until then, capped at `--max-steps`. Each run has a fresh process of its own with one
torch thread and its library's own process settings (rlgen counts denormal floats as
zero on the CPU; SB3 leaves torch's default); a seed's two runs go side by side, so they
share the 2-core machine evenly. Writes bench/results/dqn_sb3.json. Needs the `bench`
and `box2d` extras.

    python -m bench.dqn_sb3                              # all three envs, seeds 0-2
    python -m bench.dqn_sb3 --envs cartpole --seeds 0
"""

import argparse
import json
import subprocess
import sys
import time

from bench import common
from bench.zoo import ZOO, sb3_settings

EVAL_GAMES = 20
# the step cap: twice RL Zoo's budget on CartPole-v1 (the score comes late on some
# seeds), RL Zoo's budget on the other two (their runs are long on this CPU)
MAX_STEPS = {"cartpole": 100_000, "acrobot": 100_000, "lunarlander": 100_000}


def target(env_id: str) -> float:
    import gymnasium

    return gymnasium.spec(env_id).reward_threshold


def eval_games(env_id: str, seed: int):
    """The evaluation games of a run: 20 of gymnasium's env, seeded as rlgen seeds its
    own evaluations, so both libraries play the same boards."""
    from envs.gymnasium_env import GymnasiumEnv
    from rl.dqn_bookkeeping import SELECTION_SEED_OFFSET

    env = GymnasiumEnv(env_id)
    return env.batched(EVAL_GAMES, "cpu", seed=seed + SELECTION_SEED_OFFSET), env.max_steps_per_game


def sb3_run(name: str, seed: int, max_steps: int, eval_every: int) -> dict:
    import gymnasium
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    from rl.play import play_batched

    torch.set_num_threads(1)
    experiment, env_id, *_, budget = ZOO[name]
    goal = target(env_id)

    class GreedyEvaluation(BaseCallback):
        def __init__(self):
            super().__init__()
            self.started = time.perf_counter()
            self.eval_seconds = 0.0
            self.reached = None
            self.best = None

        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every:
                return True
            began = time.perf_counter()
            envs, max_game_steps = eval_games(env_id, seed)
            q_net = self.model.q_net
            q_net.eval()
            with torch.no_grad():
                games = play_batched(envs, lambda obs: q_net(obs.float()).argmax(1),
                                     max_game_steps)
            q_net.train()
            mean = games["returns"].mean().item()
            self.eval_seconds += time.perf_counter() - began
            self.best = mean if self.best is None else max(self.best, mean)
            if mean >= goal:
                self.reached = (self.num_timesteps, began - self.started - self.eval_seconds)
                return False
            return True

    settings = sb3_settings(common.compose(f"experiment={experiment}"))
    # exploration_fraction is a share of the whole run: keep RL Zoo's decay steps
    settings["exploration_fraction"] *= budget / max_steps
    model = DQN("MlpPolicy", gymnasium.make(env_id), seed=seed, device="cpu", verbose=0,
                **settings)
    callback = GreedyEvaluation()
    model.learn(total_timesteps=max_steps, callback=callback)
    steps, seconds = callback.reached or (None, None)
    return {"env": env_id, "library": "stable-baselines3", "seed": seed,
            "steps_to_target": steps,
            "seconds_to_target": round(seconds, 2) if seconds is not None else None,
            "seconds_run": round(time.perf_counter() - callback.started, 1),
            "best_greedy_mean_return": round(float(callback.best), 1)}


def rlgen_run(name: str, seed: int, max_steps: int, eval_every: int) -> dict:
    from rl import dqn

    experiment, env_id, *_, budget = ZOO[name]
    goal = target(env_id)
    decay = round(common.compose(f"experiment={experiment}").algo.exploration_fraction * budget)
    m = common.train_quiet(dqn.train, f"experiment={experiment}", f"seed={seed}", "threads=1",
                           f"algo.max_frames={max_steps}", "algo.exploration_fraction=null",
                           f"algo.epsilon_decay_frames={decay}",
                           f"algo.eval_every_frames={eval_every}",
                           f"algo.eval_games={EVAL_GAMES}", f"algo.stop_eval_return={goal}")
    reached = next((r for r in m["eval_history"] if r["mean_return"] >= goal), None)
    return {"env": env_id, "library": "rlgen", "seed": seed,
            "steps_to_target": reached["frame"] if reached else None,
            "seconds_to_target": reached["seconds"] if reached else None,
            "seconds_run": m["train_seconds"],
            "best_greedy_mean_return": round(m["best_eval_return"], 1)}


def side_by_side(name: str, seed: int, max_steps: int, eval_every: int) -> list[dict]:
    """A seed's two runs at once, each in a fresh process of its own."""
    jobs = [subprocess.Popen([sys.executable, "-m", "bench.dqn_sb3", "--job", library, name,
                              str(seed), "--max-steps", str(max_steps),
                              "--eval-every", str(eval_every)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for library in ("rlgen", "sb3")]
    rows = []
    for job in jobs:
        out, err = job.communicate()
        if job.returncode:
            raise SystemExit(f"bench.dqn_sb3: {' '.join(job.args[3:6])} failed:\n{err[-2000:]}")
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", default=",".join(ZOO))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-steps", type=int, help="the step cap (default: per env)")
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--job", nargs=3, metavar=("LIBRARY", "ENV", "SEED"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.envs.split(",")
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        raise SystemExit(f"unknown env {unknown[0]!r}: choose from {', '.join(ZOO)}")
    if args.job:  # one run, in the fresh process side_by_side started for it
        library, name, seed = args.job
        run = rlgen_run if library == "rlgen" else sb3_run
        print(json.dumps(run(name, int(seed), args.max_steps, args.eval_every)))
        return
    began = time.perf_counter()
    rows, ratios = [], []
    for name in names:
        for seed in (int(s) for s in args.seeds.split(",")):
            ours, theirs = side_by_side(name, seed, args.max_steps or MAX_STEPS[name],
                                        args.eval_every)
            rows += [ours, theirs]
            ratios.append({"env": ours["env"], "seed": seed,
                           "to_score": ratio(ours["seconds_to_target"],
                                             theirs["seconds_to_target"]),
                           "per_step": ratio(per_step(ours), per_step(theirs))})
            print(json.dumps([ours, theirs]), flush=True)
    common.table(f"DQN, RL Zoo settings: until {EVAL_GAMES} greedy games reach the env's "
                 "reward threshold", rows)
    common.write("dqn_sb3", {**common.stamp(time.perf_counter() - began),
                             "targets": {ZOO[n][1]: target(ZOO[n][1]) for n in names},
                             "eval_every": args.eval_every,
                             "max_steps": {ZOO[n][1]: args.max_steps or MAX_STEPS[n]
                                           for n in names},
                             "threads": "1 a run, each in its own process, a seed's two "
                                        "runs side by side",
                             "runs": rows, "ratios_rlgen_to_sb3": ratios,
                             "pooled_to_score": pooled(rows)})


def per_step(row: dict) -> float | None:
    if row["seconds_to_target"] is None or not row["steps_to_target"]:
        return None
    return row["seconds_to_target"] / row["steps_to_target"]


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def pooled(rows: list[dict]) -> dict:
    """Per env, rlgen's seconds to the score summed over the seeds over SB3's (each seed's
    luck in how many steps it needs evens out a little); None where a run missed."""
    out = {}
    for env in dict.fromkeys(r["env"] for r in rows):
        mine = [r for r in rows if r["env"] == env]
        seconds = {lib: [r["seconds_to_target"] for r in mine if r["library"] == lib]
                   for lib in ("rlgen", "stable-baselines3")}
        if None in seconds["rlgen"] or None in seconds["stable-baselines3"]:
            out[env] = None
        else:
            out[env] = ratio(sum(seconds["rlgen"]), sum(seconds["stable-baselines3"]))
    return out


def markdown(results: dict) -> str:
    """docs/results.md's table, from a results file this bench wrote."""
    runs = results["runs"]
    lines = ["| env (reward threshold) | seed | rlgen: steps, seconds to it | SB3: steps, seconds "
             "to it | time ratio rlgen / SB3 to it | per env step |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results["ratios_rlgen_to_sb3"]:
        pair = [x for x in runs if x["env"] == r["env"] and x["seed"] == r["seed"]]
        ours, theirs = (next(x for x in pair if (x["library"] == "rlgen") == mine)
                        for mine in (True, False))

        def reached(row: dict) -> str:
            if row["steps_to_target"] is None:
                return f"not within the cap (best {row['best_greedy_mean_return']})"
            return f"{row['steps_to_target']:,}, {row['seconds_to_target']} s"

        lines.append(f"| {r['env']} ({results['targets'][r['env']]:g}) | {r['seed']} | "
                     f"{reached(ours)} | {reached(theirs)} | {r['to_score']} | {r['per_step']} |")
    for env, value in results["pooled_to_score"].items():
        lines.append(f"| {env} | all, seconds summed | | | {value} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
