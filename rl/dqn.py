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
from omegaconf import MISSING, DictConfig, OmegaConf

from envs.gymnasium_env import is_gymnasium
from nn.checkpoint import load_weights
from nn.config import instantiate, plain
from nn.device import maybe_compile, mixed_precision, select_device
from nn.errors import UserError
from nn.export import Network
from nn.run import Run
from nn.schema import above, at_least, between, one_of, shares
from nn.seeding import make_generator
from rl.dqn_bookkeeping import (
    Clock,
    GameStats,
    LoopState,
    evaluate_greedily,
    finish,
    finished_by_rule,
    keep_best,
    keep_best_eval,
    log_games,
    log_video,
    plan_by_budget,
    replan,
    replan_due,
)
from rl.play import (
    EvalArgs,
    WatchArgs,
    check_model_fits,
    env_manifest,
    evaluate_agent,
    rebuild_agent,
    sample_observations,
    watch_agent,
)
from rl.q_learning import (
    act,
    build_q_network,
    epsilon_ladder,
    learn,
    linear_decay,
    make_choose,
    make_memory,
    size_schedules,
    store,
    sync,
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


def train(cfg: DictConfig, run_dir: Path) -> dict:
    algo = plain(cfg.algo)
    check_config(cfg)
    run = Run(cfg, run_dir)  # picks the device, seeds everything
    device = run.device
    env = instantiate(cfg.env)
    envs = env.batched(algo.num_envs, device, seed=cfg.seed)
    online = build_q_network(cfg, env).to(device)
    if algo.target_init == "random":  # the original's: own random weights until the first sync
        target = build_q_network(cfg, env).to(device)
    else:
        target = copy.deepcopy(online)
    target.eval()
    optimizer = instantiate(algo.optimizer)(online.parameters(), lr=algo.lr)
    memory = make_memory(algo, env, envs, device)
    window = NStepWindow(algo.n_step, algo.gamma)
    generator = make_generator(cfg.seed + 1, device)
    autocast = mixed_precision(device, cfg.bf16)
    mirrored = env.mirrored if algo.mirror else None
    obs = envs.reset()
    stats = GameStats(envs.counters, algo.num_envs, device,
                      flush_every=1 if device.type == "cpu" else 32)
    loss = q_mean = torch.zeros((), device=device)
    loop = LoopState()
    if run.resumed:
        obs, loss, q_mean = restore(run, online, target, optimizer, memory, window, envs,
                                    stats, generator, device)
        vars(loop).update(run.meta["loop"])
    maybe_compile(online, cfg.compile)
    maybe_compile(target, cfg.compile)
    if algo.max_frames is None and loop.planned_frames is None:
        plan_by_budget(cfg, env, online, target, loop, autocast)
    size_schedules(algo, algo.max_frames or loop.planned_frames)

    def save_everything() -> None:
        """`last`: the weights and everything else the loop holds, so resume goes on
        exactly as if never stopped."""
        state = {"q_network": online.state_dict(), "target": target.state_dict(),
                 "optimizer": optimizer.state_dict(), "memory": memory.state_dict(),
                 "window": window.state_dict(), "envs": envs.state_dict(), "obs": obs,
                 "stats": stats.state_dict(), "loss": loss, "q_mean": q_mean,
                 "sampler_rng": generator.get_state()}
        run.save("last", state, {"frame": loop.frame, "games": stats.games,
                                 "cumulativeReward100": loop.best, "loop": vars(loop)})

    logger = run.open_logger(algo.max_frames, "frame", done=loop.frame)
    planned = (f" (planned for {algo.max_seconds:.0f} s at the {loop.planned_pace:.0f} "
               f"frames/s timed at the start)" if loop.planned_frames == algo.max_frames else "")
    logger.info(f"training {cfg.name} on {device}: {algo.num_envs} games in parallel, "
                f"up to {algo.max_frames} frames{planned}; run dir {run_dir}")
    clock = Clock(loop)
    ladder = epsilon_ladder(algo, device)
    synced_at = -1  # loop.updates at the last sync
    num_actions = int(env.action_space.n)
    while loop.frame < algo.max_frames:
        epsilon = linear_decay(loop.frame, algo.epsilon_init, algo.epsilon_final,
                               algo.epsilon_decay_frames)
        with autocast:
            actions = act(online, obs, epsilon ** ladder, generator, num_actions)
        next_obs, reward, terminated, truncated = envs.step(actions)
        ended = terminated | truncated
        store(memory, window, obs, actions, reward, next_obs, terminated, ended)
        loop.frame += algo.num_envs
        finished = stats.record(reward, ended, envs)
        obs = envs.reset_done(ended)
        if len(memory) >= algo.replay_warmup:
            updates = loop.updates_due(algo)
            if updates:
                loss, q_mean = learn(online, target, optimizer, memory, algo, loop.frame,
                                     updates, generator, autocast, mirrored)
                loop.updates += updates
            if loop.due(algo.sync_every_frames, "syncs") and synced_at != loop.updates:
                sync(online, target)  # (a copy of unchanged weights would change nothing)
                synced_at = loop.updates
        if loop.due(algo.video_every_frames, "videos"):
            log_video(run, cfg, online, algo, loop.frame, device)
        if loop.due(algo.eval_every_frames, "evals"):
            record = evaluate_greedily(env, online, algo, cfg.seed, device, loop, clock, autocast)
            run.progress(loop.frame, record)
            keep_best_eval(run, loop, record, online)
            if algo.stop_eval_return is not None and record["mean_return"] >= algo.stop_eval_return:
                break
        loop.train_seconds = clock.seconds()
        if replan_due(loop, algo):
            logger.info(replan(loop, algo))
            logger.bar.total = algo.max_frames  # the progress bar runs to the new plan
        if finished:
            means = log_games(run, loop, stats, algo, epsilon, loss, q_mean, clock)
            keep_best(run, loop, stats, means, online)
            if finished_by_rule(loop, stats, means, algo):
                break
        if run.stop_requested(f"frame {loop.frame}"):
            break
        if clock.checkpoint_due(algo.checkpoint_every_seconds):
            save_everything()
    save_everything()
    if loop.best_frame is None:  # fewer than 100 games: the last weights are the best we have
        run.save("best", {"q_network": online.state_dict()},
                 {"frame": loop.frame, "cumulativeReward100": None, "games": stats.games})
    return finish(run, loop, stats, device)


def restore(run, online, target, optimizer, memory, window, envs, stats, generator, device):
    """Everything `save_everything` wrote, back in place; the observations, last loss
    and mean Q."""
    state = run.state
    if "memory" not in state or "stats" not in state:
        raise UserError(f"{run.cfg.resume} holds no replay memory or game figures (an older "
                        "rlgen wrote it); start a new run")
    load_weights(online, run.resumed, "q_network")
    load_weights(target, run.resumed, "target")
    optimizer.load_state_dict(state["optimizer"])
    memory.load_state_dict(state["memory"])
    envs.load_state_dict(state["envs"])
    stats.load_state_dict(state["stats"])
    generator.set_state(state["sampler_rng"])
    run.restore_random_streams()
    if envs.restores_games:
        window.load_state_dict(state["window"], device)
        obs = state["obs"].to(device)
    else:  # a gymnasium env's games in progress cannot be saved: new ones start
        obs = envs.reset()
        stats.game_return.zero_()
    return obs, state["loss"].to(device), state["q_mean"].to(device)


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


