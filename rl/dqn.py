"""DQN with replay memory and a target network, for any env with discrete actions.

Reference: tfjs-examples `snake-dqn` (Deep Learning with JavaScript, ch. 11; SPEC
section 2). Book: after several hours cumulativeReward100 peaks around 70-80 and
eaten100 around 12; the greedy agent eats about 18 fruits per game.

The book's loop, made batched: N games step at once (N = 1 is the original); each
step's transitions go to a replay memory on the training device; every
`train_every_frames` frames come `updates_per_train` gradient steps on uniformly
sampled batches against the Bellman target r + discount * max_a Q_target(s', a), where
the discount is 0 after a failing step; the target net copies the online net every
`sync_every_frames` frames. Options used by the improved recipes: Double DQN (the online
net picks the next action, the target net values it), n-step returns, Huber loss,
gradient clipping, a dueling head (in the model config).

`cumulativeReward100` and `eaten100` are means over the last 100 finished games, or
over all finished games while there are fewer than 100 (the original divided by 100
regardless); the best checkpoint is only taken once 100 games have finished.
"""

import copy
import math
import time
from collections import deque
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from nn.checkpoint import save_checkpoint
from nn.config import instantiate
from nn.device import select_device
from nn.errors import UserError
from nn.logger import RunLogger
from nn.seeding import make_generator, seed_everything
from rl.play import EvalArgs, WatchArgs, play_batched, rebuild_agent, report, watch_agent
from rl.replay import NStepWindow, ReplayMemory

__all__ = ["EvalArgs", "WatchArgs", "train", "evaluate", "watch"]


def epsilon_at(frame: int, init: float, final: float, decay_frames: int) -> float:
    """Linear decay from init to final over decay_frames frames, then constant."""
    if frame >= decay_frames:
        return final
    return init + (final - init) * frame / decay_frames


def build_q_network(cfg, env) -> torch.nn.Module:
    return instantiate(cfg.model, in_shape=list(env.observation_space.shape),
                       out_features=int(env.action_space.n))


@torch.no_grad()
def epsilon_greedy(q_network, obs, epsilon: float, generator) -> torch.Tensor:
    q_network.eval()
    q = q_network(obs)
    n, num_actions = q.shape
    explore = torch.rand(n, generator=generator, device=obs.device) < epsilon
    random = torch.randint(num_actions, (n,), generator=generator, device=obs.device)
    return torch.where(explore, random, q.argmax(1))


def td_loss(online, target, batch: dict, double_dqn: bool, loss: str):
    """Loss between Q_online(s, a) and r + discount * Q_target(s', a*)."""
    online.train()  # as the original: batch statistics and dropout for the taken Q
    q_taken = online(batch["obs"]).gather(1, batch["actions"][:, None]).squeeze(1)
    with torch.no_grad():
        next_q = target(batch["next_obs"])
        if double_dqn:
            online.eval()
            best = online(batch["next_obs"]).argmax(1, keepdim=True)
            online.train()
            next_value = next_q.gather(1, best).squeeze(1)
        else:
            next_value = next_q.max(1).values
        y = batch["rewards"] + batch["discounts"] * next_value
    if loss == "mse":
        value = F.mse_loss(q_taken, y)
    elif loss == "huber":
        value = F.smooth_l1_loss(q_taken, y)
    else:
        raise UserError(f"algo.loss={loss!r} is not mse or huber")
    return value, q_taken.detach().mean()


def train(cfg: DictConfig, run_dir: Path) -> dict:
    algo = cfg.algo
    if cfg.resume:
        raise UserError("resume is not supported for DQN runs yet; start a new run")
    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    env = instantiate(cfg.env)
    envs = env.batched(algo.num_envs, device, seed=cfg.seed)
    online = build_q_network(cfg, env).to(device)
    # the original's target net starts with its own random weights (first sync later)
    target = copy.deepcopy(online) if algo.target_init == "copy" else \
        build_q_network(cfg, env).to(device)
    target.eval()
    optimizer = instantiate(algo.optimizer)(online.parameters(), lr=algo.lr)
    memory = ReplayMemory(algo.replay_size, tuple(env.observation_space.shape),
                          envs.observation_dtype, device)
    window = NStepWindow(algo.n_step, algo.gamma)
    generator = make_generator(cfg.seed + 1, device)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    ckpt_dir = run_dir / "checkpoints"
    counts_fruit = hasattr(envs, "eaten")

    def save(name: str, **meta) -> None:
        save_checkpoint(ckpt_dir / f"{name}.pt", experiment=cfg.name, trainer=cfg.trainer,
                        config=resolved, state={"q_network": online.state_dict()}, **meta)

    logger = RunLogger(run_dir, cfg, total=algo.max_frames, unit="frame")
    logger.info(f"training {cfg.name} on {device}: {algo.num_envs} games in parallel, "
                f"up to {algo.max_frames} frames; run dir {run_dir}")
    obs = envs.reset()
    game_return = torch.zeros(algo.num_envs, device=device)
    returns100, eaten100 = deque(maxlen=100), deque(maxlen=100)
    frame = games = updates = 0
    pending_train = 0
    last_sync = 0
    best, best_frame, reached = -math.inf, None, {}
    loss = q_mean = torch.zeros((), device=device)
    start = last_log = time.perf_counter()
    last_log_frame = 0
    history = []
    while frame < algo.max_frames:
        epsilon = epsilon_at(frame, algo.epsilon_init, algo.epsilon_final,
                             algo.epsilon_decay_frames)
        actions = epsilon_greedy(online, obs, epsilon, generator)
        next_obs, reward, terminated, truncated = envs.step(actions)
        ended = terminated | truncated
        game_return += reward
        transition = window.push(obs, actions, reward, next_obs, terminated, ended)
        if transition is not None:
            memory.add(*transition)
        frame += algo.num_envs
        finished = ended.nonzero().flatten()
        if finished.numel():
            returns100.extend(game_return[finished].tolist())
            if counts_fruit:
                eaten100.extend(envs.eaten[finished].tolist())
            games += finished.numel()
            game_return[finished] = 0
        obs = envs.reset_done(ended)

        if len(memory) >= algo.replay_warmup:
            pending_train += algo.num_envs
            while pending_train >= algo.train_every_frames:
                pending_train -= algo.train_every_frames
                for _ in range(algo.updates_per_train):
                    batch = memory.sample(algo.batch_size, generator,
                                          algo.sample_without_replacement)
                    loss, q_mean = td_loss(online, target, batch, algo.double_dqn, algo.loss)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if algo.max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(online.parameters(), algo.max_grad_norm)
                    optimizer.step()
                    updates += 1
            if frame // algo.sync_every_frames > last_sync:
                last_sync = frame // algo.sync_every_frames
                target.load_state_dict(online.state_dict())

        if finished.numel():
            now = time.perf_counter()
            mean_return = sum(returns100) / len(returns100)
            values = {"cumulativeReward100": mean_return, "epsilon": epsilon,
                      "framesPerSecond": (frame - last_log_frame) / max(now - last_log, 1e-9)}
            if counts_fruit:
                values["eaten100"] = sum(eaten100) / len(eaten100)
            if updates:
                values["loss"], values["q_mean"] = loss.item(), q_mean.item()
                if not math.isfinite(values["loss"]):
                    raise UserError(f"loss became {values['loss']} at frame {frame}; the best "
                                    f"checkpoint so far is kept; try a smaller algo.lr")
            logger.scalars(frame, values)
            logger.progress(frame - last_log_frame, reward100=mean_return,
                            **({"eaten100": values["eaten100"]} if counts_fruit else {}),
                            eps=epsilon)
            last_log, last_log_frame = now, frame
            elapsed = now - start
            full = len(returns100) == 100
            record = {"frame": frame, "games": games, "seconds": round(elapsed, 2),
                      "cumulativeReward100": round(mean_return, 3),
                      "eaten100": round(values.get("eaten100", 0.0), 3)}
            if not history or frame - history[-1]["frame"] >= algo.history_every_frames:
                history.append(record)
            for level in algo.report_reward100_levels:
                if full and mean_return >= level and f"{level:g}" not in reached:
                    reached[f"{level:g}"] = record
            if full and mean_return > best:
                best, best_frame = mean_return, frame
                save("best", frame=frame, cumulativeReward100=mean_return, games=games)
            if full and algo.stop_reward100 is not None and mean_return >= algo.stop_reward100:
                break
            if algo.max_seconds is not None and elapsed >= algo.max_seconds:
                break
    elapsed = time.perf_counter() - start
    save("last", frame=frame, cumulativeReward100=best, games=games)
    if best_frame is None:  # fewer than 100 games: the last weights are the best we have
        save("best", frame=frame, cumulativeReward100=None, games=games)
    metrics = {
        "experiment": cfg.name, "seed": cfg.seed, "device": str(device), "frames": frame,
        "games": games, "updates": updates, "train_seconds": round(elapsed, 2),
        "frames_per_second": round(frame / max(elapsed, 1e-9), 1),
        "final_cumulativeReward100": sum(returns100) / len(returns100) if returns100 else None,
        "final_eaten100": sum(eaten100) / len(eaten100) if eaten100 else None,
        "best_cumulativeReward100": best if best_frame is not None else None,
        "best_frame": best_frame, "reached": reached, "history": history,
    }
    logger.finish(metrics, {"best_cumulativeReward100": metrics["best_cumulativeReward100"],
                            "final_eaten100": metrics["final_eaten100"]})
    best_text = f"{best:.1f}" if best_frame is not None else "n/a (under 100 games)"
    print(f"{cfg.name} seed {cfg.seed}: {frame} frames, {games} games in {elapsed:.0f}s "
          f"({metrics['frames_per_second']:.0f} frames/s), best cumulativeReward100 "
          f"{best_text}; run dir {run_dir}", flush=True)
    return metrics


def load_q_network(payload: dict, device: torch.device):
    return rebuild_agent(payload, build_q_network, "q_network", device)


def evaluate(payload: dict, args) -> dict:
    """Greedy play (epsilon 0) of `episodes` games at once; one JSON line."""
    device = select_device(args.device)
    cfg, env, q_network = load_q_network(payload, device)
    max_steps = args.max_steps or cfg.env.max_steps_per_game or 10_000
    if args.episodes < 1:
        raise UserError("episodes must be at least 1")
    envs = env.batched(args.episodes, device, seed=args.seed)

    @torch.no_grad()
    def act(obs):
        return q_network(obs).argmax(1)

    games = play_batched(envs, act, max_steps)
    summary = {"experiment": payload["experiment"], "checkpoint": args.checkpoint,
               "frame": payload["meta"].get("frame"), "episodes": args.episodes,
               "max_steps_per_game": max_steps,
               "mean_return": round(games["returns"].mean().item(), 3),
               "mean_steps": round(games["steps"].float().mean().item(), 2)}
    if "eaten" in games:
        summary["mean_fruits"] = round(games["eaten"].float().mean().item(), 3)
        summary["max_fruits"] = int(games["eaten"].max())
    if "length" in games:
        summary["mean_length"] = round(games["length"].float().mean().item(), 3)
    report(summary)
    return summary


def watch(payload: dict, args) -> dict:
    """Greedy play in a window, each move's Q values shaded on the board (Snake)."""
    cfg, _, q_network = load_q_network(payload, torch.device("cpu"))
    env_cfg = OmegaConf.merge(cfg.env, {"max_steps_per_game": args.max_steps})

    @torch.no_grad()
    def choose(env, obs):
        q = q_network(torch.as_tensor(obs)[None])[0]
        env.q_values = q.tolist()
        return int(q.argmax())

    return watch_agent(lambda render_mode: instantiate(env_cfg, render_mode=render_mode),
                       choose, args)
