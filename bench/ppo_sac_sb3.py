"""rlgen's PPO and SAC on RL Zoo's benchmark, beside Stable-Baselines3's given the same
hyperparameters (read from rlgen's composed config, so both sides get the same numbers),
in the same command. Rows: PPO on CartPole-v1, LunarLander-v3, Pendulum-v1 and
LunarLanderContinuous-v3; SAC on Pendulum-v1 and LunarLanderContinuous-v3, each for RL
Zoo's number of steps.

For each seed the two libraries train side by side, each in a fresh process of its own
with one torch thread, so they share the 2-core machine evenly. Each library's final
model then plays the same 100 episodes (gymnasium's env seeded 10,000-10,099; training
seeds are 0-2) with its deterministic policy, through rlgen's batched player: the mean
return is the figure RL Zoo's table reports. Speed, per run:

- `wall_seconds`: the process's wall time from its start to the end of training
  (imports, config, env building, saves and logging included; the final evaluation not);
- `seconds_per_step`: wall_seconds over the steps trained;
- `seconds_to_score`: the library's own training clock at the first point where the mean
  return of the last 100 training games (SB3's `rollout/ep_rew_mean`, rlgen's alike)
  reaches RL Zoo's score, capped at gymnasium's reward threshold where the env has one
  (a stochastic policy rarely averages CartPole's 500 exactly); checked after every
  rollout for PPO and every 1,000 steps for SAC, on both sides. None: never reached.

A row's seeds may be run apart (`--rows`, `--seeds`): the file keeps the runs of other
rows and seeds from its last version, each stamped with its own date and commit.
Writes bench/results/ppo_sac_sb3.json. Needs the `bench` and `box2d` extras.

    python -m bench.ppo_sac_sb3                                  # every row, seeds 0-2
    python -m bench.ppo_sac_sb3 --rows ppo_cartpole,sac_pendulum --seeds 0
    python -m bench.ppo_sac_sb3 --rows ppo_lunarlander --steps 200000   # a shorter run, said so
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common

EVAL_SEED, EVAL_EPISODES = 10_000, 100
SAC_CHECK_EVERY = 1000
# row: (rlgen experiment, gymnasium env, algorithm, RL Zoo's published mean return, RL Zoo's steps)
ROWS = {"ppo_cartpole": ("cartpole_v1_ppo", "CartPole-v1", "ppo", 500.0, 100_000),
        "ppo_lunarlander": ("lunarlander_ppo", "LunarLander-v3", "ppo", 242.1, 1_000_000),
        "ppo_pendulum": ("pendulum_ppo", "Pendulum-v1", "ppo", -172.2, 100_000),
        "ppo_lunarlander_continuous": ("lunarlander_continuous_ppo", "LunarLanderContinuous-v3",
                                       "ppo", 270.9, 1_000_000),
        "sac_pendulum": ("pendulum_sac", "Pendulum-v1", "sac", -157.0, 20_000),
        "sac_lunarlander_continuous": ("lunarlander_continuous_sac", "LunarLanderContinuous-v3",
                                       "sac", 260.4, 500_000)}


def score_line(env_id: str, zoo_score: float) -> float:
    """The training mean that counts as reaching RL Zoo's score (see the docstring)."""
    import gymnasium

    threshold = gymnasium.spec(env_id).reward_threshold
    return zoo_score if threshold is None else min(zoo_score, threshold)


def sb3_schedule(value):
    """rlgen's lin_X (or a number) as SB3 takes it: a function of the progress left."""
    text = str(value)
    if text.startswith("lin_"):
        start = float(text[4:])
        return lambda left: left * start
    return float(value)


def sb3_settings(cfg) -> dict:
    """The rlgen experiment's hyperparameters in SB3's names."""
    import torch

    algo, model = cfg.algo, cfg.model
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[model.activation]
    hidden = list(model.hidden_sizes)
    if cfg.trainer == "rl.ppo":
        if algo.normalize_observations or algo.normalize_rewards:
            raise SystemExit("bench.ppo_sac_sb3: wrap SB3's envs in VecNormalize for this row")
        return dict(learning_rate=sb3_schedule(algo.lr), n_steps=algo.rollout_steps,
                    batch_size=algo.minibatch_size, n_epochs=algo.epochs, gamma=algo.gamma,
                    gae_lambda=algo.gae_lambda, clip_range=sb3_schedule(algo.clip_range),
                    clip_range_vf=algo.clip_range_vf,
                    normalize_advantage=algo.normalize_advantage, ent_coef=algo.ent_coef,
                    vf_coef=algo.vf_coef, max_grad_norm=algo.max_grad_norm,
                    target_kl=algo.target_kl,
                    policy_kwargs=dict(net_arch=dict(pi=hidden, vf=hidden),
                                       activation_fn=activation, log_std_init=algo.log_std_init,
                                       ortho_init=algo.orthogonal_init))
    ent_coef = str(algo.ent_coef)
    return dict(learning_rate=sb3_schedule(algo.lr), buffer_size=algo.replay_size,
                learning_starts=algo.warmup_steps, batch_size=algo.batch_size, tau=algo.tau,
                gamma=algo.gamma, train_freq=algo.train_every_steps,
                gradient_steps=algo.gradient_steps,
                target_update_interval=algo.target_update_interval,
                ent_coef=ent_coef if ent_coef.startswith("auto") else float(ent_coef),
                target_entropy="auto" if algo.target_entropy is None else algo.target_entropy,
                policy_kwargs=dict(net_arch=hidden, activation_fn=activation))


def deterministic_returns(env_id: str, act) -> dict:
    """The 100 scoring episodes, played at once by rlgen's batched player."""
    from envs.gymnasium_env import GymnasiumEnv
    from rl.play import play_batched

    env = GymnasiumEnv(env_id)
    games = play_batched(env.batched(EVAL_EPISODES, "cpu", seed=EVAL_SEED), act,
                         env.max_steps_per_game)
    returns = games["returns"]
    return {"mean_return": round(returns.mean().item(), 2),
            "std_return": round(returns.std(unbiased=False).item(), 2)}


def sb3_job(row: str, seed: int, steps: int, began: float) -> dict:
    """One SB3 run in this process; its figures."""
    import gymnasium
    import numpy as np
    import torch
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    experiment, env_id, algorithm, zoo_score, _ = ROWS[row]
    cfg = common.compose(f"experiment={experiment}")
    line = score_line(env_id, zoo_score)

    class ScoreClock(BaseCallback):
        """The training clock when the last 100 games' mean first reaches the line."""

        def __init__(self):
            super().__init__()
            self.started, self.reached = time.perf_counter(), None

        def check(self) -> None:
            games = self.model.ep_info_buffer
            if self.reached is None and games and \
                    np.mean([g["r"] for g in games]) >= line:
                self.reached = (self.num_timesteps, time.perf_counter() - self.started)

        def _on_rollout_end(self) -> None:
            if algorithm == "ppo":
                self.check()

        def _on_step(self) -> bool:
            if algorithm == "sac" and self.num_timesteps % SAC_CHECK_EVERY == 0:
                self.check()
            return True

    if algorithm == "ppo":
        model = PPO("MlpPolicy", make_vec_env(env_id, n_envs=cfg.algo.num_envs, seed=seed),
                    seed=seed, device="cpu", verbose=0, **sb3_settings(cfg))
    else:
        model = SAC("MlpPolicy", gymnasium.make(env_id), seed=seed, device="cpu", verbose=0,
                    **sb3_settings(cfg))
    clock = ScoreClock()
    model.learn(total_timesteps=steps, callback=clock)
    train_seconds = time.perf_counter() - clock.started
    wall = time.perf_counter() - began
    model.policy.set_training_mode(False)

    def act(obs):
        actions, _ = model.predict(obs.cpu().numpy(), deterministic=True)
        return torch.as_tensor(actions)

    steps_to, seconds_to = clock.reached or (None, None)
    return {"steps": model.num_timesteps, "train_seconds": round(train_seconds, 2),
            "wall_seconds": round(wall, 2), "steps_to_score": steps_to,
            "seconds_to_score": None if seconds_to is None else round(seconds_to, 2),
            **deterministic_returns(env_id, act)}


def rlgen_job(row: str, seed: int, steps: int, began: float) -> dict:
    """One rlgen run in this process (rlgen-train's own entry, as a user starts it)."""
    import torch

    from nn.checkpoint import load_checkpoint
    from nn.tools.train import main as train_main
    from rl import ppo, sac
    from rl.play import action_bounds

    experiment, env_id, algorithm, zoo_score, _ = ROWS[row]
    line = score_line(env_id, zoo_score)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        sys.argv = ["rlgen-train", f"experiment={experiment}", f"seed={seed}", "threads=1",
                    "device=cpu", f"algo.total_steps={steps}", f"hydra.run.dir={run_dir}"]
        try:
            train_main()
        except SystemExit as ended:
            if ended.code:
                raise
        wall = time.perf_counter() - began
        metrics = json.loads((run_dir / "metrics.json").read_text())
        payload = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    module = ppo if algorithm == "ppo" else sac
    load = ppo.load_agent if algorithm == "ppo" else sac.load_actor
    _, env, network = load(payload, torch.device("cpu"))
    act = module.make_act(network, True, None, action_bounds(env, torch.device("cpu")))
    reached = next((h for h in metrics["history"]
                    if h["mean_return"] is not None and h["mean_return"] >= line), None)
    return {"steps": metrics["steps"], "train_seconds": round(metrics["train_seconds"], 2),
            "wall_seconds": round(wall, 2),
            "steps_to_score": reached["steps"] if reached else None,
            "seconds_to_score": round(reached["train_seconds"], 2) if reached else None,
            **deterministic_returns(env_id, act)}


def side_by_side(row: str, seed: int, steps: int) -> list[dict]:
    """A seed's two runs at once, each in a fresh process of its own."""
    jobs = {library: subprocess.Popen([sys.executable, "-m", "bench.ppo_sac_sb3", "--job",
                                       library, row, str(seed), "--steps", str(steps)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for library in ("rlgen", "stable-baselines3")}
    out = []
    for library, job in jobs.items():
        stdout, stderr = job.communicate()
        if job.returncode:
            raise SystemExit(f"bench.ppo_sac_sb3: {library} {row} seed {seed} failed:\n"
                             f"{stderr[-3000:]}")
        figures = json.loads(stdout.strip().splitlines()[-1])
        out.append({"row": row, "env": ROWS[row][1], "algorithm": ROWS[row][2],
                    "library": library, "seed": seed, "zoo_steps": ROWS[row][4], **figures})
    return out


def ratio(a, b):
    return None if a is None or not b else round(a / b, 3)


def summarize(runs: list[dict]) -> list[dict]:
    """One line per row and seed: both libraries' figures and rlgen's ratios to SB3's."""
    lines = []
    for row, (_, env_id, algorithm, zoo_score, zoo_steps) in ROWS.items():
        seeds = sorted({r["seed"] for r in runs if r["row"] == row})
        for seed in seeds:
            pair = {r["library"]: r for r in runs if r["row"] == row and r["seed"] == seed}
            ours, theirs = pair.get("rlgen"), pair.get("stable-baselines3")
            if not (ours and theirs):
                continue
            lines.append({
                "row": row, "env": env_id, "algorithm": algorithm, "seed": seed,
                "steps": ours["steps"], "zoo_steps": zoo_steps, "zoo_score": zoo_score,
                "rlgen_return": ours["mean_return"], "sb3_return": theirs["mean_return"],
                "rlgen_meets_zoo": ours["mean_return"] >= zoo_score,
                "per_step_ratio": ratio(ours["wall_seconds"] / ours["steps"],
                                        theirs["wall_seconds"] / theirs["steps"]),
                "to_score_ratio": ratio(ours["seconds_to_score"], theirs["seconds_to_score"]),
                "rlgen_seconds_to_score": ours["seconds_to_score"],
                "sb3_seconds_to_score": theirs["seconds_to_score"]})
    return lines


def markdown(results: dict) -> str:
    """docs/results.md's table, from a results file this bench wrote."""
    lines = ["| algorithm, env | steps (RL Zoo's) | RL Zoo | seed | rlgen: final model, "
             "100 episodes | SB3: same | wall time per step rlgen / SB3 | time to the score "
             "rlgen / SB3 (s) | measured (commit) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for line in results["summary"]:
        run = next(r for r in results["runs"] if r["row"] == line["row"]
                   and r["seed"] == line["seed"] and r["library"] == "rlgen")
        ours, theirs = (line[f"{lib}_seconds_to_score"] for lib in ("rlgen", "sb3"))
        to_score = "neither reached it" if ours is None and theirs is None else (
            f"{line['to_score_ratio'] or '-'} ({ours or 'not reached'} / "
            f"{theirs or 'not reached'})")
        lines.append(f"| {line['algorithm'].upper()}, {line['env']} | {line['steps']:,} "
                     f"({line['zoo_steps']:,}) | {line['zoo_score']:g} | {line['seed']} | "
                     f"{line['rlgen_return']:g} | {line['sb3_return']:g} | "
                     f"{line['per_step_ratio']} | {to_score} | {run['date']} "
                     f"({run['commit']}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, help="steps per run (default: RL Zoo's); a "
                        "shorter run is recorded with its own step count")
    parser.add_argument("--job", nargs=3, metavar=("LIBRARY", "ROW", "SEED"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:  # one run, in the fresh process side_by_side started for it
        began = time.perf_counter()
        library, row, seed = args.job
        job = rlgen_job if library == "rlgen" else sb3_job
        figures = job(row, int(seed), args.steps, began)
        print(json.dumps(figures), flush=True)
        return
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown row {unknown[0]!r}: choose from {', '.join(ROWS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    kept = common.read("ppo_sac_sb3").get("runs", [])
    runs = [r for r in kept if not (r["row"] in rows and r["seed"] in seeds)]
    for row in rows:
        for seed in seeds:
            began = time.perf_counter()
            pair = side_by_side(row, seed, args.steps or ROWS[row][4])
            runs += [{**r, **common.stamp(time.perf_counter() - began)} for r in pair]
            print(json.dumps(pair), flush=True)
            summary = summarize(runs)
            # written after every pair, so that a long row's finished seeds are kept
            common.write("ppo_sac_sb3", {
                "threads": "one torch thread per run, a seed's two runs side by side",
                "eval": f"{EVAL_EPISODES} episodes seeded {EVAL_SEED}+i, deterministic "
                        "policy, the final model",
                "summary": summary, "runs": runs})
    common.table("PPO and SAC beside SB3, RL Zoo's settings", summarize(runs))


if __name__ == "__main__":
    main()
