"""Cart-pole benchmarks: speed as ratios measured in this one process, and the learning
targets of the REINFORCE issue. Prints tables and writes bench/results/cartpole.json.

    python -m bench.cartpole        # about a minute on 2 CPU cores
    python -m bench.cartpole --quick
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench import common
from bench.common import compose, table
from envs.cartpole import CartPoleEnv
from rl import reinforce


def train_quiet(*overrides):
    return common.train_quiet(reinforce.train, *overrides)


def trained_policy():
    """A solved policy (games last up to the 500 cap), so both rollouts play long games and
    the figure measures the rollout engines, not how unevenly games end."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose("experiment=cartpole_reinforce_fast", "algo.iterations=25", "device=cpu")
        reinforce.train(cfg, Path(tmp))
        payload = torch.load(Path(tmp) / "checkpoints" / "last.pt", weights_only=True)
    _, _, policy = reinforce.load_policy(payload, torch.device("cpu"))
    return policy


@torch.no_grad()
def one_game_at_a_time(policy, games: int, seed: int) -> int:
    """The original's loop: one env, one network call per step of one game."""
    env = CartPoleEnv(max_steps_per_game=500)
    gen = torch.Generator().manual_seed(seed)
    steps = 0
    for game in range(games):
        obs, _ = env.reset(seed=seed + game)
        done = False
        while not done:
            logit = policy(torch.as_tensor(obs)[None]).squeeze(-1)
            action = reinforce.sample_push_right(logit, gen).item()
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            steps += 1
    return steps


def bench_rollout(policy, repeats: int) -> list[dict]:
    rows = []
    for games in (20, 64, 256, 1024):
        t0 = time.perf_counter()
        seq_steps = sum(one_game_at_a_time(policy, games, seed=r * 1000) for r in range(repeats))
        seq_time = time.perf_counter() - t0
        envs = CartPoleEnv(max_steps_per_game=500).batched(games, "cpu", seed=0)
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        bat_steps = 0
        for _ in range(repeats):
            bat_steps += int(reinforce.rollout(policy, envs, gen, 500)["alive"].sum())
        bat_time = time.perf_counter() - t0
        seq, bat = seq_steps / seq_time, bat_steps / bat_time
        rows.append({"games": games, "one_at_a_time_steps_per_s": round(seq),
                     "batched_steps_per_s": round(bat), "ratio": round(bat / seq, 2)})
    return rows


@torch.inference_mode()
def bench_vector_env(num_envs: int, steps: int) -> dict:
    """Random actions with auto-reset, as gymnasium's vector env runs them."""
    import gymnasium

    ours = CartPoleEnv().batched(num_envs, "cpu", seed=0)
    ours.reset()
    actions = torch.randint(0, 2, (steps, num_envs))
    t0 = time.perf_counter()
    for t in range(steps):
        _, _, terminated, truncated = ours.step(actions[t])
        ours.reset_done(terminated | truncated)  # auto-reset, as the gymnasium vector env does
    ours_rate = steps * num_envs / (time.perf_counter() - t0)

    theirs = gymnasium.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point")
    theirs.reset(seed=0)
    np_actions = actions.numpy()
    t0 = time.perf_counter()
    for t in range(steps):
        theirs.step(np_actions[t])
    theirs_rate = steps * num_envs / (time.perf_counter() - t0)
    return {"num_envs": num_envs, "rlgen_steps_per_s": round(ours_rate),
            "gymnasium_CartPoleVectorEnv_steps_per_s": round(theirs_rate),
            "ratio": round(ours_rate / theirs_rate, 2), "reference": type(theirs.unwrapped).__name__}


def bench_book_recipe() -> dict:
    t0 = time.perf_counter()
    metrics = train_quiet("experiment=cartpole_reinforce", "seed=0")
    in_process = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "rlgen-train"),
                        "experiment=cartpole_reinforce", "device=cpu", f"hydra.run.dir={tmp}"],
                       check=True, capture_output=True)
        command = time.perf_counter() - t0
    return {"iterations": 20, "games_per_iteration": 20, "train_seconds": metrics["train_seconds"],
            "in_process_seconds": round(in_process, 2), "whole_command_seconds": round(command, 2)}


def bench_learning() -> dict:
    faithful, fast = [], []
    for seed in range(5):
        m = train_quiet("experiment=cartpole_reinforce", "algo.iterations=25", f"seed={seed}")
        faithful.append({"seed": seed, "solved_iteration": m["solved_iteration"],
                         "best_mean_steps": round(m["best_mean_steps"], 1)})
    for seed in range(5):
        m = train_quiet("experiment=cartpole_reinforce_fast", f"seed={seed}")
        fast.append({"seed": seed, "solved_iteration": m["solved_iteration"],
                     "solved_train_seconds": m["solved_train_seconds"],
                     "final_mean_steps": round(m["final_mean_steps"], 1)})
    return {"cartpole_reinforce_25_iterations": faithful, "cartpole_reinforce_fast": fast}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    torch.manual_seed(0)
    np.random.seed(0)
    results = {"machine": common.machine()}
    policy = trained_policy()
    results["rollout"] = bench_rollout(policy, repeats=1 if quick else 3)
    results["vector_env"] = [bench_vector_env(n, 100 if quick else 500) for n in (4096, 65536)]
    results["book_recipe"] = bench_book_recipe()
    results["learning"] = bench_learning()
    print(f"\nmachine: {results['machine']}")
    table("(a) rollout env steps/s: batched vs one game at a time (same policy)", results["rollout"])
    table("(b) batched env steps/s vs gymnasium CartPoleVectorEnv", results["vector_env"])
    table("(c) full book recipe (20 iterations x 20 games)", [results["book_recipe"]])
    table("learning: cartpole_reinforce, 25 iterations (first iteration with mean steps >= 475)",
          results["learning"]["cartpole_reinforce_25_iterations"])
    table("learning: cartpole_reinforce_fast (training seconds to mean steps >= 475)",
          results["learning"]["cartpole_reinforce_fast"])
    common.write("cartpole", results)


if __name__ == "__main__":
    main()
