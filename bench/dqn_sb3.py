"""Peer comparison: rlgen's `cartpole_dqn` against Stable-Baselines3's DQN on gymnasium's
CartPole-v1, both with RL Zoo's tuned CartPole DQN settings (the values in
conf/experiment/cartpole_dqn.yaml). For each of 3 seeds: training wall time and env
steps until the mean return of the last 100 games reaches 475, capped at 100,000 steps.
Writes bench/results/dqn_sb3.json. Needs the `bench` extra (stable-baselines3).
(rlgen's cart-pole pays 0 for the failing step where gymnasium's pays 1, so rlgen's
returns are one lower for a game of the same length; both cap games at 500.)

    python -m bench.dqn_sb3
"""

import time

from bench import common
from rl import dqn

MAX_STEPS = 100_000
TARGET = 475
# RL Zoo's hyperparameters for DQN on CartPole-v1
ZOO = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
           gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
           exploration_fraction=0.16, exploration_final_eps=0.04,
           policy_kwargs=dict(net_arch=[256, 256]))


def sb3_run(seed: int) -> dict:
    import gymnasium
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class StopAtTarget(BaseCallback):
        def __init__(self):
            super().__init__()
            self.reached_at = None
            self.best = None
            self.games = 0

        def _on_step(self) -> bool:
            episodes = self.model.ep_info_buffer
            if self.locals["dones"].any() and len(episodes) == 100:
                mean = sum(e["r"] for e in episodes) / 100
                self.best = mean if self.best is None else max(self.best, mean)
                if mean >= TARGET:
                    self.reached_at = self.num_timesteps
                    return False
            return True

    env = gymnasium.make("CartPole-v1")
    # exploration_fraction is a share of the whole run: keep RL Zoo's 8,000 decay steps
    settings = dict(ZOO, exploration_fraction=ZOO["exploration_fraction"] * 50_000 / MAX_STEPS)
    model = DQN("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **settings)
    callback = StopAtTarget()
    t0 = time.perf_counter()
    model.learn(total_timesteps=MAX_STEPS, callback=callback)
    seconds = time.perf_counter() - t0
    return {"library": "stable-baselines3", "seed": seed, "steps_to_475": callback.reached_at,
            "seconds_to_475": round(seconds, 1) if callback.reached_at else None,
            "seconds_run": round(seconds, 1),
            "best_mean_return_100": round(callback.best, 1) if callback.best else None}


def rlgen_run(seed: int) -> dict:
    m = common.train_quiet(dqn.train, "experiment=cartpole_dqn", f"seed={seed}",
                           f"algo.max_frames={MAX_STEPS}")
    reached = m["reached"].get(str(TARGET))
    return {"library": "rlgen", "seed": seed,
            "steps_to_475": reached["frame"] if reached else None,
            "seconds_to_475": reached["seconds"] if reached else None,
            "seconds_run": m["train_seconds"],
            "best_mean_return_100": round(m["best_cumulativeReward100"], 1)
            if m["best_cumulativeReward100"] is not None else None}


def main() -> None:
    rows = [rlgen_run(seed) for seed in range(3)] + [sb3_run(seed) for seed in range(3)]
    common.table(f"DQN on cart-pole, RL Zoo settings: until mean return >= {TARGET} "
                 f"(cap {MAX_STEPS} steps)", rows)
    common.write("dqn_sb3", {"machine": common.machine(), "runs": rows})


if __name__ == "__main__":
    main()
