"""GPU benchmark: every experiment's training throughput on CUDA against the same
experiment on this machine's CPU, in one process, and the batched envs at 65,536 games.
Needs a CUDA device.

    python -m bench.gpu [--seconds 30] [--only rl|generative|scale|resume]

Each experiment runs its own config three ways: on the CPU, on CUDA, and on CUDA with
`bf16=true compile=true`. `--only scale` runs the RL recipes with many more games at
once (CPU vs CUDA), where the GPU's width starts to pay. Rates are steady-state medians
(the first epoch or iteration, which holds start-up and compilation, is left out).
`--only resume` checks that a DQN run split and resumed on CUDA matches a straight one.
Writes bench/results/gpu_<part>.json.
"""

import argparse
import statistics
import time

import torch

from bench import common
from envs.cartpole import CartPoleEnv
from envs.snake import SnakeEnv
from generative import acgan, lstm_text, vae
from rl import dqn, reinforce


def steady(rates: list[float]) -> float:
    return statistics.median(rates[1:] or rates)


def dqn_rate(m: dict) -> float:
    """Frames/s between history records once training has begun (after replay warm-up),
    leaving out the first third of the run."""
    history = m["history"]
    late = [h for h in history if h["seconds"] >= history[-1]["seconds"] / 3]
    first, last = late[0], late[-1]
    return (last["frame"] - first["frame"]) / max(last["seconds"] - first["seconds"], 1e-9)


def experiments(seconds: float) -> dict:
    """name: (train function, overrides, rate of a finished run, unit)."""
    acgan_batch = common.compose("experiment=acgan_fast").algo.batch_size
    return {
        "cartpole_reinforce_fast": (
            reinforce.train, ["algo.iterations=10"],
            lambda m: steady([h["steps_per_second"] for h in m["history"]]), "env steps/s"),
        "snake_dqn_fast": (
            dqn.train, [f"algo.max_seconds={seconds}", "algo.history_every_frames=1"],
            dqn_rate, "frames/s"),
        "snake_dqn_strong": (  # its frames planned from the budget, as in its 30-minute runs
            dqn.train, [f"algo.max_seconds={seconds}", "algo.history_every_frames=1",
                        "algo.eval_every_frames=null"],
            dqn_rate, "frames/s"),
        "lstm_text_fast": (
            lstm_text.train, [f"algo.max_seconds={seconds}", "algo.epochs=1000",
                              "algo.examples_per_epoch=640"],
            lambda m: steady([h["chars_per_second"] for h in m["history"]]), "chars/s"),
        "vae_mnist5k": (
            vae.train, ["algo.epochs=12"],
            lambda m: steady([h["images_per_second"] for h in m["history"]]), "images/s"),
        "acgan_fast": (
            acgan.train, ["algo.epochs=3"],
            lambda m: steady([h["steps_per_second"] for h in m["history"]]) * acgan_batch,
            f"real images/s (batch {acgan_batch})"),
    }


SCALED = {  # the same recipes, wider: where a GPU has work enough per kernel launch
    "cartpole_reinforce_fast": ["algo.games_per_iteration=4096", "algo.iterations=6"],
    "snake_dqn_fast": ["algo.num_envs=1024", "algo.replay_size=1000000",
                       "algo.replay_warmup=20000"],
    "snake_dqn_strong": ["algo.num_envs=4096", "algo.replay_size=1000000",
                         "algo.replay_warmup=20000", "algo.train_every_frames=64",
                         "algo.batch_size=512"],
}

VARIANTS = {"cpu": ("cpu", []), "cuda": ("cuda", []),
            "cuda bf16+compile": ("cuda", ["bf16=true", "compile=true"])}


def env_rate(make, num_envs: int, device: str, steps: int) -> float:
    envs = make().batched(num_envs, device, seed=0)
    envs.reset()
    actions = torch.randint(0, envs.num_actions, (steps + 5, num_envs), device=device)
    for t in range(5):  # warm-up
        _, _, terminated, truncated = envs.step(actions[t])
        envs.reset_done(terminated | truncated)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for t in range(5, steps + 5):
        _, _, terminated, truncated = envs.step(actions[t])
        envs.reset_done(terminated | truncated)
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * num_envs / (time.perf_counter() - t0)


def resume_check() -> None:
    """A tiny DQN run on CUDA, stopped at 400 frames and resumed to 800, against one
    straight run of 800 frames: the CUDA random streams must come back too."""
    import tempfile
    from pathlib import Path

    tiny = ["experiment=snake_dqn", "device=cuda", "model.channels=[8,8]",
           "model.hidden_sizes=[16]", "algo.replay_size=300", "algo.replay_warmup=60",
           "algo.sync_every_frames=100", "algo.num_envs=4", "algo.n_step=2",
           "algo.history_every_frames=1"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        straight = dqn.train(common.compose(*tiny, "algo.max_frames=800"), tmp / "a")
        dqn.train(common.compose(*tiny, "algo.max_frames=400"), tmp / "b")
        resumed = dqn.train(common.compose(*tiny, "algo.max_frames=800",
                                           f"resume={tmp / 'b'}"), tmp / "b")
    same = [h["cumulativeReward100"] for h in straight["history"]] == \
        [h["cumulativeReward100"] for h in resumed["history"]]
    print(f"CUDA DQN split-and-resumed run equals the straight run: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--only", choices=["rl", "generative", "scale", "resume"], default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench.gpu needs a CUDA device; run it on a GPU machine")
    gpu = torch.cuda.get_device_name()
    if args.only == "resume":
        resume_check()
        return
    rows, env_rows = [], []
    if args.only is None or args.only == "rl":
        for name, make in (("cartpole", CartPoleEnv), ("snake", SnakeEnv)):
            cpu = env_rate(make, 65536, "cpu", 20)
            cuda = env_rate(make, 65536, "cuda", 200)
            env_rows.append({"env": name, "games": 65536, "cpu_steps_per_s": round(cpu),
                             "cuda_steps_per_s": round(cuda), "cuda_over_cpu": round(cuda / cpu, 1)})
        common.table("batched envs, 65,536 games, random actions with auto-reset", env_rows)
    rl = {name for name, (train, *_rest) in experiments(args.seconds).items()
          if train in (reinforce.train, dqn.train)}  # every RL recipe, snake_dqn_strong too
    variants = VARIANTS
    for name, (train, overrides, rate, unit) in experiments(args.seconds).items():
        if args.only in ("rl", "scale") and name not in rl or \
                args.only == "generative" and name in rl:
            continue
        if args.only == "scale":
            overrides = overrides + SCALED[name]
            variants = {k: VARIANTS[k] for k in ("cpu", "cuda")}
        row = {"experiment": name, "unit": unit, "overrides": " ".join(overrides)}
        for label, (device, switches) in variants.items():
            t0 = time.perf_counter()
            m = common.train_quiet(train, f"experiment={name}", *overrides, *switches,
                                   device=device)
            row[label] = round(rate(m))
            print(f"{name} {label}: {row[label]} {unit} ({time.perf_counter() - t0:.0f}s)",
                  flush=True)
        row["cuda_over_cpu"] = round(row["cuda"] / row["cpu"], 1)
        if "cuda bf16+compile" in row:
            row["bf16+compile_over_cuda"] = round(row["cuda bf16+compile"] / row["cuda"], 2)
        rows.append(row)
    common.table(f"training throughput, {gpu} vs this machine's CPU", rows)
    common.write(f"gpu_{args.only or 'all'}", {
        "machine": common.machine(), "gpu": gpu, "cpu_threads": torch.get_num_threads(),
        "envs": env_rows, "experiments": rows})


if __name__ == "__main__":
    main()
