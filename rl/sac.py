"""Soft Actor-Critic (Haarnoja et al. 2018), for Box actions with finite bounds.

The recipe is Stable-Baselines3's SAC, with RL Zoo's tuned settings as the defaults of
each experiment (conf/experiment/*_sac.yaml). One env step of the loop:

1. act: uniform random actions for the first `warmup_steps`, then a sample of the
   actor, a Gaussian squashed by tanh into [-1, 1] and scaled to the env's bounds;
2. store the transition in the replay memory (rl/replay.py) with the bootstrap
   discount gamma, or 0 where the game failed (a game cut by its step limit did not
   fail: its last state still bootstraps);
3. every `train_every_steps` steps, `gradient_steps` updates on sampled batches: the
   temperature towards the target entropy (-dim(actions) by default), the twin Q
   networks towards r + discount * (min of the two target Qs - alpha * log pi) at an
   action the actor samples for the next state, then the actor towards the smaller Q
   less alpha * log pi; the targets follow the Q networks by Polyak averaging.

The log-probability of a squashed sample carries the change of variables:
log pi(a) = log N(u) - sum log(1 - tanh(u)^2), written as 2 (log 2 - u - softplus(-2u))
so that it stays finite where tanh saturates.
"""

import copy
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import MISSING, DictConfig

from nn.config import instantiate, plain
from nn.device import select_device
from nn.errors import UserError
from nn.export import Network
from nn.memory import build_network
from nn.run import Run
from nn.schema import above, at_least, between, positive, schedule
from nn.seeding import make_generator
from rl.dqn_bookkeeping import GameStats
from rl.play import (
    EvalArgs,
    WatchArgs,
    action_bounds,
    check_action_space,
    check_model_fits,
    choose_by,
    env_manifest,
    evaluate_policy,
    log_game_video,
    rebuild_agent,
    sample_observations,
    watch_policy,
)
from rl.replay import ReplayMemory, check_memory_fits


@dataclass
class SACConfig:
    total_steps: int = at_least(1)  # env steps of all games together (RL Zoo's n_timesteps)
    num_envs: int = at_least(1)  # games played at once
    replay_size: int = at_least(1)  # (buffer_size)
    warmup_steps: int = at_least(0)  # random actions before learning starts (learning_starts)
    batch_size: int = at_least(1)
    gamma: float = between(0, 1)
    tau: float = between(0, 1)  # Polyak: target <- tau * online + (1 - tau) * target
    lr: Any = MISSING  # a number, or lin_X: X falling linearly to 0 over the run (RL Zoo)
    train_every_steps: int = at_least(1)  # steps of the games between trainings (train_freq)
    gradient_steps: int = at_least(1)  # updates at each training
    target_update_interval: int = at_least(1)  # updates between Polyak steps
    ent_coef: Any = MISSING  # auto, auto_X (tuned, starting at X) or a fixed number
    target_entropy: float | None = None  # null: -dim(actions), SB3's "auto"
    log_std_min: float = MISSING  # the actor's log std is clamped to this range
    log_std_max: float = MISSING
    optimizer: Any = MISSING  # a `_partial_: true` torch.optim target; lr comes from `lr`
    history_every_steps: int = at_least(1)  # steps between records, logs and checkpoints
    target_mean_return: float | None = None  # "solved" level reported in metrics.json
    stop_mean_return: float | None = None  # end once the last 100 games' mean reaches it
    video_every_steps: int | None = at_least(1, None)
    checkpoint_every_seconds: float = above(0)  # `last` (replay memory too) for resume after a crash


SCHEMAS = {"algo/sac_schema": SACConfig}

# rlgen-plot's default curve: the mean return of the last 100 games
CURVES = ("rollout/ep_rew_mean",)

__all__ = ["EvalArgs", "WatchArgs", "train", "evaluate", "watch", "export"]


def temperature_start(ent_coef) -> tuple[float, bool]:
    """The entropy temperature alpha to start from, and whether it is tuned."""
    text = str(ent_coef)
    tuned = text.startswith("auto")
    start = positive((text[5:] or "1.0") if tuned else text)
    if start is None:
        raise UserError(f"algo.ent_coef={ent_coef!r} is not auto, auto_X (tuned from X) or a "
                        "number, each above 0; e.g. algo.ent_coef=auto")
    return start, tuned


class Actor(torch.nn.Module):
    """Observations to a Gaussian over pre-squash actions. `forward` is what the export
    and the read-back tools run: the greedy action in the env's bounds, with the
    Gaussian's mean and (clamped) log std, from which a caller may sample."""

    def __init__(self, body, action_dim: int, low, high, log_std_min: float,
                 log_std_max: float):
        super().__init__()
        self.body, self.action_dim = body, action_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.register_buffer("centre", (torch.as_tensor(high) + torch.as_tensor(low)) / 2)
        self.register_buffer("half_range", (torch.as_tensor(high) - torch.as_tensor(low)) / 2)

    def gaussian(self, obs: torch.Tensor):
        mean, log_std = self.body(obs.float()).chunk(2, -1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def in_bounds(self, squashed: torch.Tensor) -> torch.Tensor:
        """An action in [-1, 1] scaled to the env's bounds."""
        return self.centre + self.half_range * squashed

    def forward(self, obs: torch.Tensor):
        mean, log_std = self.gaussian(obs)
        return self.in_bounds(torch.tanh(mean)), mean, log_std

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None):
        """A squashed sample in [-1, 1] and its log-probability (drawn from `generator`,
        so that a resumed run draws the same)."""
        mean, log_std = self.gaussian(obs)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        pre = mean + log_std.exp() * noise
        log_prob = torch.distributions.Normal(mean, log_std.exp()).log_prob(pre).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - pre - F.softplus(-2 * pre))).sum(-1)
        return torch.tanh(pre), log_prob


class Critic(torch.nn.Module):
    """Q(s, a): the observation, flattened, beside the squashed action."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([obs.float().flatten(1), action], -1)).squeeze(-1)


def build_actor(cfg, env) -> Actor:
    space, shape = env.action_space, list(env.observation_space.shape)
    dim = int(math.prod(space.shape))
    body = build_network(cfg.model, in_shape=shape, out_features=2 * dim)
    return Actor(body, dim, space.low.reshape(-1), space.high.reshape(-1), cfg.algo.log_std_min,
                 cfg.algo.log_std_max)


def build_critic(cfg, env) -> Critic:
    inputs = math.prod(env.observation_space.shape) + math.prod(env.action_space.shape)
    return Critic(build_network(cfg.model, in_shape=[inputs], out_features=1))


def learn(actor, critics, targets, optimizers: dict, log_alpha, batch: dict, algo, generator,
          target_entropy: float, tuned: bool) -> dict:
    """One update of the temperature, the twin Q networks and the actor (SB3's order)."""
    obs, actions, next_obs = batch["obs"], batch["actions"], batch["next_obs"]
    sampled, log_prob = actor.sample(obs, generator)
    alpha = log_alpha.detach().exp()
    figures = {}
    if tuned:
        alpha_loss = -(log_alpha * (log_prob + target_entropy).detach()).mean()
        optimizers["alpha"].zero_grad(set_to_none=True)
        alpha_loss.backward()
        optimizers["alpha"].step()
        figures["ent_coef_loss"] = alpha_loss.item()
    with torch.no_grad():
        next_actions, next_log_prob = actor.sample(next_obs, generator)
        next_q = torch.min(*(target(next_obs, next_actions) for target in targets))
        y = batch["rewards"] + batch["discounts"] * (next_q - alpha * next_log_prob)
    q_values = [critic(obs, actions) for critic in critics]
    critic_loss = 0.5 * sum(F.mse_loss(q, y) for q in q_values)
    optimizers["critics"].zero_grad(set_to_none=True)
    critic_loss.backward()
    optimizers["critics"].step()
    # the actor's loss reaches the Q networks' weights: no gradients for them (they would
    # be thrown away), only through them to the sampled actions
    critics.requires_grad_(False)
    q_policy = torch.min(*(critic(obs, sampled) for critic in critics))
    actor_loss = (alpha * log_prob - q_policy).mean()
    optimizers["actor"].zero_grad(set_to_none=True)
    actor_loss.backward()
    optimizers["actor"].step()
    critics.requires_grad_(True)
    return {**figures, "critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(),
            "ent_coef": alpha.item(), "q_mean": q_values[0].mean().item()}


@torch.no_grad()
def polyak(online: torch.nn.ModuleList, target: torch.nn.ModuleList, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, every parameter at once."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


def check_config(cfg: DictConfig) -> None:
    """Settings refused before a run dir is made."""
    algo = cfg.algo
    temperature_start(algo.ent_coef)
    schedule(algo.lr, "lr")
    env = instantiate(cfg.env)
    check_action_space(env, ("bounded box",), "SAC")
    dtype = torch.uint8 if env.observation_space.dtype == "uint8" else torch.float32
    check_memory_fits(algo.replay_size, env.observation_space.shape, dtype,
                      select_device(cfg.device))
    check_model_fits(cfg, env, build_actor, (
        (algo.batch_size, "a learning step's forward passes", "a smaller algo.batch_size"),))
    env.close()


def train(cfg: DictConfig, run_dir: Path) -> dict:
    algo = plain(cfg.algo)
    check_config(cfg)
    run = Run(cfg, run_dir)  # picks the device, seeds everything
    device = run.device
    env = instantiate(cfg.env)
    envs = env.batched(algo.num_envs, device, seed=cfg.seed)
    actor = build_actor(cfg, env).to(device)
    critics = torch.nn.ModuleList([build_critic(cfg, env) for _ in range(2)]).to(device)
    targets = copy.deepcopy(critics).requires_grad_(False)
    start, tuned = temperature_start(algo.ent_coef)
    log_alpha = torch.tensor(math.log(start), device=device, requires_grad=tuned)
    lr_at = schedule(algo.lr, "lr")
    optimizers = {name: instantiate(algo.optimizer)(params, lr=lr_at(1.0)) for name, params in
                  (("actor", actor.parameters()), ("critics", critics.parameters()),
                   ("alpha", [log_alpha]))}
    target_entropy = algo.target_entropy if algo.target_entropy is not None else -actor.action_dim
    memory = ReplayMemory(algo.replay_size, tuple(env.observation_space.shape),
                          envs.observation_dtype, device, (actor.action_dim,))
    generator = make_generator(cfg.seed + 1, device)
    stats = GameStats(envs.counters, algo.num_envs, device)
    loop = run.keep({"steps": 0, "updates": 0, "best_mean_return": -math.inf, "history": [],
                     "train_seconds": 0.0, "figures": {}, "obs": envs.reset()},
                    policy=actor, critics=critics, targets=targets, log_alpha=log_alpha,
                    memory=memory, envs=envs, stats=stats, sampler_rng=generator,
                    **{f"optimizer_{name}": o for name, o in optimizers.items()})
    if run.resumed and not envs.restores_games:  # a gymnasium env's games are not saved
        loop.obs = envs.reset()
    logger = run.open_logger(algo.total_steps, "step", done=loop.steps)
    logger.info(f"training {cfg.name} on {device}: {algo.total_steps} steps of {algo.num_envs} "
                f"games; run dir {run_dir}")
    began, at_start = time.perf_counter(), loop.train_seconds
    while loop.steps < algo.total_steps:
        # act: random actions while warming up, then the actor's samples
        with torch.no_grad():
            if loop.steps < algo.warmup_steps:
                squashed = torch.rand((algo.num_envs, actor.action_dim), generator=generator,
                                      device=device) * 2 - 1
            else:
                squashed, _ = actor.sample(loop.obs, generator)
        next_obs, reward, terminated, truncated = envs.step(actor.in_bounds(squashed))
        ended = terminated | truncated
        # store: a failed game does not bootstrap, one cut by its step limit does
        memory.add(loop.obs, squashed, reward, next_obs, algo.gamma * ~terminated)
        stats.record(reward, ended, envs)
        loop.obs = envs.reset_done(ended)
        loop.steps += algo.num_envs
        # learn: every train_every_steps steps of the games, once warmed up
        if loop.steps >= algo.warmup_steps and \
                (loop.steps // algo.num_envs) % algo.train_every_steps == 0:
            lr = lr_at(1.0 - loop.steps / algo.total_steps)  # SB3 sets it at each training
            for group in (g for o in optimizers.values() for g in o.param_groups):
                group["lr"] = lr
            for _ in range(algo.gradient_steps):
                batch = memory.sample(algo.batch_size, generator)
                loop.figures = learn(actor, critics, targets, optimizers, log_alpha, batch,
                                     algo, generator, target_entropy, tuned)
                loop.updates += 1
                if loop.updates % algo.target_update_interval == 0:
                    polyak(critics, targets, algo.tau)
        loop.train_seconds = at_start + time.perf_counter() - began
        if algo.video_every_steps and loop.steps % algo.video_every_steps < algo.num_envs:
            log_game_video(logger, partial(instantiate, cfg.env), choose_by(
                make_act(actor, True, None, action_bounds(env, device)), device, True),
                loop.steps, cfg.seed)
        if loop.steps % algo.history_every_steps < algo.num_envs or loop.steps >= algo.total_steps:
            record = keep_record(run, loop, stats, logger)
            if algo.stop_mean_return is not None and stats.full and \
                    record["mean_return"] >= algo.stop_mean_return:
                break
        if run.stop_requested(f"step {loop.steps}"):
            break
    return finish(run, loop, algo)


def keep_record(run: Run, loop, stats: GameStats, logger) -> dict:
    """A record of the run so far: history, progress, TensorBoard, best and last saves."""
    mean = stats.means().get("cumulativeReward100")
    record = {"steps": loop.steps, "updates": loop.updates, "games": stats.games,
              "mean_return": mean, **{k: round(v, 6) for k, v in loop.figures.items()},
              "steps_per_second": round(loop.steps / max(loop.train_seconds, 1e-9), 1),
              "train_seconds": round(loop.train_seconds, 4)}
    if loop.figures:
        run.check_finite(loop.figures["critic_loss"], f"step {loop.steps}")
    loop.history.append(record)
    run.progress(loop.steps, record)
    logger.scalars(loop.steps, {TAGS[k]: v for k, v in record.items()
                                if k in TAGS and v is not None})
    logger.progress({"mean_return": mean} if mean is not None else {},
                    advance=loop.steps - logger.bar.n)
    logger.info(f"step {loop.steps}: mean return of the last 100 games "
                f"{'none finished' if mean is None else f'{mean:.2f}'}, "
                f"alpha {loop.figures.get('ent_coef', float('nan')):.4f}")
    if mean is not None and mean > loop.best_mean_return:
        loop.best_mean_return = mean
        run.save("best", only=("policy", "critics"))
    run.save_every("last", run.cfg.algo.checkpoint_every_seconds)
    return record


# TensorBoard tags: SB3's names, so that runs of both read alike side by side
TAGS = {"mean_return": "rollout/ep_rew_mean", "actor_loss": "train/actor_loss",
        "critic_loss": "train/critic_loss", "ent_coef": "train/ent_coef",
        "ent_coef_loss": "train/ent_coef_loss", "q_mean": "train/q_mean",
        "steps_per_second": "time/fps"}


def finish(run: Run, loop, algo) -> dict:
    """metrics.json: the last and best means, and the first step at the target."""
    history, cfg, target = loop.history, run.cfg, algo.target_mean_return
    solved = next((h for h in history if target is not None and h["mean_return"] is not None
                   and h["mean_return"] >= target), None)
    scored = [h["mean_return"] for h in history if h["mean_return"] is not None]
    metrics = {"device": str(run.device), "steps": loop.steps, "updates": loop.updates,
               "final_mean_return": scored[-1] if scored else None,
               "best_mean_return": max(scored) if scored else None,
               "mean_return_auc": sum(scored) / len(scored) if scored else None,
               "target_mean_return": target, "solved_step": solved["steps"] if solved else None,
               "train_seconds": round(loop.train_seconds, 3), "history": history}
    final = "none finished" if not scored else f"{scored[-1]:.1f}"
    summary = (f"{cfg.name} seed {cfg.seed}: {loop.steps} steps in {loop.train_seconds:.1f}s, "
               f"mean return of the last 100 games {final}")
    return run.finish(metrics, {"final_mean_return": metrics["final_mean_return"],
                                "best_mean_return": metrics["best_mean_return"]}, summary)


def load_actor(payload: dict, device: torch.device):
    return rebuild_agent(payload, build_actor, "policy", device)


def export(payload: dict) -> tuple[list[Network], dict]:
    """The actor: observations in; the greedy action (tanh of the mean, scaled to the
    bounds) and the Gaussian's mean and log std before the squashing out."""
    cfg, env, actor = load_actor(payload, torch.device("cpu"))
    obs = sample_observations(env)  # in the env's own dtype (Snake: uint8 boards)
    network = Network("policy", actor, {"obs": obs}, ["action", "mean", "log_std"],
                      about="tanh-squashed Gaussian policy: action = centre + half_range * "
                            "tanh(mean) greedily, or tanh(mean + exp(log_std) * noise) scaled "
                            "the same way")
    manifest = env_manifest(cfg, env)
    manifest["squashing"] = {"centre": actor.centre.tolist(),
                             "half_range": actor.half_range.tolist()}
    return [network], manifest


def make_act(actor, greedy: bool, generator: torch.Generator | None, bounds):
    """Moves from the actor (the torch module or its ONNX export): its greedy action, or
    a sample of its Gaussian squashed and scaled to the env's `bounds`."""
    low, high = bounds
    centre, half_range = (high + low) / 2, (high - low) / 2

    @torch.no_grad()
    def act(obs: torch.Tensor) -> torch.Tensor:
        action, mean, log_std = actor(obs.float())
        if greedy:
            return action
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        return centre + half_range * torch.tanh(mean + log_std.exp() * noise)

    return act


def evaluate(payload: dict, args) -> dict:
    return evaluate_policy(payload, args, load_actor, make_act, step=payload["meta"]["steps"])


def watch(payload: dict, args) -> dict:
    return watch_policy(payload, args, load_actor, make_act)
