"""Peer comparison: rlgen's DQN against Stable-Baselines3's DQN on the same env, gymnasium's
CartPole-v1 (`cartpole_v1_dqn`: rlgen trains on gymnasium's env through its vector-env
adapter), both with RL Zoo's tuned CartPole DQN settings (the values in
conf/experiment/cartpole_v1_dqn.yaml), epsilon decaying over RL Zoo's 8,000 steps on both.
Both are measured the way RL Zoo scores its agents:
every 2,000 env steps the greedy agent plays 20 evaluation games, and a run is done once
their mean return reaches 475. For each of 3 seeds: env steps and training seconds
(evaluation time left out on both sides) until then, capped at 100,000 steps.
Every run has a fresh process of its own, one torch thread, the machine to itself, and
its library's own process settings (rlgen counts denormal floats as zero on the CPU;
SB3 leaves torch's default): a run in the process of the other library's run would
inherit them. Writes bench/results/dqn_sb3.json. Needs the `bench` extra
(stable-baselines3).

    python -m bench.dqn_sb3
"""

import argparse
import json
import subprocess
import sys
import time

from bench import common

MAX_STEPS = 100_000
TARGET = 475
EVAL_EVERY, EVAL_GAMES = 2000, 20
# RL Zoo's hyperparameters for DQN on CartPole-v1
ZOO = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
           gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
           exploration_fraction=0.16, exploration_final_eps=0.04,
           policy_kwargs=dict(net_arch=[256, 256]))


def sb3_run(seed: int) -> dict:
    import gymnasium
    import torch
    from stable_baselines3 import DQN

    torch.set_num_threads(1)
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    class GreedyEvaluation(BaseCallback):
        def __init__(self):
            super().__init__()
            self.eval_env = gymnasium.make("CartPole-v1")
            self.eval_env.reset(seed=seed + 1000)
            self.started = time.perf_counter()
            self.eval_seconds = 0.0
            self.reached = None
            self.best = None

        def _on_step(self) -> bool:
            if self.num_timesteps % EVAL_EVERY:
                return True
            began = time.perf_counter()
            mean, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=EVAL_GAMES,
                                      deterministic=True)
            self.eval_seconds += time.perf_counter() - began
            self.best = mean if self.best is None else max(self.best, mean)
            if mean >= TARGET:
                self.reached = (self.num_timesteps,
                                began - self.started - self.eval_seconds)
                return False
            return True

    env = gymnasium.make("CartPole-v1")
    # exploration_fraction is a share of the whole run: keep RL Zoo's 8,000 decay steps
    settings = dict(ZOO, exploration_fraction=ZOO["exploration_fraction"] * 50_000 / MAX_STEPS)
    model = DQN("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **settings)
    callback = GreedyEvaluation()
    model.learn(total_timesteps=MAX_STEPS, callback=callback)
    steps, seconds = callback.reached or (None, None)
    return {"library": "stable-baselines3", "seed": seed, "steps_to_475": steps,
            "seconds_to_475": round(seconds, 2) if seconds is not None else None,
            "seconds_run": round(time.perf_counter() - callback.started, 1),
            "best_greedy_mean_return": round(float(callback.best), 1)}


def rlgen_run(seed: int) -> dict:
    from rl import dqn

    m = common.train_quiet(dqn.train, "experiment=cartpole_v1_dqn", f"seed={seed}", "threads=1",
                           f"algo.max_frames={MAX_STEPS}", "algo.exploration_fraction=null",
                           "algo.epsilon_decay_frames=8000", f"algo.eval_every_frames={EVAL_EVERY}",
                           f"algo.eval_games={EVAL_GAMES}", f"algo.stop_eval_return={TARGET}")
    reached = next((r for r in m["eval_history"] if r["mean_return"] >= TARGET), None)
    return {"library": "rlgen", "seed": seed,
            "steps_to_475": reached["frame"] if reached else None,
            "seconds_to_475": reached["seconds"] if reached else None,
            "seconds_run": m["train_seconds"],
            "best_greedy_mean_return": m["best_eval_return"]}


def in_own_process(library: str, seed: int) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.dqn_sb3", "--job", library, str(seed)],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench.dqn_sb3: {library} seed {seed} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", nargs=2, metavar=("LIBRARY", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:  # one run, in the fresh process main started for it
        run = rlgen_run if args.job[0] == "rlgen" else sb3_run
        print(json.dumps(run(int(args.job[1]))))
        return
    began = time.perf_counter()
    rows = [in_own_process(library, seed) for library in ("rlgen", "sb3") for seed in range(3)]
    common.table(f"DQN on cart-pole, RL Zoo settings: until {EVAL_GAMES} greedy games average "
                 f">= {TARGET} (cap {MAX_STEPS} steps)", rows)
    ratios = []  # per seed: rlgen's seconds to the score over SB3's, and per 1,000 steps
    for seed in range(3):
        ours, theirs = rows[seed], rows[3 + seed]
        ratios.append({"seed": seed, "to_score": ratio(ours["seconds_to_475"],
                                                       theirs["seconds_to_475"]),
                       "per_step": ratio(per_step(ours), per_step(theirs))})
    common.write("dqn_sb3", {**common.stamp(time.perf_counter() - began),
                             "env": "CartPole-v1 (gymnasium) for both",
                             "threads": "1, each run in its own process, one at a time",
                             "runs": rows, "ratios_rlgen_to_sb3": ratios})


def per_step(row: dict) -> float | None:
    if row["seconds_to_475"] is None or not row["steps_to_475"]:
        return None
    return row["seconds_to_475"] / row["steps_to_475"]


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def markdown(results: dict) -> str:
    """docs/results.md's table, from a results file this bench wrote."""
    runs = results["runs"]
    lines = ["| seed | rlgen: steps, seconds to 475 | SB3: steps, seconds to 475 | time ratio "
             "rlgen / SB3 to 475 | per env step |", "| --- | --- | --- | --- | --- |"]
    for r in results["ratios_rlgen_to_sb3"]:
        ours = next(x for x in runs if x["library"] == "rlgen" and x["seed"] == r["seed"])
        theirs = next(x for x in runs if x["library"] != "rlgen" and x["seed"] == r["seed"])
        lines.append(f"| {r['seed']} | {ours['steps_to_475']}, {ours['seconds_to_475']} s | "
                     f"{theirs['steps_to_475']}, {theirs['seconds_to_475']} s | "
                     f"{r['to_score']} | {r['per_step']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
