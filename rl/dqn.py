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
gradient clipping, a dueling head (in the model config), prioritized replay, batches
in which half the transitions are mirrored (`mirror`: for envs whose rules are
left-right symmetric, a free second view of every transition). With `eval_every_frames` set,
the greedy agent (epsilon 0) plays `eval_games` fresh games that often, each capped at
`eval_max_steps`; the best of those evaluations is kept as `checkpoints/best_eval`,
since the training games' return, played with exploration, ranks checkpoints noisily.

`cumulativeReward100` and `eaten100` are means over the last 100 finished games, or
over all finished games while there are fewer than 100 (the original divided by 100
regardless); the best checkpoint is only taken once 100 games have finished.
"""

import copy
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from nn.checkpoint import load_weights, resume_payload, save_checkpoint
from nn.config import instantiate, plain
from nn.device import maybe_compile, mixed_precision, select_device
from nn.errors import UserError
from nn.logger import RunLogger
from nn.preemption import GracefulStop
from nn.seeding import global_rng_state, make_generator, seed_everything, set_global_rng_state
from rl.play import EvalArgs, WatchArgs, play_batched, rebuild_agent, report, watch_agent
from rl.replay import NStepWindow, PrioritizedReplayMemory, ReplayMemory

__all__ = ["EvalArgs", "WatchArgs", "train", "evaluate", "watch"]


def linear_decay(frame: int, init: float, final: float, decay_frames: int) -> float:
    """Linear decay from init to final over decay_frames frames, then constant (epsilon,
    and the learning rate where it decays)."""
    if frame >= decay_frames:
        return final
    return init + (final - init) * frame / decay_frames


def build_q_network(cfg, env) -> torch.nn.Module:
    return instantiate(cfg.model, in_shape=list(env.observation_space.shape),
                       out_features=int(env.action_space.n))


def set_training(module: torch.nn.Module, training: bool) -> None:
    """module.train(training), skipped when already so (it walks every submodule)."""
    if module.training != training:
        module.train(training)


@torch.no_grad()
def epsilon_greedy(q_network, obs, epsilon: float, generator) -> torch.Tensor:
    set_training(q_network, False)
    q = q_network(obs).float()
    n, num_actions = q.shape
    explore = torch.rand(n, generator=generator, device=obs.device) < epsilon
    random = torch.randint(num_actions, (n,), generator=generator, device=obs.device)
    return torch.where(explore, random, q.argmax(1))


def td_loss(online, batch: dict, double_dqn: bool, loss: str):
    """Loss between Q_online(s, a) and r + discount * Q_target(s', a*); batch["next_q"]
    holds the target net's values at s' (see `training_batches`), batch["weights"], when
    there, each transition's importance weight (prioritized replay). Returns the loss,
    the mean Q taken and the TD errors."""
    set_training(online, True)  # as the original: batch statistics and dropout for the taken Q
    q_taken = online(batch["obs"]).float().gather(1, batch["actions"][:, None]).squeeze(1)
    with torch.no_grad():
        next_q = batch["next_q"]
        if double_dqn:
            set_training(online, False)
            best = online(batch["next_obs"]).argmax(1, keepdim=True)
            set_training(online, True)
            next_value = next_q.gather(1, best).squeeze(1)
        else:
            next_value = next_q.max(1).values
        y = batch["rewards"] + batch["discounts"] * next_value
    if loss == "mse":
        each = F.mse_loss(q_taken, y, reduction="none")
    elif loss == "huber":
        each = F.smooth_l1_loss(q_taken, y, reduction="none")
    else:
        raise UserError(f"algo.loss={loss!r} is not mse or huber")
    value = (each * batch["weights"]).mean() if "weights" in batch else each.mean()
    return value, q_taken.detach().mean(), y - q_taken.detach()


@torch.no_grad()
def training_batches(memory, target, updates: int, algo, generator, autocast,
                     mirrored=None, beta: float | None = None) -> list[dict]:
    """The batches of the next `updates` updates, drawn at once. The target net does not
    change between syncs, which come after the updates, so its values at s' are computed
    for all of them in one forward pass (RL Zoo's cart-pole: 128 updates between syncs).
    With `mirrored` (the env's mirror symmetry), each transition is replaced by its
    mirror image with probability one half. `beta`: prioritized replay's exponent of the
    importance weights."""
    batch = memory.sample(algo.batch_size, generator, algo.sample_without_replacement, updates,
                          **({} if beta is None else {"beta": beta}))
    if mirrored is not None:
        flip = torch.rand(batch["actions"].shape[0], generator=generator,
                          device=batch["actions"].device) < 0.5
        obs, actions = mirrored(batch["obs"], batch["actions"])
        next_obs, _ = mirrored(batch["next_obs"], batch["actions"])
        shape = (-1, *[1] * (obs.dim() - 1))
        batch["obs"] = torch.where(flip.view(shape), obs, batch["obs"])
        batch["next_obs"] = torch.where(flip.view(shape), next_obs, batch["next_obs"])
        batch["actions"] = torch.where(flip, actions, batch["actions"])
    with autocast:
        batch["next_q"] = target(batch["next_obs"]).float()
    parts = {name: value.split(algo.batch_size) for name, value in batch.items()}
    return [{name: parts[name][k] for name in parts} for k in range(updates)]


@dataclass
class LoopState:
    """The training loop's counters and records: with the tensors (nets, optimizer,
    replay memory, games, random streams) all a resumed run needs."""
    frame: int = 0
    games: int = 0
    updates: int = 0
    pending_train: int = 0  # frames played since the last training step
    last_sync: int = 0  # target syncs so far
    best: float | None = None  # best cumulativeReward100 over 100 full games
    best_frame: int | None = None
    evals: int = 0  # greedy evaluations so far
    best_eval: float | None = None  # best greedy mean return
    eval_seconds: float = 0.0  # time spent in greedy evaluations
    eval_history: list = field(default_factory=list)
    reached: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    returns100: deque = field(default_factory=lambda: deque(maxlen=100))
    eaten100: deque = field(default_factory=lambda: deque(maxlen=100))
    train_seconds: float = 0.0

    def to_meta(self) -> dict:  # plain lists: checkpoints hold no other Python types
        return {**vars(self), "returns100": list(self.returns100),
                "eaten100": list(self.eaten100)}

    @classmethod
    def from_meta(cls, meta: dict) -> "LoopState":
        return cls(**{**meta, "returns100": deque(meta["returns100"], maxlen=100),
                      "eaten100": deque(meta["eaten100"], maxlen=100)})


def train(cfg: DictConfig, run_dir: Path) -> dict:
    algo = plain(cfg.algo)
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
    memory_args = (algo.replay_size, tuple(env.observation_space.shape),
                   envs.observation_dtype, device)
    if algo.prioritized and algo.sample_without_replacement:
        raise UserError("prioritized replay draws with replacement: set "
                        "algo.sample_without_replacement=false or algo.prioritized=false")
    memory = PrioritizedReplayMemory(*memory_args, algo.priority_alpha) \
        if algo.prioritized else ReplayMemory(*memory_args)
    window = NStepWindow(algo.n_step, algo.gamma)
    generator = make_generator(cfg.seed + 1, device)
    autocast = mixed_precision(device, cfg.bf16)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    ckpt_dir = run_dir / "checkpoints"
    counts_fruit = hasattr(envs, "eaten")
    if algo.mirror and not hasattr(env, "mirrored"):
        raise UserError(f"algo.mirror=true needs an env with a mirror symmetry; "
                        f"{type(env).__name__} has none: set algo.mirror=false")
    mirrored = env.mirrored if algo.mirror else None
    obs = envs.reset()
    game_return = torch.zeros(algo.num_envs, device=device)
    loss = q_mean = torch.zeros((), device=device)
    loop = LoopState()

    if cfg.resume:
        payload = resume_payload(cfg.resume, cfg.name)
        state = payload["state"]
        if "memory" not in state:
            raise UserError(f"{cfg.resume} holds no replay memory (an older rlgen wrote it); "
                            "start a new run")
        load_weights(online, payload, "q_network")
        load_weights(target, payload, "target")
        optimizer.load_state_dict(state["optimizer"])
        memory.load_state_dict(state["memory"])
        window.load_state_dict(state["window"], device)
        envs.load_state_dict(state["envs"])
        obs, game_return = state["obs"].to(device), state["game_return"].to(device)
        loss, q_mean = state["loss"].to(device), state["q_mean"].to(device)
        generator.set_state(state["sampler_rng"])
        set_global_rng_state(state["torch_rng"])
        loop = LoopState.from_meta(payload["meta"]["loop"])
    maybe_compile(online, cfg.compile)
    maybe_compile(target, cfg.compile)

    def save(name: str, **meta) -> None:
        save_checkpoint(ckpt_dir / f"{name}.pt", experiment=cfg.name, trainer=cfg.trainer,
                        config=resolved, state={"q_network": online.state_dict()}, **meta)

    def save_everything() -> None:
        """`last`: the weights and everything else the loop holds, so resume goes on
        exactly as if never stopped."""
        state = {"q_network": online.state_dict(), "target": target.state_dict(),
                 "optimizer": optimizer.state_dict(), "memory": memory.state_dict(),
                 "window": window.state_dict(), "envs": envs.state_dict(), "obs": obs,
                 "game_return": game_return, "loss": loss, "q_mean": q_mean,
                 "sampler_rng": generator.get_state(), "torch_rng": global_rng_state()}
        save_checkpoint(ckpt_dir / "last.pt", experiment=cfg.name, trainer=cfg.trainer,
                        config=resolved, state=state, frame=loop.frame, games=loop.games,
                        cumulativeReward100=loop.best, loop=loop.to_meta())

    def evaluate_greedily() -> dict:
        """Greedy games; `seconds` is the training time so far, evaluations left out."""
        began = time.perf_counter()
        seconds = began - start - loop.eval_seconds
        # a fresh env with a fixed seed: every evaluation starts from the same boards, and
        # resume has no evaluation stream to restore
        eval_envs = env.batched(algo.eval_games, device, seed=cfg.seed + 1000)
        set_training(online, False)
        with autocast:
            games = play_batched(eval_envs, lambda o: online(o).float().argmax(1),
                                 algo.eval_max_steps)
        loop.eval_seconds += time.perf_counter() - began
        return {"frame": loop.frame, "seconds": round(seconds, 2), **mean_figures(games)}

    logger = RunLogger(run_dir, cfg, total=algo.max_frames, unit="frame", initial=loop.frame,
                       purge_step=loop.frame + 1 if loop.frame else None)
    logger.info(f"training {cfg.name} on {device}: {algo.num_envs} games in parallel, "
                f"up to {algo.max_frames} frames; run dir {run_dir}")
    start = last_log = last_save = time.perf_counter() - loop.train_seconds
    last_log_frame = loop.frame
    stop, stopped = GracefulStop.install(), None
    while loop.frame < algo.max_frames:
        epsilon = linear_decay(loop.frame, algo.epsilon_init, algo.epsilon_final,
                               algo.epsilon_decay_frames)
        with autocast:
            actions = epsilon_greedy(online, obs, epsilon, generator)
        next_obs, reward, terminated, truncated = envs.step(actions)
        ended = terminated | truncated
        game_return += reward
        transition = window.push(obs, actions, reward, next_obs, terminated, ended)
        if transition is not None:
            memory.add(*transition)
        loop.frame += algo.num_envs
        finished = ended.nonzero().flatten()
        if finished.numel():
            loop.returns100.extend(game_return[finished].tolist())
            if counts_fruit:
                loop.eaten100.extend(envs.eaten[finished].tolist())
            loop.games += finished.numel()
            game_return[finished] = 0
        obs = envs.reset_done(ended)

        if len(memory) >= algo.replay_warmup:
            loop.pending_train += algo.num_envs
            phases, loop.pending_train = divmod(loop.pending_train, algo.train_every_frames)
            if phases:
                if algo.lr_final is not None:
                    for group in optimizer.param_groups:
                        group["lr"] = linear_decay(loop.frame, algo.lr, algo.lr_final,
                                                   algo.lr_decay_frames)
                beta = linear_decay(loop.frame, algo.priority_beta_init, 1.0,
                                    algo.priority_beta_frames) if algo.prioritized else None
                for batch in training_batches(memory, target, phases * algo.updates_per_train,
                                              algo, generator, autocast, mirrored, beta):
                    with autocast:
                        loss, q_mean, td_errors = td_loss(online, batch, algo.double_dqn,
                                                          algo.loss)
                    if algo.prioritized:
                        memory.update_priorities(batch["index"], td_errors)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if algo.max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(online.parameters(), algo.max_grad_norm)
                    optimizer.step()
                    loop.updates += 1
            if loop.frame // algo.sync_every_frames > loop.last_sync:
                loop.last_sync = loop.frame // algo.sync_every_frames
                target.load_state_dict(online.state_dict())

        if algo.eval_every_frames and loop.frame // algo.eval_every_frames > loop.evals:
            loop.evals = loop.frame // algo.eval_every_frames
            record = evaluate_greedily()
            loop.eval_history.append(record)
            logger.scalars(loop.frame, {f"eval/{key}": value for key, value in record.items()
                                        if key.startswith("mean_")})
            if loop.best_eval is None or record["mean_return"] > loop.best_eval:
                loop.best_eval = record["mean_return"]
                save("best_eval", **record)
            if algo.stop_eval_return is not None and \
                    record["mean_return"] >= algo.stop_eval_return:
                break

        now = time.perf_counter()
        loop.train_seconds = now - start
        if finished.numel():
            mean_return = sum(loop.returns100) / len(loop.returns100)
            values = {"cumulativeReward100": mean_return, "epsilon": epsilon,
                      "framesPerSecond": (loop.frame - last_log_frame) / max(now - last_log,
                                                                             1e-9)}
            if counts_fruit:
                values["eaten100"] = sum(loop.eaten100) / len(loop.eaten100)
            if loop.updates:
                values["loss"], values["q_mean"] = loss.item(), q_mean.item()
                if not math.isfinite(values["loss"]):
                    raise UserError(f"loss became {values['loss']} at frame {loop.frame}; the "
                                    f"last good checkpoints in {ckpt_dir} are kept; try a "
                                    "smaller algo.lr")
            logger.scalars(loop.frame, values)
            logger.progress(loop.frame - last_log_frame, reward100=mean_return,
                            **({"eaten100": values["eaten100"]} if counts_fruit else {}),
                            eps=epsilon)
            last_log, last_log_frame = now, loop.frame
            full = len(loop.returns100) == 100
            record = {"frame": loop.frame, "games": loop.games,
                      "seconds": round(loop.train_seconds, 2),
                      "cumulativeReward100": round(mean_return, 3),
                      "eaten100": round(values.get("eaten100", 0.0), 3)}
            if not loop.history or \
                    loop.frame - loop.history[-1]["frame"] >= algo.history_every_frames:
                loop.history.append(record)
            for level in algo.report_reward100_levels:
                if full and mean_return >= level and f"{level:g}" not in loop.reached:
                    loop.reached[f"{level:g}"] = record
            if full and (loop.best is None or mean_return > loop.best):
                loop.best, loop.best_frame = mean_return, loop.frame
                save("best", frame=loop.frame, cumulativeReward100=mean_return,
                     games=loop.games)
            if full and algo.stop_reward100 is not None and mean_return >= algo.stop_reward100:
                break
            if algo.max_seconds is not None and loop.train_seconds >= algo.max_seconds:
                break
        if stop.requested:
            stopped = stop.message(f"frame {loop.frame}", run_dir)
            break
        if now - last_save >= algo.checkpoint_every_seconds:
            save_everything()
            last_save = time.perf_counter()
    stop.restore()
    save_everything()
    if loop.best_frame is None:  # fewer than 100 games: the last weights are the best we have
        save("best", frame=loop.frame, cumulativeReward100=None, games=loop.games)
    elapsed = loop.train_seconds
    metrics = {
        "experiment": cfg.name, "seed": cfg.seed, "device": str(device), "frames": loop.frame,
        "games": loop.games, "updates": loop.updates, "train_seconds": round(elapsed, 2),
        "frames_per_second": round(loop.frame / max(elapsed, 1e-9), 1),
        "final_cumulativeReward100": (sum(loop.returns100) / len(loop.returns100)
                                      if loop.returns100 else None),
        "final_eaten100": (sum(loop.eaten100) / len(loop.eaten100)
                           if loop.eaten100 else None),
        "best_cumulativeReward100": loop.best, "best_frame": loop.best_frame,
        "best_eval_return": loop.best_eval, "eval_history": loop.eval_history,
        "reached": loop.reached, "status": "stopped" if stopped else "finished",
        "history": loop.history,
    }
    best_text = f"{loop.best:.1f}" if loop.best is not None else "n/a (under 100 games)"
    summary = (f"{cfg.name} seed {cfg.seed}: {loop.frame} frames, {loop.games} games in "
               f"{elapsed:.0f}s ({metrics['frames_per_second']:.0f} frames/s), best "
               f"cumulativeReward100 {best_text}"
               + (f", best greedy evaluation {loop.best_eval:.1f}" if loop.best_eval is not None
                  else "") + f"; run dir {run_dir}")
    logger.finish(metrics, {"best_cumulativeReward100": metrics["best_cumulativeReward100"],
                            "final_eaten100": metrics["final_eaten100"]},
                  summary=summary, stopped=stopped)
    return metrics


def mean_figures(games: dict) -> dict:
    """Means over finished greedy games (from `play_batched`): return, steps, fruits."""
    figures = {"mean_return": round(games["returns"].mean().item(), 3),
               "mean_steps": round(games["steps"].float().mean().item(), 2)}
    if "eaten" in games:
        figures["mean_fruits"] = round(games["eaten"].float().mean().item(), 3)
    return figures


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
               "max_steps_per_game": max_steps, **mean_figures(games)}
    if "eaten" in games:
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
