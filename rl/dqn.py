"""DQN with replay memory and a target network, for any env with discrete actions.

The book's recipe (Deep Learning with JavaScript, ch. 11, `snake-dqn`) is written
down in docs/recipes.md: after several hours cumulativeReward100 peaks around 70-80
and eaten100 around 12; the greedy agent eats about 18 fruits per game.

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

`cumulativeReward100` and each counter the env declares (Snake: `eaten100`) are means
over the last 100 finished games, or over all finished games while there are fewer
than 100 (the original divided by 100 regardless); the best checkpoint is only taken
once 100 games have finished.
"""

import copy
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import MISSING, DictConfig, OmegaConf

from envs.gymnasium_env import is_gymnasium
from nn.blocks import clip_grad_norm
from nn.config import instantiate, plain
from nn.device import maybe_compile, mixed_precision, select_device
from nn.errors import UserError
from nn.export import Network
from nn.memory import build_network
from nn.run import Run
from nn.schema import above, at_least, between, one_of, shares
from nn.seeding import make_generator
from rl.dqn_bookkeeping import (
    Clock,
    GameStats,
    LoopState,
    epsilon_ladder,
    evaluate_greedily,
    finish,
    finished_by_rule,
    keep_best,
    keep_best_eval,
    linear_decay,
    log_games,
    log_video,
    make_choose,
    make_memory,
    new_games,
    plan_by_budget,
    planned,
    replan,
    replan_due,
    set_training,
    size_schedules,
)
from rl.play import (
    EvalArgs,
    WatchArgs,
    check_action_space,
    check_model_fits,
    env_manifest,
    evaluate_agent,
    rebuild_agent,
    sample_observations,
    watch_agent,
)
from rl.replay import NStepWindow, check_memory_fits


# rlgen-plot's default curve: the first of these tags a run logged (the book's reward over the last 100 games)
@dataclass
class DQNConfig:
    num_envs: int = at_least(1)  # games played in parallel (1 = the original)
    replay_size: int = at_least(1)
    replay_warmup: int = at_least(0)  # transitions in memory before training starts
    batch_size: int = at_least(1)
    gamma: float = between(0, 1)
    lr: float = above(0)
    # with lr_final set, the learning rate falls linearly to it over lr_decay_frames frames,
    # or over lr_decay_fraction of max_frames when that is set
    lr_final: float | None = above(0, None)
    lr_decay_frames: int = at_least(0, 0)
    lr_decay_fraction: float | None = between(0, 1, default=None)
    optimizer: Any = MISSING
    epsilon_init: float = between(0, 1)
    epsilon_final: float = between(0, 1)
    epsilon_decay_frames: int = at_least(0)
    # SB3's exploration_fraction: when set, epsilon decays over this share of max_frames
    # (epsilon_decay_frames is then ignored)
    exploration_fraction: float | None = between(0, 1, default=None)
    # Ape-X's spread: game i of N explores with epsilon^(1 + epsilon_ladder * i / (N - 1))
    epsilon_ladder: float | None = at_least(0, None)
    sync_every_frames: int = at_least(1)
    target_init: str = one_of("random", "copy")  # random: the original
    train_every_frames: int = at_least(1)
    updates_per_train: int = at_least(1)
    sample_without_replacement: bool = MISSING
    double_dqn: bool = MISSING
    mirror: bool = False  # train on mirror images of half the sampled transitions
    # prioritized replay: draw by |TD error|^alpha, importance weights with an exponent
    # that rises from priority_beta_init to 1 over priority_beta_frames frames (or over
    # priority_beta_fraction of max_frames)
    prioritized: bool = False
    priority_alpha: float = at_least(0, 0.6)
    priority_beta_init: float = between(0, 1, default=0.4)
    priority_beta_frames: int = at_least(0, 0)
    priority_beta_fraction: float | None = between(0, 1, default=None)
    n_step: int = at_least(1)
    loss: str = one_of("mse", "huber")
    max_grad_norm: float | None = above(0, None)
    # null: planned from max_seconds, by timing the loop on this machine at the start (the
    # plan is saved, so a resume keeps it; give a number to repeat a run exactly)
    max_frames: int | None = at_least(1)
    max_seconds: float | None = above(0, None)  # wall-time budget
    # a planned run plans its frames again when its training time passes each of these
    # shares of max_seconds, from the pace it kept since the last plan: the timing at the
    # start cannot see checkpoints, logging or a pace that changes as the run goes on
    replan_at: list[float] = shares()
    stop_reward100: float | None = None  # stop once cumulativeReward100 reaches this
    report_reward100_levels: list[float] = field(default_factory=lambda: [])
    history_every_frames: int = at_least(1)
    checkpoint_every_seconds: float = above(0)  # full checkpoint (memory too) for resume
    # greedy evaluation during training (off in the book's recipe): every this many frames
    # play eval_games fresh games at epsilon 0; the best kept as checkpoints/best_eval
    eval_every_frames: int | None = at_least(1, None)
    eval_games: int = at_least(1, 100)
    eval_max_steps: int = at_least(1, 1000)  # per evaluation game (a greedy agent can loop forever)
    # also end an evaluation game after this many steps without a positive reward (Snake:
    # without a fruit), so a looping agent stops without a cap that cuts long games short
    eval_max_steps_without_reward: int | None = at_least(1, None)
    stop_eval_return: float | None = None  # stop once a greedy evaluation reaches this
    # every this many frames a greedy game goes to TensorBoard as a video (null: none)
    video_every_frames: int | None = at_least(1, None)


# the settings this trainer adds to the config tree, {group/name: schema} (conf/schemas.py)
SCHEMAS = {"algo/dqn_schema": DQNConfig}


CURVES = ("cumulativeReward100", "eval/mean_return")

__all__ = ["EvalArgs", "WatchArgs", "train", "evaluate", "watch"]


def check_config(cfg: DictConfig) -> None:
    """Settings that cannot go together, refused before a run dir is made."""
    algo = cfg.algo
    if algo.max_frames is None and algo.max_seconds is None:
        raise UserError("algo.max_frames=null plans the run from its time budget: set "
                        "algo.max_seconds too, or give algo.max_frames a number")
    if list(algo.replan_at) != sorted(set(algo.replan_at)):
        raise UserError(f"algo.replan_at={list(algo.replan_at)} must rise: each share of "
                        "max_seconds after the one before")
    if algo.prioritized and algo.sample_without_replacement:
        raise UserError("prioritized replay draws with replacement: set "
                        "algo.sample_without_replacement=false or algo.prioritized=false")
    env = instantiate(cfg.env)
    check_action_space(env, ("discrete",), "DQN")
    if algo.mirror and not (hasattr(env, "mirrored") and getattr(env, "mirror_symmetric", True)):
        raise UserError(f"algo.mirror=true needs an env with a mirror symmetry; "
                        f"{cfg.env._target_} with these settings has none: set algo.mirror=false")
    dtype = torch.uint8 if env.observation_space.dtype == "uint8" else torch.float32
    check_memory_fits(algo.replay_size, env.observation_space.shape, dtype,
                      select_device(cfg.device))
    # acting on every game at once; a learning step keeps its activations for the backward
    # pass, and the double-DQN target takes two more forward passes
    check_model_fits(cfg, env, build_q_network, (
        (algo.num_envs, "the Q network's forward pass over the games",
         "fewer games at once (algo.num_envs) or a smaller board"),
        (3 * algo.batch_size, "a learning step's forward passes",
         "a smaller algo.batch_size or a smaller board")))
    env.close()


def build_q_network(cfg, env) -> torch.nn.Module:
    return build_network(cfg.model, in_shape=list(env.observation_space.shape),
                         out_features=int(env.action_space.n))


@torch.no_grad()
def act(q_network, obs, epsilon, generator, num_actions: int) -> torch.Tensor:
    """Epsilon-greedy: a random action with probability epsilon (one for all games, or a
    tensor with one per game), else the best Q. On the CPU, where asking costs no device
    sync, the network is not run when every game explores and no random action is drawn
    when none does: an acting step is a handful of small operations, and each counts."""
    n = obs.shape[0]
    explore = torch.rand(n, generator=generator, device=obs.device) < epsilon
    on_cpu = obs.device.type == "cpu"
    if on_cpu and bool(explore.all()):
        return torch.randint(num_actions, (n,), generator=generator, device=obs.device)
    set_training(q_network, False)
    greedy = q_network(obs).argmax(1)
    if on_cpu and not bool(explore.any()):
        return greedy
    random = torch.randint(num_actions, (n,), generator=generator, device=obs.device)
    return torch.where(explore, random, greedy)


def td_loss(online, batch: dict, double_dqn: bool, loss: str):
    """Loss between Q_online(s, a) and the TD target y = r + discount * Q_target(s', a*).
    With n-step returns the n-step window stored r as the rewards of n steps, discounted
    and cut at the game's end, s' as the observation n steps on and discount as gamma^n
    (0 when the game failed within them). a* is the target net's best action at s', or
    with Double DQN the online net's (the target net then only values it).
    batch["next_q"] holds the target net's values at s' (see `training_batches`),
    batch["weights"], when there, each transition's importance weight (prioritized
    replay). Returns the loss, the Q values taken (detached) and y: their difference is
    the TD error."""
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
    losses = {"mse": F.mse_loss, "huber": F.smooth_l1_loss}
    if loss not in losses:
        raise UserError(f"algo.loss={loss!r} is not mse or huber")
    if "weights" in batch:
        value = (losses[loss](q_taken, y, reduction="none") * batch["weights"]).mean()
    else:
        value = losses[loss](q_taken, y)
    return value, q_taken.detach(), y


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
                          beta)
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


def learn(online, target, optimizer, memory, algo, frame: int, updates: int, generator,
          autocast, mirrored) -> tuple[torch.Tensor, torch.Tensor]:
    """`updates` gradient steps on batches from the replay memory; the last loss and
    mean Q taken."""
    if algo.lr_final is not None:
        for group in optimizer.param_groups:
            group["lr"] = linear_decay(frame, algo.lr, algo.lr_final, algo.lr_decay_frames)
    beta = linear_decay(frame, algo.priority_beta_init, 1.0,
                        algo.priority_beta_frames) if algo.prioritized else None
    parameters = list(online.parameters())
    for batch in training_batches(memory, target, updates, algo, generator, autocast,
                                  mirrored, beta):
        with autocast:
            loss, q_taken, y = td_loss(online, batch, algo.double_dqn, algo.loss)
        if algo.prioritized:
            memory.update_priorities(batch["index"], y - q_taken)
        for parameter in parameters:  # optimizer.zero_grad(set_to_none=True), without
            parameter.grad = None      # its per-call wrappers (a few % of an update here)
        loss.backward()
        if algo.max_grad_norm is not None:
            clip_grad_norm(parameters, algo.max_grad_norm)
        optimizer.step()
    return loss, q_taken.mean()


def sync(online, target) -> None:
    """The target net takes the online net's weights."""
    target.load_state_dict(online.state_dict())


def train(cfg: DictConfig, run_dir: Path) -> dict:
    algo = plain(cfg.algo)
    check_config(cfg)
    run = Run(cfg, run_dir)  # picks the device, seeds everything
    device = run.device
    env = instantiate(cfg.env)
    envs = env.batched(algo.num_envs, device, seed=cfg.seed)
    online = build_q_network(cfg, env).to(device)
    # the original's target net has its own random weights until the first sync
    target = (build_q_network(cfg, env).to(device) if algo.target_init == "random"
              else copy.deepcopy(online)).eval()
    optimizer = instantiate(algo.optimizer)(online.parameters(), lr=algo.lr)
    memory = make_memory(algo, env, envs, device)
    window = NStepWindow(algo.n_step, algo.gamma, device)  # n-step returns into the memory
    generator = make_generator(cfg.seed + 1, device)
    autocast = mixed_precision(device, cfg.bf16)
    stats = GameStats(envs.counters, algo.num_envs, device,
                      flush_every=1 if device.type == "cpu" else 32)
    loop = run.keep(LoopState(obs=envs.reset()), q_network=online,
                    target=target, optimizer=optimizer, memory=memory, window=window,
                    envs=envs, stats=stats, sampler_rng=generator)
    if run.resumed and not envs.restores_games:  # a gymnasium env's games are not saved
        loop.obs = new_games(envs, window, stats)
    for net in (online, target):
        maybe_compile(net, cfg.compile)
    if algo.max_frames is None and loop.planned_frames is None:
        plan_by_budget(cfg, env, online, target, loop, autocast, act, learn)
    size_schedules(algo, algo.max_frames or loop.planned_frames)
    logger = run.open_logger(algo.max_frames, "frame", done=loop.frame)
    logger.info(f"training {cfg.name} on {device}: {algo.num_envs} games in parallel, up to "
                f"{algo.max_frames} frames{planned(loop, algo)}; run dir {run_dir}")
    clock, ladder, synced_at = Clock(loop), epsilon_ladder(algo, device), -1
    while loop.frame < algo.max_frames:
        # act: epsilon-greedy on every game at once
        epsilon = linear_decay(loop.frame, algo.epsilon_init, algo.epsilon_final,
                               algo.epsilon_decay_frames)
        with autocast:
            actions = act(online, loop.obs, epsilon ** ladder, generator, int(env.action_space.n))
        next_obs, reward, terminated, truncated = envs.step(actions)
        ended = terminated | truncated
        # store: through the n-step window, which releases a transition n steps later
        transition = window.push(loop.obs, actions, reward, next_obs, terminated, ended)
        if transition is not None:
            memory.add(*transition)
        loop.frame += algo.num_envs
        finished = stats.record(reward, ended, envs)
        loop.obs = envs.reset_done(ended)
        # sample, TD target, update (`learn`); then the target net's sync
        if len(memory) >= algo.replay_warmup:
            updates = loop.updates_due(algo)
            if updates:
                loop.loss, loop.q_mean = learn(online, target, optimizer, memory, algo,
                                               loop.frame, updates, generator, autocast,
                                               env.mirrored if algo.mirror else None)
                loop.updates += updates
            if loop.due(algo.sync_every_frames, "syncs") and synced_at != loop.updates:
                sync(online, target)  # (a copy of unchanged weights would change nothing)
                synced_at = loop.updates
        if loop.due(algo.video_every_frames, "videos"):
            log_video(run, cfg, online, algo, loop.frame, device)
        if loop.due(algo.eval_every_frames, "evals"):
            record = evaluate_greedily(env, online, algo, cfg.seed, device, loop, clock, autocast)
            run.progress(loop.frame, record)
            keep_best_eval(run, loop, record)
            if algo.stop_eval_return is not None and record["mean_return"] >= algo.stop_eval_return:
                break
        loop.train_seconds = clock.seconds()
        if replan_due(loop, algo):
            logger.info(replan(loop, algo))
            logger.bar.total = algo.max_frames  # the progress bar runs to the new plan
        if finished:
            means = log_games(run, loop, stats, algo, epsilon, loop.loss, loop.q_mean, clock)
            keep_best(run, loop, stats, means)
            if finished_by_rule(loop, stats, means, algo):
                break
        if run.stop_requested(f"frame {loop.frame}"):
            break
        if clock.checkpoint_due(algo.checkpoint_every_seconds):
            run.save("last")  # the memory too: resume goes on as if never stopped
    return finish(run, loop, stats, device)


def load_q_network(payload: dict, device: torch.device):
    return rebuild_agent(payload, build_q_network, "q_network", device)


def export(payload: dict) -> tuple[list[Network], dict]:
    """The Q-network: observations in (as the env gives them), one value per action out;
    the greedy agent plays the largest."""
    cfg, env, q_network = load_q_network(payload, torch.device("cpu"))
    network = Network("q_network", q_network, {"x": sample_observations(env)}, ["q_values"],
                      about="action values; the greedy move is the argmax")
    return [network], env_manifest(cfg, env)


def evaluate(payload: dict, args) -> dict:
    """Greedy play (epsilon 0; `greedy` makes no difference to a Q-network's choice)."""
    device = select_device(args.device)
    cfg, env, q_network = load_q_network(payload, device)

    @torch.no_grad()
    def act(obs):
        return q_network(obs).argmax(1)

    without_reward = (args.max_steps_without_reward
                      or cfg.algo.get("eval_max_steps_without_reward"))
    return evaluate_agent(payload, args, env, act, device,
                          args.max_steps or env.max_steps_per_game or 10_000, without_reward,
                          frame=payload["meta"].get("frame"))


def watch(payload: dict, args) -> dict:
    """Greedy play in a window, each move's Q values shaded on the board (Snake)."""
    device = select_device(args.device)
    cfg, _, q_network = load_q_network(payload, device)
    env_cfg = OmegaConf.merge(cfg.env, {"max_steps_per_game": args.max_steps})
    return watch_agent(partial(instantiate, env_cfg), make_choose(q_network, device),
                       args, own_window=is_gymnasium(env_cfg))


