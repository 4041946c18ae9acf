"""rlgen's envs in the gymnasium ecosystem, measured:

1. speed, per second of CPU time on one thread: `gymnasium.make_vec("rlgen/...",
   vectorization_mode="vector_entry_point")`
   (NumPy arrays, gymnasium's infos, masked resets) against the batched twin it wraps
   (tensors, `reset_done`), the same random actions, in alternating rounds in one
   process; the ratio of steps/s (target: at least 0.9);
2. Stable-Baselines3's env checker on rlgen's single games: errors and every warning;
3. SB3's DQN trained on rlgen's Snake through the standard API (`gymnasium.make`), then
   its greedy agent over 100 fresh games (each ended after 500 steps at most).

Writes bench/results/gym_interop.json. Needs the `bench` extra (stable-baselines3).

    python -m bench.gym_interop            # about 10 minutes
    python -m bench.gym_interop --sb3-steps 20000
"""

import argparse
import time
import warnings

import gymnasium
import numpy as np
import torch

import envs  # noqa: F401  (registers the rlgen/ ids)
from bench import common

SPEED_CASES = [("rlgen/Snake-v0", 64), ("rlgen/Snake-v0", 256), ("rlgen/Snake-v0", 1024),
               ("rlgen/CartPole-v0", 64), ("rlgen/CartPole-v0", 1024)]


def steps_per_second(step, reset_done, actions: list, num_envs: int) -> float:
    """Per second of this process's CPU time: single-threaded work timed this way is not
    thrown off by other jobs on the machine, as wall time is."""
    began = time.process_time()
    for action in actions:
        ended = step(action)
        if ended.any():
            reset_done(ended)
    return len(actions) * num_envs / (time.process_time() - began)


def vector_speed(env_id: str, num_envs: int, steps: int, rounds: int) -> dict:
    """Steps/s through the VectorEnv API and through the twin, alternating rounds."""
    vector = gymnasium.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
    vector.reset(seed=0)
    twin = vector.unwrapped.twin  # the same kind of games, driven directly
    n = vector.single_action_space.n
    generator = np.random.default_rng(0)
    numpy_actions = [generator.integers(n, size=num_envs) for _ in range(steps)]
    torch_actions = [torch.from_numpy(a) for a in numpy_actions]

    def vector_step(action):
        _, _, terminated, truncated, _ = vector.step(action)
        return terminated | truncated

    def vector_reset(ended):
        vector.reset(options={"reset_mask": ended})

    def twin_step(action):
        _, _, terminated, truncated = twin.step(action)
        return terminated | truncated

    for _ in range(2):  # compiles the Snake kernel before any timing
        steps_per_second(vector_step, vector_reset, numpy_actions[:50], num_envs)
        steps_per_second(twin_step, twin.reset_done, torch_actions[:50], num_envs)
    api, direct = [], []
    for _ in range(rounds):
        api.append(steps_per_second(vector_step, vector_reset, numpy_actions, num_envs))
        direct.append(steps_per_second(twin_step, twin.reset_done, torch_actions, num_envs))
    return {"env": env_id, "num_envs": num_envs, "steps_per_round": steps * num_envs,
            "vector_env_steps_per_s": round(float(np.median(api))),
            "twin_steps_per_s": round(float(np.median(direct))),
            "ratio": round(float(np.median(api) / np.median(direct)), 3),
            "ratio_per_round": [round(a / d, 3) for a, d in zip(api, direct, strict=True)]}


def sb3_checks() -> list[dict]:
    from stable_baselines3.common.env_checker import check_env

    rows = []
    for env_id in ("rlgen/CartPole-v0", "rlgen/Snake-v0"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            error = None
            try:
                check_env(gymnasium.make(env_id), warn=True)
            except Exception as err:  # reported, not hidden: the bench's point
                error = f"{type(err).__name__}: {err}"
        rows.append({"env": env_id, "error": error,
                     "warnings": sorted({str(w.message).strip() for w in caught})})
    return rows


def sb3_dqn_on_snake(total_steps: int, seed: int = 0) -> dict:
    from stable_baselines3 import DQN

    torch.set_num_threads(1)
    env = gymnasium.make("rlgen/Snake-v0")
    model = DQN("MlpPolicy", env, seed=seed, device="cpu", verbose=0, learning_rate=5e-4,
                buffer_size=100_000, learning_starts=1000, batch_size=64, gamma=0.99,
                target_update_interval=1000, train_freq=4, gradient_steps=1,
                exploration_fraction=0.2, exploration_final_eps=0.02,
                policy_kwargs=dict(net_arch=[256, 256]))
    began = time.perf_counter()
    model.learn(total_timesteps=total_steps)
    seconds = time.perf_counter() - began
    eval_env = gymnasium.make("rlgen/Snake-v0", max_steps_per_game=500)
    fruits, returns = [], []
    for game in range(100):
        obs, info = eval_env.reset(seed=10_000 + game)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = eval_env.step(int(action))
            total += reward
            done = terminated or truncated
        fruits.append(info["fruits_eaten"])
        returns.append(total)
    return {"library": "stable-baselines3", "algorithm": "DQN, MlpPolicy [256, 256]",
            "env": "rlgen/Snake-v0 (9x9, the book's rules)", "steps": total_steps,
            "train_seconds": round(seconds, 1), "seed": seed,
            "greedy_mean_fruits": round(float(np.mean(fruits)), 2),
            "greedy_max_fruits": int(np.max(fruits)),
            "greedy_mean_return": round(float(np.mean(returns)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000, help="steps per speed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sb3-steps", type=int, default=150_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    speed = [vector_speed(env_id, n, args.steps, args.rounds) for env_id, n in SPEED_CASES]
    common.table("gymnasium VectorEnv API against the batched twin (steps/s, median)", speed)
    checks = sb3_checks()
    for row in checks:
        print(f"\nSB3 check_env {row['env']}: error {row['error']}")
        for warning in row["warnings"]:
            print(f"  warning: {warning}")
    snake = sb3_dqn_on_snake(args.sb3_steps)
    common.table("SB3 DQN on rlgen's Snake", [snake])
    common.write("gym_interop", {"threads": 1, "command": common.command(), "rounds": args.rounds,
                                 "vector_speed": speed, "sb3_check_env": checks,
                                 "sb3_dqn_snake": snake})


if __name__ == "__main__":
    main()
