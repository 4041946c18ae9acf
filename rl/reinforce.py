"""REINFORCE policy gradient, for any env with discrete actions (the book's: cart-pole).

The book's recipe (Deep Learning with JavaScript, ch. 11, `cart-pole`; docs/recipes.md,
part 1): with one hidden layer of 128 the mean steps per game reach the 500-step cap
after about 20 iterations of 20 games.

The recipe is the book's: actions are sampled from the policy, each game's rewards
are discounted, all discounted rewards of an iteration are normalised together, and
one Adam step follows the mean of reward-weighted log-likelihood gradients. What
changes is speed: every game of an iteration runs at once in the batched env, with
one network call per step for all games, and the gradient is one batched backward
pass over the recorded steps (the weights do not change during an iteration, so this
equals the original's per-step gradients).
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

from envs.gymnasium_env import is_gymnasium
from nn.config import instantiate
from nn.device import maybe_compile, mixed_precision
from nn.errors import UserError
from nn.export import Network
from nn.memory import build_network
from nn.run import Run
from nn.schema import above, at_least, between, one_of
from nn.seeding import make_generator
from rl.play import (
    EvalArgs,
    WatchArgs,
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


@dataclass
class ReinforceConfig:
    iterations: int = at_least(1)
    games_per_iteration: int = at_least(1)  # all games of an iteration run in parallel
    gamma: float = between(0, 1)
    lr: float = above(0)
    optimizer: Any = MISSING  # a `_partial_: true` torch.optim target; lr comes from `lr`
    baseline: str = one_of("none", "time_step")  # none: the book (normalise returns globally)
    max_grad_norm: float | None = above(0, None)
    stop_mean_steps: float | None = None  # end early once an iteration's mean steps reach this
    target_mean_steps: float = MISSING  # "solved" level reported in metrics.json
    # every this many iterations a greedy game goes to TensorBoard as a video (null: none)
    video_every: int | None = at_least(1, None)



# the settings this trainer adds to the config tree, {group/name: schema} (conf/schemas.py)
SCHEMAS = {"algo/reinforce_schema": ReinforceConfig}


# rlgen-plot's default curve: the first of these tags a run logged (steps per game, each iteration)
CURVES = ("mean_steps",)

__all__ = ["EvalArgs", "WatchArgs", "train", "evaluate", "watch"]


def sample_push_right(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """The policy's logit gives p(left) = sigmoid(logit); push right with 1 - p(left)."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    return (u >= torch.sigmoid(logits)).long()


def sample_action(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """An action per row of `logits` [N, 1 or n]: the book's sigmoid policy for two
    actions (one logit), a categorical one (softmax over n logits) for more."""
    if logits.shape[-1] == 1:
        return sample_push_right(logits.squeeze(-1), generator)
    probs = torch.softmax(logits, -1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def greedy_action(logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[-1] == 1:  # p(left) = sigmoid(logit) < 1/2: push right
        return (logits.squeeze(-1) < 0).long()
    return logits.argmax(-1)


@torch.no_grad()
def rollout(policy, envs, generator, max_steps: int, on_step=None) -> dict:
    """Play one game in every env with sampled actions; record what the gradient needs."""
    n = envs.num_envs
    obs = envs.reset()
    observations = torch.zeros(max_steps, *obs.shape, device=envs.device)
    actions = torch.zeros(max_steps, n, dtype=torch.long, device=envs.device)
    rewards = torch.zeros(max_steps, n, device=envs.device)
    alive = torch.zeros(max_steps, n, dtype=torch.bool, device=envs.device)
    live = torch.ones(n, dtype=torch.bool, device=envs.device)
    steps_taken = max_steps
    for t in range(max_steps):
        observations[t] = obs
        alive[t] = live
        action = sample_action(policy(obs.float()).float(), generator)
        obs, reward, terminated, truncated = envs.step(action)
        actions[t] = action
        rewards[t] = reward * live
        live = live & ~(terminated | truncated)
        if on_step is not None:
            on_step(envs, action)
        # checking needs a device sync, so look only every few steps
        if t % 8 == 7 and not live.any():
            steps_taken = t + 1
            break
    return {"observations": observations[:steps_taken], "actions": actions[:steps_taken],
            "rewards": rewards[:steps_taken], "alive": alive[:steps_taken]}


def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """v_t = r_t + gamma * v_{t+1} along dim 0 (time), for every game at once."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def advantages(returns: torch.Tensor, alive: torch.Tensor, baseline: str) -> torch.Tensor:
    """Normalised returns of the live steps, flattened in (time, game) order.

    `none` is the book's: subtract the mean over all steps of the iteration, divide by
    the std. `time_step` subtracts instead the mean return of the games still alive at
    the same time step, a baseline that removes the variance due to how far into its
    game a step lies, then divides by the same global std.
    """
    if baseline == "none":
        centred = returns[alive] - returns[alive].mean()
    elif baseline == "time_step":
        live_count = alive.sum(1).clamp(min=1)
        mean_at_t = (returns * alive).sum(1) / live_count
        centred = (returns - mean_at_t[:, None])[alive]
    else:
        raise UserError(f"algo.baseline={baseline!r} is not none or time_step")
    return centred / (centred.std(unbiased=False) + 1e-8)


def reinforce_loss(policy, batch: dict, gamma: float, baseline: str) -> torch.Tensor:
    alive = batch["alive"]
    weights = advantages(discounted_returns(batch["rewards"], gamma), alive, baseline)
    logits = policy(batch["observations"][alive])
    actions = batch["actions"][alive]
    if logits.shape[-1] == 1:
        # label 1 - action, as the original: the negative log-likelihood of the sampled action
        nll = F.binary_cross_entropy_with_logits(logits.squeeze(-1), 1.0 - actions.float(),
                                                 reduction="none")
    else:
        nll = F.cross_entropy(logits, actions, reduction="none")
    return (nll * weights).mean()


def build_policy(cfg, env) -> torch.nn.Module:
    """Two actions: one logit, the book's sigmoid policy; n > 2: n logits (softmax)."""
    actions = int(env.action_space.n)
    return build_network(cfg.model, in_shape=list(env.observation_space.shape),
                         out_features=1 if actions == 2 else actions)


def check_config(cfg: DictConfig) -> None:
    """Settings refused before a run dir is made."""
    if cfg.render and is_gymnasium(cfg.env):
        raise UserError("render=true draws rlgen's cart-pole while it trains; watch a "
                        "gymnasium env's agent with rlgen-watch run=RUN_DIR instead")
    env = instantiate(cfg.env)
    check_action_space(env, ("discrete",), "REINFORCE")
    if env.max_steps_per_game is None:
        raise UserError("training needs env.max_steps_per_game (games must end); e.g. 500")
    check_model_fits(cfg, env, build_policy)
    env.close()


def train(cfg: DictConfig, run_dir: Path) -> dict:
    algo = cfg.algo
    check_config(cfg)
    run = Run(cfg, run_dir)  # picks the device, seeds everything
    device = run.device
    env = instantiate(cfg.env)
    envs = env.batched(algo.games_per_iteration, device, seed=cfg.seed)
    policy = maybe_compile(build_policy(cfg, env).to(device), cfg.compile)
    autocast = mixed_precision(device, cfg.bf16)
    optimizer = instantiate(algo.optimizer)(policy.parameters(), lr=algo.lr)
    sampler = make_generator(cfg.seed + 1, device)

    # the kept checkpoint is the iteration with the highest mean return: on cart-pole
    # longer games are better, on Acrobot or MountainCar (-1 a step) they are worse
    loop = run.keep({"iteration": 0, "best_mean_return": -math.inf, "history": [],
                     "train_seconds": 0.0},
                    policy=policy, optimizer=optimizer, sampler_rng=sampler, envs=envs)
    history = loop.history
    on_step = live_drawer(cfg) if cfg.render else None
    logger = run.open_logger(algo.iterations, "it", done=loop.iteration)
    logger.info(f"training {cfg.name} on {device}: {algo.iterations} iterations of "
                f"{algo.games_per_iteration} games; run dir {run_dir}")
    for iteration in range(loop.iteration + 1, algo.iterations + 1):
        t0 = time.perf_counter()
        with autocast:
            batch = rollout(policy, envs, sampler, env.max_steps_per_game, on_step)
            loss = reinforce_loss(policy, batch, algo.gamma, algo.baseline)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if algo.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), algo.max_grad_norm)
        optimizer.step()
        seconds = time.perf_counter() - t0
        loop.iteration, loop.train_seconds = iteration, loop.train_seconds + seconds
        record = iteration_record(iteration, batch, loss.item(), seconds, loop.train_seconds)
        run.check_finite(record["loss"], f"iteration {iteration}")
        history.append(record)
        run.progress(iteration, record)
        if algo.video_every and iteration % algo.video_every == 0:
            log_game_video(logger, partial(instantiate, cfg.env),
                           choose_by(make_act(policy, True, None), device, False), iteration,
                           cfg.seed)
        if record["mean_return"] > loop.best_mean_return:
            loop.best_mean_return = record["mean_return"]
            run.save("best")
        run.save("last")
        log_iteration(logger, record)
        if algo.stop_mean_steps is not None and record["mean_steps"] >= algo.stop_mean_steps:
            break
        if run.stop_requested(f"iteration {iteration}"):
            break

    return finish(run, loop, algo)


def finish(run: Run, loop, algo) -> dict:
    """metrics.json: the last and best iterations, the first to reach the target."""
    history, cfg = loop.history, run.cfg
    solved_at = next((h for h in history if h["mean_steps"] >= algo.target_mean_steps), None)
    last = history[-1] if history else {}
    metrics = {
        "device": str(run.device), "iterations": last.get("iteration", 0),
        "final_mean_steps": last.get("mean_steps"),
        "best_mean_steps": max(h["mean_steps"] for h in history) if history else None,
        "final_mean_return": last.get("mean_return"),
        "best_mean_return": loop.best_mean_return if history else None,
        # the area under the learning curve: mean steps averaged over the iterations run,
        # a search objective that keeps ranking runs after they reach the cap
        "mean_steps_auc": sum(h["mean_steps"] for h in history) / len(history) if history else None,
        "target_mean_steps": algo.target_mean_steps,
        "solved_iteration": solved_at["iteration"] if solved_at else None,
        "solved_train_seconds": solved_at["train_seconds"] if solved_at else None,
        "train_seconds": round(loop.train_seconds, 3), "history": history,
    }
    solved = (f"reached {algo.target_mean_steps:g} at iteration {metrics['solved_iteration']}"
              if solved_at else f"did not reach {algo.target_mean_steps:g}")
    summary = (f"{cfg.name} seed {cfg.seed}: {metrics['iterations']} iterations in "
               f"{loop.train_seconds:.1f}s, final mean steps {metrics['final_mean_steps']:.1f}, best "
               f"{metrics['best_mean_steps']:.1f}, {solved}")
    return run.finish(metrics, {"best_mean_steps": metrics["best_mean_steps"],
                                "final_mean_steps": metrics["final_mean_steps"]}, summary)


def iteration_record(iteration: int, batch: dict, loss: float, seconds: float,
                     elapsed: float) -> dict:
    """One iteration's figures: steps per game (mean, max), return per game, loss, speed."""
    steps = batch["alive"].sum(0).float()
    return {"iteration": iteration, "mean_steps": steps.mean().item(),
            "max_steps": steps.max().item(),
            "mean_return": batch["rewards"].sum(0).mean().item(), "loss": loss,
            "steps_per_second": steps.sum().item() / seconds, "train_seconds": round(elapsed, 4)}


def log_iteration(logger, record: dict) -> None:
    logger.scalars(record["iteration"], {k: record[k] for k in (
        "mean_steps", "max_steps", "mean_return", "steps_per_second", "loss")})
    logger.progress({"mean_steps": record["mean_steps"], "mean_return": record["mean_return"]})
    logger.info(f"iteration {record['iteration']}: mean steps {record['mean_steps']:.1f}, "
                f"max {record['max_steps']:.0f}, loss {record['loss']:.4f}, "
                f"{record['steps_per_second']:.0f} steps/s")


def live_drawer(cfg):
    """`render=true`: a window that draws game 0 of the batch as it plays."""
    watcher = instantiate(cfg.env, render_mode="human")
    watcher.reset()

    def on_step(batched, push_right):
        watcher.state = tuple(batched.state[0].tolist())
        watcher.steps, watcher.last_action = int(batched.steps[0]), int(push_right[0])
        watcher.render()

    return on_step


def load_policy(payload: dict, device: torch.device):
    return rebuild_agent(payload, build_policy, "policy", device)


def export(payload: dict) -> tuple[list[Network], dict]:
    """The policy network: observations in, logits out (one logit: the book's sigmoid
    policy, P(action 0, push left) = sigmoid(logit); n logits: softmax over the n actions)."""
    cfg, env, policy = load_policy(payload, torch.device("cpu"))
    obs = sample_observations(env).float()
    heads = ("sigmoid of the one logit: P(action 0), the book's P(push left)"
             if policy(obs[:1]).shape[-1] == 1 else "softmax over the logits")
    network = Network("policy", policy, {"x": obs}, ["logits"], about=f"policy; {heads}")
    return [network], env_manifest(cfg, env)


def make_act(policy, greedy: bool, generator: torch.Generator | None, bounds=None):
    """Moves from the policy (`bounds`: discrete actions have none)."""
    @torch.no_grad()
    def act(obs: torch.Tensor) -> torch.Tensor:
        logits = policy(obs.float())
        return greedy_action(logits) if greedy else sample_action(logits, generator)

    return act


def evaluate(payload: dict, args) -> dict:
    return evaluate_policy(payload, args, load_policy, make_act,
                           iteration=payload["meta"]["iteration"])


def watch(payload: dict, args) -> dict:
    return watch_policy(payload, args, load_policy, make_act)
