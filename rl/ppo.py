"""Proximal Policy Optimization (Schulman et al. 2017), for Discrete and Box actions.

The recipe is Stable-Baselines3's PPO, with RL Zoo's tuned settings as the defaults of
each experiment (conf/experiment/*_ppo.yaml). One update of the loop:

1. rollout: `rollout_steps` steps of each of the `num_envs` games at once, actions
   sampled from the policy: a categorical over its logits, or a diagonal Gaussian whose
   sample is clipped to the action bounds where the env steps (its probability is that
   of the unclipped sample, as SB3 does). A game cut by its step limit gets gamma times
   the value of its last state added to its last reward (it did not end: the value
   bootstraps); a game that ended gets none.
2. GAE(lambda) advantages, and returns = advantages + values.
3. `epochs` passes over the rollout in shuffled minibatches: the clipped surrogate, the
   value loss (clipped around the rollout's values if `clip_range_vf`), the entropy
   bonus, gradients clipped to `max_grad_norm`; the passes stop early once the
   approximate KL divergence of a minibatch passes 1.5 x `target_kl`.

Observations, and rewards (for the value's scale), can be normalised by running
statistics as SB3's VecNormalize does. The observation statistics are buffers of the
agent network: saved with it, applied by every read-back tool and inside the export.

Not here: SB3's state-dependent exploration (gSDE), which RL Zoo turns on for Pendulum;
the experiments that would use it explore with the plain diagonal Gaussian instead and
say so in their config.
"""

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import MISSING, DictConfig

from nn.blocks import clip_grad_norm
from nn.config import instantiate, plain
from nn.errors import UserError
from nn.export import Network
from nn.memory import build_network
from nn.run import Run
from nn.schema import above, at_least, between, schedule
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

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class PPOConfig:
    total_steps: int = at_least(1)  # env steps of all games together (RL Zoo's n_timesteps)
    num_envs: int = at_least(1)  # games played at once (n_envs)
    rollout_steps: int = at_least(1)  # steps of each game between updates (n_steps)
    minibatch_size: int = at_least(2)  # (batch_size)
    epochs: int = at_least(1)  # passes over each rollout (n_epochs)
    gamma: float = between(0, 1)
    gae_lambda: float = between(0, 1)
    lr: Any = MISSING  # a number, or lin_X: X falling linearly to 0 over the run (RL Zoo)
    clip_range: Any = MISSING  # a number or lin_X
    clip_range_vf: float | None = above(0, None)  # null: the value loss is not clipped
    normalize_advantage: bool = MISSING  # per minibatch
    ent_coef: float = at_least(0)
    vf_coef: float = at_least(0)
    max_grad_norm: float | None = above(0, None)
    target_kl: float | None = above(0, None)  # null: every epoch runs
    normalize_observations: bool = MISSING  # running mean and variance (VecNormalize)
    normalize_rewards: bool = MISSING  # by the running std of the discounted return
    clip_observations: float = above(0)
    clip_rewards: float = above(0)
    log_std_init: float = MISSING  # Box actions: the Gaussian's starting log std
    orthogonal_init: bool = MISSING  # SB3's: gain sqrt 2, 0.01 for the policy's output
    optimizer: Any = MISSING  # a `_partial_: true` torch.optim target; lr comes from `lr`
    target_mean_return: float | None = None  # "solved" level reported in metrics.json
    stop_mean_return: float | None = None  # end once the last 100 games' mean reaches it
    video_every: int | None = at_least(1, None)  # updates between TensorBoard videos
    checkpoint_every_seconds: float = above(0)  # `last` for resume after a crash


SCHEMAS = {"algo/ppo_schema": PPOConfig}

# rlgen-plot's default curve: the mean return of the last 100 games, at each update
CURVES = ("rollout/ep_rew_mean",)

__all__ = ["EvalArgs", "WatchArgs", "train", "evaluate", "watch", "export"]


class RunningMeanStd(torch.nn.Module):
    """The running mean and variance of everything it was shown (batches merged as in
    Chan et al.'s parallel algorithm), kept as buffers so that they are saved."""

    def __init__(self, shape=()):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.tensor(1e-4))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        batch = batch.float()
        n, mean, var = batch.shape[0], batch.mean(0), batch.var(0, unbiased=False)
        delta, total = mean - self.mean, self.count + batch.shape[0]
        self.var.copy_((self.var * self.count + var * n + delta ** 2 * self.count * n / total)
                       / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total)


class Agent(torch.nn.Module):
    """The policy and the value network side by side (two bodies, SB3's default), both
    behind the observation normalisation. `forward` is the policy the read-back tools
    and the export run: observations in; logits (Discrete actions) or the Gaussian's
    mean and log std (Box actions) out."""

    def __init__(self, policy_body, value_body, obs_shape, action_dim: int | None,
                 log_std_init: float, normalize: bool, clip: float):
        super().__init__()
        self.policy_body, self.value_body = policy_body, value_body
        self.obs_stats = RunningMeanStd(tuple(obs_shape))
        self.normalize, self.clip = normalize, clip
        self.continuous = action_dim is not None
        if self.continuous:
            self.action_log_std = torch.nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def normalized(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.normalize:
            return obs.float()
        scaled = (obs.float() - self.obs_stats.mean) / torch.sqrt(self.obs_stats.var + 1e-8)
        return scaled.clamp(-self.clip, self.clip)

    def head(self, x: torch.Tensor):
        """The policy's outputs for normalised observations `x`."""
        out = self.policy_body(x)
        return (out, self.action_log_std.expand_as(out)) if self.continuous else out

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.value_body(x).squeeze(-1)

    def forward(self, obs: torch.Tensor):
        return self.head(self.normalized(obs))


class ValueOf(torch.nn.Module):
    """The agent's value network with its normalisation, as one module (the export)."""

    def __init__(self, agent: Agent):
        super().__init__()
        self.agent = agent

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.agent.value(self.agent.normalized(obs))


def orthogonal_init(body: torch.nn.Module, output_gain: float) -> None:
    """SB3's initialisation: orthogonal weights with gain sqrt(2) and zero biases, the
    last layer with `output_gain` (0.01 for the policy: near-uniform first actions)."""
    layers = [m for m in body.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    for i, layer in enumerate(layers):
        torch.nn.init.orthogonal_(layer.weight, output_gain if i == len(layers) - 1
                                  else math.sqrt(2))
        torch.nn.init.zeros_(layer.bias)


def build_agent(cfg, env) -> Agent:
    space, shape = env.action_space, list(env.observation_space.shape)
    action_dim = None if hasattr(space, "n") else int(math.prod(space.shape))
    outputs = int(space.n) if action_dim is None else action_dim
    policy = build_network(cfg.model, in_shape=shape, out_features=outputs)
    value = build_network(cfg.model, in_shape=shape, out_features=1)
    if cfg.algo.orthogonal_init:
        orthogonal_init(policy, 0.01)
        orthogonal_init(value, 1.0)
    return Agent(policy, value, shape, action_dim, cfg.algo.log_std_init,
                 cfg.algo.normalize_observations, cfg.algo.clip_observations)


def log_prob_and_entropy(out, actions: torch.Tensor):
    """log pi(a|s) and the policy's entropy, from the policy's outputs: a Gaussian's (mean,
    log std) or a categorical's logits. Written out rather than through
    torch.distributions, whose argument checks cost more than the arithmetic at these
    sizes (tests/test_ppo.py holds them equal)."""
    if isinstance(out, tuple):
        mean, log_std = out
        log_std = log_std.expand_as(mean)
        log_prob = -0.5 * ((actions - mean) * torch.exp(-log_std)) ** 2 - log_std - LOG_SQRT_2PI
        return log_prob.sum(-1), (0.5 + LOG_SQRT_2PI + log_std).sum(-1)
    log_p = torch.log_softmax(out, -1).clamp(min=torch.finfo(out.dtype).min)
    return log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), -(log_p.exp() * log_p).sum(-1)


def sample_action(out, generator: torch.Generator | None) -> torch.Tensor:
    """A sampled action (drawn from `generator`, so that a resumed run draws the same)."""
    if isinstance(out, tuple):
        mean, log_std = out
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        return mean + log_std.exp() * noise
    return torch.multinomial(torch.softmax(out.float(), -1), 1, generator=generator).squeeze(-1)


def greedy_action(out) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out.argmax(-1)


def to_env(action: torch.Tensor, bounds) -> torch.Tensor:
    """What the env is given: a Gaussian's sample clipped to the action bounds."""
    return action if bounds is None else torch.max(torch.min(action, bounds[1]), bounds[0])


def scale_rewards(reward, ended, loop, reward_stats: RunningMeanStd, algo) -> torch.Tensor:
    """VecNormalize's reward scaling: divided by the running std of each game's discounted
    return so far, clipped."""
    loop.discounted = loop.discounted * algo.gamma + reward
    reward_stats.update(loop.discounted)
    loop.discounted = loop.discounted.masked_fill(ended, 0.0)
    scaled = reward / torch.sqrt(reward_stats.var + 1e-8)
    return scaled.clamp(-algo.clip_rewards, algo.clip_rewards)


@torch.no_grad()
def collect(agent: Agent, envs, loop, stats: GameStats, reward_stats, algo, generator,
            bounds) -> tuple[dict, torch.Tensor]:
    """One rollout of every game; what the update needs, and the value after its end."""
    rollout: dict[str, list] = {k: [] for k in ("obs", "actions", "log_probs", "values",
                                                "rewards", "dones")}
    for _ in range(algo.rollout_steps):
        if algo.normalize_observations:
            agent.obs_stats.update(loop.obs)
        x = agent.normalized(loop.obs)
        out = agent.head(x)
        action = sample_action(out, generator)
        log_prob, _ = log_prob_and_entropy(out, action)
        next_obs, reward, terminated, truncated = envs.step(to_env(action, bounds))
        ended = terminated | truncated
        stats.record(reward, ended, envs)
        loop.game_steps += 1
        if ended.any():
            loop.recent_steps = (loop.recent_steps + loop.game_steps[ended].tolist())[-100:]
            loop.game_steps.masked_fill_(ended, 0)
        if algo.normalize_rewards:
            reward = scale_rewards(reward, ended, loop, reward_stats, algo)
        cut = truncated & ~terminated
        if cut.any():  # cut by the step limit, not ended: its value bootstraps
            reward = reward + algo.gamma * cut * agent.value(agent.normalized(next_obs))
        for key, value in (("obs", x), ("actions", action), ("log_probs", log_prob),
                           ("values", agent.value(x)), ("rewards", reward), ("dones", ended)):
            rollout[key].append(value)
        loop.obs = envs.reset_done(ended)
        loop.steps += envs.num_envs
    stats.flush()
    last_value = agent.value(agent.normalized(loop.obs))
    return {key: torch.stack(values) for key, values in rollout.items()}, last_value


def gae(rollout: dict, last_value: torch.Tensor, gamma: float, lam: float):
    """Generalized advantage estimation (Schulman et al. 2016) backwards through the
    rollout; the returns the value network is fitted to."""
    rewards, values, alive = rollout["rewards"], rollout["values"], ~rollout["dones"]
    advantages = torch.zeros_like(rewards)
    running, next_value = torch.zeros_like(last_value), last_value
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + gamma * next_value * alive[t] - values[t]
        running = delta + gamma * lam * alive[t] * running
        advantages[t], next_value = running, values[t]
    return advantages, advantages + values


def clipped_surrogate(ratio: torch.Tensor, advantage: torch.Tensor, clip: float) -> torch.Tensor:
    """PPO's loss: the pessimistic bound of the importance-weighted advantage and the same
    with the ratio clipped to [1 - clip, 1 + clip], negated. A sample whose ratio has
    left the range in its advantage's direction adds no gradient."""
    return torch.max(-advantage * ratio, -advantage * ratio.clamp(1 - clip, 1 + clip)).mean()


def learn(agent: Agent, optimizer, rollout: dict, advantages, returns, clip: float, algo,
          generator) -> dict:
    """`epochs` passes of clipped-surrogate minibatch steps over the rollout; the
    update's figures (means over its minibatches)."""
    data = {key: value.flatten(0, 1) for key, value in rollout.items()}
    parameters = list(agent.parameters())
    data["advantages"], data["returns"] = advantages.flatten(), returns.flatten()
    size, figures = data["returns"].shape[0], {"policy_gradient_loss": [], "value_loss": [],
                                                "entropy_loss": [], "approx_kl": [],
                                                "clip_fraction": [], "loss": []}
    for _ in range(algo.epochs):
        order = torch.randperm(size, generator=generator, device=generator.device)
        for index in order.split(algo.minibatch_size):
            batch = {key: value[index] for key, value in data.items()}
            log_prob, entropy = log_prob_and_entropy(agent.head(batch["obs"]), batch["actions"])
            log_ratio = log_prob - batch["log_probs"]
            ratio = log_ratio.exp()
            advantage = batch["advantages"]
            if algo.normalize_advantage and len(index) > 1:
                advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
            policy_loss = clipped_surrogate(ratio, advantage, clip)
            value = agent.value(batch["obs"])
            if algo.clip_range_vf is not None:
                value = batch["values"] + (value - batch["values"]).clamp(
                    -algo.clip_range_vf, algo.clip_range_vf)
            value_loss = F.mse_loss(value, batch["returns"])
            entropy_loss = -entropy.mean()
            loss = policy_loss + algo.ent_coef * entropy_loss + algo.vf_coef * value_loss
            with torch.no_grad():  # kept as tensors: one read of each at the update's end
                approx_kl = ((ratio - 1) - log_ratio).mean()
                for name, figure in (("policy_gradient_loss", policy_loss),
                                     ("value_loss", value_loss), ("entropy_loss", entropy_loss),
                                     ("loss", loss), ("approx_kl", approx_kl),
                                     ("clip_fraction", ((ratio - 1).abs() > clip).float().mean())):
                    figures[name].append(figure.detach())
            if algo.target_kl is not None and approx_kl.item() > 1.5 * algo.target_kl:
                return means_of(figures, data)  # this minibatch's step is not taken
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if algo.max_grad_norm is not None:
                clip_grad_norm(parameters, algo.max_grad_norm)
            optimizer.step()
    return means_of(figures, data)


def means_of(figures: dict, data: dict) -> dict:
    """The update's figures: means over minibatches, and how much of the returns'
    variance the rollout's values explained."""
    means = dict(zip(figures, torch.stack([torch.stack(v).mean() for v in figures.values()])
                     .tolist(), strict=True))
    variance = data["returns"].var()
    means["explained_variance"] = (1 - (data["returns"] - data["values"]).var() / variance).item() \
        if variance > 0 else 0.0
    return means


def check_config(cfg: DictConfig) -> None:
    """Settings refused before a run dir is made."""
    algo = cfg.algo
    schedule(algo.lr, "lr")
    schedule(algo.clip_range, "clip_range")
    env = instantiate(cfg.env)
    check_action_space(env, ("discrete", "bounded box"), "PPO")
    rollout = algo.num_envs * algo.rollout_steps
    if algo.minibatch_size > rollout:
        raise UserError(f"algo.minibatch_size={algo.minibatch_size} is more than a rollout "
                        f"holds ({algo.num_envs} games x {algo.rollout_steps} steps = {rollout})")
    check_model_fits(cfg, env, build_agent, (
        (algo.num_envs, "the agent's forward pass over the games", "fewer algo.num_envs"),
        (algo.minibatch_size, "a minibatch step", "a smaller algo.minibatch_size")))
    env.close()


def train(cfg: DictConfig, run_dir: Path) -> dict:
    algo = plain(cfg.algo)
    check_config(cfg)
    run = Run(cfg, run_dir)  # picks the device, seeds everything
    device = run.device
    env = instantiate(cfg.env)
    envs = env.batched(algo.num_envs, device, seed=cfg.seed)
    agent = build_agent(cfg, env).to(device)
    lr_at, clip_at = schedule(algo.lr, "lr"), schedule(algo.clip_range, "clip_range")
    optimizer = instantiate(algo.optimizer)(agent.parameters(), lr=lr_at(1.0))
    reward_stats = RunningMeanStd().to(device)
    generator = make_generator(cfg.seed + 1, device)
    stats = GameStats(envs.counters, algo.num_envs, device,
                      flush_every=1 if device.type == "cpu" else algo.rollout_steps)
    updates = math.ceil(algo.total_steps / (algo.num_envs * algo.rollout_steps))
    bounds = action_bounds(env, device)
    loop = run.keep({"update": 0, "steps": 0, "best_mean_return": -math.inf, "history": [],
                     "train_seconds": 0.0, "recent_steps": [], "obs": envs.reset(),
                     "game_steps": torch.zeros(algo.num_envs, dtype=torch.long, device=device),
                     "discounted": torch.zeros(algo.num_envs, device=device)},
                    policy=agent, optimizer=optimizer, reward_stats=reward_stats, stats=stats,
                    envs=envs, sampler_rng=generator)
    if run.resumed and not envs.restores_games:  # a gymnasium env's games are not saved
        loop.obs, loop.game_steps, loop.discounted = envs.reset(), loop.game_steps * 0, \
            loop.discounted * 0
    logger = run.open_logger(updates, "update", done=loop.update)
    logger.info(f"training {cfg.name} on {device}: {updates} updates of {algo.num_envs} games "
                f"x {algo.rollout_steps} steps; run dir {run_dir}")
    for update in range(loop.update + 1, updates + 1):
        began = time.perf_counter()
        left = 1.0 - (update - 1) / updates  # the share of the run still ahead
        lr, clip = lr_at(left), clip_at(left)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rollout, last_value = collect(agent, envs, loop, stats, reward_stats, algo, generator,
                                      bounds)
        advantages, returns = gae(rollout, last_value, algo.gamma, algo.gae_lambda)
        figures = learn(agent, optimizer, rollout, advantages, returns, clip, algo, generator)
        seconds = time.perf_counter() - began
        loop.update, loop.train_seconds = update, loop.train_seconds + seconds
        record = update_record(loop, stats, figures, agent, lr, clip,
                               algo.num_envs * algo.rollout_steps / seconds)
        run.check_finite(record["loss"], f"update {update}")
        loop.history.append(record)
        run.progress(update, record)
        log_update(logger, record)
        if algo.video_every and update % algo.video_every == 0:
            log_game_video(logger, partial(instantiate, cfg.env),
                           choose_by(make_act(agent, True, None, bounds), device,
                                     bounds is not None), loop.steps, cfg.seed)
        if stats.games and record["mean_return"] > loop.best_mean_return:
            loop.best_mean_return = record["mean_return"]
            run.save("best", only=("policy",))  # what evaluation and export read
        run.save_every("last", algo.checkpoint_every_seconds)
        if algo.stop_mean_return is not None and stats.full and \
                record["mean_return"] >= algo.stop_mean_return:
            break
        if run.stop_requested(f"update {update}"):
            break
    return finish(run, loop, algo)


def update_record(loop, stats: GameStats, figures: dict, agent: Agent, lr: float, clip: float,
                  steps_per_second: float) -> dict:
    """One update's figures: the last 100 games' mean return and length, the losses and
    SB3's diagnostics (approximate KL, clip fraction, explained variance)."""
    means = stats.means()
    record = {"update": loop.update, "steps": loop.steps, "games": stats.games,
              "mean_return": means.get("cumulativeReward100"),
              "mean_steps": sum(loop.recent_steps) / len(loop.recent_steps)
              if loop.recent_steps else None,
              **{name: round(value, 6) for name, value in figures.items()},
              "learning_rate": lr, "clip_range": clip,
              "steps_per_second": round(steps_per_second, 1),
              "train_seconds": round(loop.train_seconds, 4)}
    if agent.continuous:
        record["std"] = agent.action_log_std.exp().mean().item()
    return record


# TensorBoard tags: SB3's names, so that runs of both read alike side by side
TAGS = {"mean_return": "rollout/ep_rew_mean", "mean_steps": "rollout/ep_len_mean",
        "approx_kl": "train/approx_kl", "clip_fraction": "train/clip_fraction",
        "explained_variance": "train/explained_variance", "value_loss": "train/value_loss",
        "policy_gradient_loss": "train/policy_gradient_loss",
        "entropy_loss": "train/entropy_loss", "loss": "train/loss",
        "learning_rate": "train/learning_rate", "clip_range": "train/clip_range",
        "std": "train/std", "steps_per_second": "time/fps"}


def log_update(logger, record: dict) -> None:
    logger.scalars(record["steps"], {tag: record[name] for name, tag in TAGS.items()
                                     if record.get(name) is not None})
    shown = {k: record[k] for k in ("mean_return", "approx_kl") if record[k] is not None}
    logger.progress(shown)
    mean = "none finished" if record["mean_return"] is None else f"{record['mean_return']:.2f}"
    logger.info(f"update {record['update']} ({record['steps']} steps): mean return {mean}"
                f", approx KL {record['approx_kl']:.4f}, clip fraction "
                f"{record['clip_fraction']:.3f}, {record['steps_per_second']:.0f} steps/s")


def finish(run: Run, loop, algo) -> dict:
    """metrics.json: the last and best means, and the first step at the target."""
    history, cfg = loop.history, run.cfg
    target = algo.target_mean_return
    solved = next((h for h in history if target is not None and h["mean_return"] is not None
                   and h["mean_return"] >= target), None)
    last = history[-1] if history else {}
    scored = [h["mean_return"] for h in history if h["mean_return"] is not None]
    metrics = {"device": str(run.device), "updates": loop.update, "steps": loop.steps,
               "final_mean_return": last.get("mean_return"),
               "best_mean_return": max(scored) if scored else None,
               "final_mean_steps": last.get("mean_steps"),
               # the area under the learning curve, a search objective
               "mean_return_auc": sum(scored) / len(scored) if scored else None,
               "target_mean_return": target,
               "solved_step": solved["steps"] if solved else None,
               "train_seconds": round(loop.train_seconds, 3), "history": history}
    final = "none finished" if metrics["final_mean_return"] is None else \
        f"{metrics['final_mean_return']:.1f}"
    summary = (f"{cfg.name} seed {cfg.seed}: {loop.steps} steps in {loop.train_seconds:.1f}s, "
               f"mean return of the last 100 games {final}")
    return run.finish(metrics, {"final_mean_return": metrics["final_mean_return"],
                                "best_mean_return": metrics["best_mean_return"]}, summary)


def load_agent(payload: dict, device: torch.device):
    return rebuild_agent(payload, build_agent, "policy", device)


def export(payload: dict) -> tuple[list[Network], dict]:
    """The policy (logits; or the Gaussian's mean and log std) and the value network,
    observations in, the normalisation inside both."""
    cfg, env, agent = load_agent(payload, torch.device("cpu"))
    obs = sample_observations(env)  # in the env's own dtype (Snake: uint8 boards)
    outputs = ["mean", "log_std"] if agent.continuous else ["logits"]
    about = ("diagonal Gaussian: sample mean + exp(log_std) * noise, or take the mean; "
             "clip to the action bounds" if agent.continuous else "softmax over the logits")
    networks = [Network("policy", agent, {"obs": obs}, outputs, about=f"policy; {about}"),
                Network("value", ValueOf(agent), {"obs": obs}, ["value"],
                        about="state value, in the (normalised) reward scale of training")]
    manifest = env_manifest(cfg, env)
    manifest["normalization"] = {
        "observations": {"mean": agent.obs_stats.mean.tolist(),
                         "var": agent.obs_stats.var.tolist(), "clip": agent.clip}
        if agent.normalize else None,
        "applied": "inside both networks: feed raw observations"}
    return networks, manifest


def make_act(agent, greedy: bool, generator: torch.Generator | None, bounds):
    @torch.no_grad()
    def act(obs: torch.Tensor) -> torch.Tensor:
        out = agent(obs.float())
        return to_env(greedy_action(out) if greedy else sample_action(out, generator), bounds)

    return act


def evaluate(payload: dict, args) -> dict:
    return evaluate_policy(payload, args, load_agent, make_act, update=payload["meta"]["update"])


def watch(payload: dict, args) -> dict:
    return watch_policy(payload, args, load_agent, make_act)
