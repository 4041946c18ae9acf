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
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from envs.gymnasium_env import is_gymnasium
from nn.checkpoint import load_weights
from nn.config import instantiate, plain
from nn.device import maybe_compile, mixed_precision, select_device
from nn.errors import UserError
from nn.run import Run
from nn.seeding import global_rng_state, make_generator, set_global_rng_state
from rl.play import (
    EvalArgs,
    WatchArgs,
    check_model_fits,
    log_game_video,
    play_batched,
    rebuild_agent,
    report,
    watch_agent,
)
from rl.replay import NStepWindow, PrioritizedReplayMemory, ReplayMemory, check_memory_fits

# rlgen-plot's default curve: the first of these tags a run logged (the book's reward over the last 100 games)
CURVES = ("cumulativeReward100", "eval/mean_return")

__all__ = ["EvalArgs", "WatchArgs", "train", "evaluate", "watch"]


def linear_decay(frame: int, init: float, final: float, decay_frames: int) -> float:
    """Linear decay from init to final over decay_frames frames, then constant (epsilon,
    and the learning rate where it decays)."""
    if frame >= decay_frames:
        return final
    return init + (final - init) * frame / decay_frames


def size_schedules(algo, max_frames: int) -> None:
    """Fix the run's length and its schedules' lengths in frames: each share that is set
    (exploration_fraction as SB3's, lr_decay_fraction, priority_beta_fraction) replaces the
    schedule's frame count with that share of max_frames."""
    algo.max_frames = max_frames
    for share, frames in (("exploration_fraction", "epsilon_decay_frames"),
                          ("lr_decay_fraction", "lr_decay_frames"),
                          ("priority_beta_fraction", "priority_beta_frames")):
        if getattr(algo, share) is not None:
            setattr(algo, frames, round(getattr(algo, share) * max_frames))


def epsilon_ladder(algo, device: torch.device) -> torch.Tensor | float:
    """Exponents that spread exploration over the games (Ape-X, Horgan et al. 2018): game
    i of N explores with epsilon^(1 + epsilon_ladder * i / (N - 1)), so some games play
    almost greedily and reach the long-snake positions a single epsilon rarely lets a
    game reach, while others explore. 1 (one epsilon for all) without a ladder."""
    if not algo.epsilon_ladder or algo.num_envs == 1:
        return 1.0
    return 1 + algo.epsilon_ladder * torch.arange(algo.num_envs, device=device) / (algo.num_envs - 1)


def build_q_network(cfg, env) -> torch.nn.Module:
    return instantiate(cfg.model, in_shape=list(env.observation_space.shape),
                       out_features=int(env.action_space.n))


def set_training(module: torch.nn.Module, training: bool) -> None:
    """module.train(training), skipped when already so (it walks every submodule)."""
    if module.training != training:
        module.train(training)


@torch.no_grad()
def act(q_network, obs, epsilon, generator) -> torch.Tensor:
    """Epsilon-greedy: a random action with probability epsilon (one for all games, or a
    tensor with one per game), else the best Q."""
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


def check_config(cfg: DictConfig) -> None:
    """Settings that cannot go together, refused before a run dir is made."""
    algo = cfg.algo
    if algo.max_frames is None and algo.max_seconds is None:
        raise UserError("algo.max_frames=null plans the run from its time budget: set "
                        "algo.max_seconds too, or give algo.max_frames a number")
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
    check_model_fits(cfg, env, build_q_network)
    env.close()


def make_memory(algo, env, envs, device: torch.device) -> ReplayMemory:
    shape = tuple(env.observation_space.shape)
    if algo.prioritized:
        return PrioritizedReplayMemory(algo.replay_size, shape, envs.observation_dtype, device,
                                       algo.priority_alpha)
    return ReplayMemory(algo.replay_size, shape, envs.observation_dtype, device)


def store(memory, window: NStepWindow, obs, actions, reward, next_obs, terminated,
          ended) -> None:
    """One step of every game into the replay memory (through the n-step window)."""
    transition = window.push(obs, actions, reward, next_obs, terminated, ended)
    if transition is not None:
        memory.add(*transition)


def learn(online, target, optimizer, memory, algo, frame: int, updates: int, generator,
          autocast, mirrored) -> tuple[torch.Tensor, torch.Tensor]:
    """`updates` gradient steps on batches from the replay memory; the last loss and
    mean Q taken."""
    if algo.lr_final is not None:
        for group in optimizer.param_groups:
            group["lr"] = linear_decay(frame, algo.lr, algo.lr_final, algo.lr_decay_frames)
    beta = linear_decay(frame, algo.priority_beta_init, 1.0,
                        algo.priority_beta_frames) if algo.prioritized else None
    for batch in training_batches(memory, target, updates, algo, generator, autocast,
                                  mirrored, beta):
        with autocast:
            loss, q_mean, td_errors = td_loss(online, batch, algo.double_dqn, algo.loss)
        if algo.prioritized:
            memory.update_priorities(batch["index"], td_errors)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if algo.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(online.parameters(), algo.max_grad_norm)
        optimizer.step()
    return loss, q_mean


def sync(online, target) -> None:
    """The target net takes the online net's weights."""
    target.load_state_dict(online.state_dict())


class GameStats:
    """Finished games: their number, and the return and each env counter (Snake: fruits
    eaten) over the last 100, logged as cumulativeReward100 and <counter>100. The figures
    of games that end wait on the training device and come to the host every
    `flush_every` steps: after every step on a CPU, as the book logs; on a GPU once per
    many steps, since each read-back waits for the device (a host sync)."""

    def __init__(self, counters, num_envs: int, device: torch.device, flush_every: int = 1):
        self.counters = list(counters)
        self.game_return = torch.zeros(num_envs, device=device)
        self.games = 0
        self.last100 = {name: deque(maxlen=100) for name in ["cumulativeReward", *counters]}
        self.flush_every, self.pending = flush_every, []

    def record(self, reward, ended, envs) -> bool:
        """Add this step's rewards and keep the figures of games that ended; whether any
        finished game's figures reached the host."""
        self.game_return += reward
        self.pending.append((ended, self.game_return.clone(),
                             *[getattr(envs, name).clone() for name in self.counters]))
        self.game_return.masked_fill_(ended, 0)
        return len(self.pending) >= self.flush_every and self.flush()

    def flush(self) -> bool:
        """The waiting figures to the host, in the order the games ended; whether any."""
        if not self.pending:
            return False
        ended, *figures = (torch.cat(column) for column in zip(*self.pending, strict=True))
        self.pending.clear()
        finished = ended.nonzero().flatten()
        if not finished.numel():
            return False
        for name, values in zip(self.last100, figures, strict=True):
            self.last100[name].extend(values[finished].tolist())
        self.games += finished.numel()
        return True

    @property
    def full(self) -> bool:  # 100 games finished: the means are the book's
        return len(self.last100["cumulativeReward"]) == 100

    def means(self) -> dict[str, float]:
        return {f"{name}100": sum(values) / len(values)
                for name, values in self.last100.items() if values}

    def state_dict(self) -> dict:  # plain lists: checkpoints hold no other Python types
        self.flush()
        return {"games": self.games, "game_return": self.game_return,
                "last100": {name: list(values) for name, values in self.last100.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.games = state["games"]
        self.game_return = state["game_return"].to(self.game_return.device)
        self.last100 = {name: deque(values, maxlen=100)
                        for name, values in state["last100"].items()}


@dataclass
class LoopState:
    """The training loop's counters and records: with the tensors (nets, optimizer,
    replay memory, games, random streams) all a resumed run needs."""
    frame: int = 0
    updates: int = 0
    pending_train: int = 0  # frames played since the last training step
    syncs: int = 0  # target syncs so far
    best: float | None = None  # best cumulativeReward100 over 100 full games
    best_frame: int | None = None
    evals: int = 0  # greedy evaluations so far
    videos: int = 0  # greedy games logged to TensorBoard so far
    best_eval: float | None = None  # best greedy mean return
    eval_seconds: float = 0.0  # time spent in greedy evaluations
    eval_history: list = field(default_factory=list)
    reached: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    train_seconds: float = 0.0
    planned_frames: int | None = None  # the run's length, when planned from the time budget
    planned_pace: float | None = None  # the frames/s measured for that plan

    def updates_due(self, algo) -> int:
        """Gradient steps due after this step: `updates_per_train` every
        `train_every_frames` frames played since the memory was warm."""
        self.pending_train += algo.num_envs
        phases, self.pending_train = divmod(self.pending_train, algo.train_every_frames)
        return phases * algo.updates_per_train

    def due(self, every: int | None, done: str) -> bool:
        """Whether a periodic event (sync, evaluation) is due; counts it if so."""
        if not every or self.frame // every <= getattr(self, done):
            return False
        setattr(self, done, self.frame // every)
        return True


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
                 "sampler_rng": generator.get_state(), "torch_rng": global_rng_state()}
        run.save("last", state, {"frame": loop.frame, "games": stats.games,
                                 "cumulativeReward100": loop.best, "loop": vars(loop)})

    logger = run.open_logger(algo.max_frames, "frame", done=loop.frame)
    planned = (f" (planned for {algo.max_seconds:.0f} s at the {loop.planned_pace:.0f} "
               f"frames/s timed at the start)" if loop.planned_frames == algo.max_frames else "")
    logger.info(f"training {cfg.name} on {device}: {algo.num_envs} games in parallel, "
                f"up to {algo.max_frames} frames{planned}; run dir {run_dir}")
    clock = Clock(loop)
    ladder = epsilon_ladder(algo, device)
    while loop.frame < algo.max_frames:
        epsilon = linear_decay(loop.frame, algo.epsilon_init, algo.epsilon_final,
                               algo.epsilon_decay_frames)
        with autocast:
            actions = act(online, obs, epsilon ** ladder, generator)
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
            if loop.due(algo.sync_every_frames, "syncs"):
                sync(online, target)
        if loop.due(algo.video_every_frames, "videos"):
            log_video(run, cfg, online, algo, loop.frame, device)
        if loop.due(algo.eval_every_frames, "evals"):
            record = evaluate_greedily(env, online, algo, cfg.seed, device, loop, clock, autocast)
            keep_best_eval(run, loop, record, online)
            if algo.stop_eval_return is not None and record["mean_return"] >= algo.stop_eval_return:
                break
        loop.train_seconds = clock.seconds()
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


def plan_by_budget(cfg, env, online, target, loop: LoopState, autocast,
                   share: float = 0.9) -> None:
    """Size the run to its time budget on this machine: time the loop's steady pace (act,
    step, store, and learn at the recipe's replay ratio) for a few seconds on copies of
    the nets, a scratch memory of the recipe's size and scratch games, then plan the
    frames that fill `share` of what is left of algo.max_seconds (the rest for greedy
    evaluations and pace changes). The timing counts as training time; random streams
    are left as they were."""
    algo, began = plain(cfg.algo), time.perf_counter()
    torch_rng, device = global_rng_state(), next(online.parameters()).device
    online, target = copy.deepcopy(online), copy.deepcopy(target)
    optimizer = instantiate(algo.optimizer)(online.parameters(), lr=algo.lr)
    envs = env.batched(algo.num_envs, device, seed=cfg.seed + 2)
    memory, window = make_memory(algo, env, envs, device), NStepWindow(algo.n_step, algo.gamma)
    # draws range over the whole memory, as they will for most of the run (a larger
    # memory costs more cache misses and a longer priority sum)
    memory.size = memory.capacity
    if algo.prioritized:
        memory.priorities.fill_(1.0)
    generator, scratch = make_generator(cfg.seed + 2, device), LoopState()
    obs, mirrored = envs.reset(), env.mirrored if algo.mirror else None
    frames, timed_from = 0, None
    while timed_from is None or time.perf_counter() - timed_from < 8.0:
        with autocast:
            actions = act(online, obs, 0.5, generator)
        next_obs, reward, terminated, truncated = envs.step(actions)
        ended = terminated | truncated
        store(memory, window, obs, actions, reward, next_obs, terminated, ended)
        obs = envs.reset_done(ended)
        updates = scratch.updates_due(algo)
        if updates:
            learn(online, target, optimizer, memory, algo, 0, updates, generator, autocast,
                  mirrored)
        if timed_from is not None:
            frames += algo.num_envs
        elif updates:  # the first update warms up: the timing starts after it
            timed_from = time.perf_counter()
    pace = frames / (time.perf_counter() - timed_from)
    set_global_rng_state(torch_rng)
    loop.train_seconds = time.perf_counter() - began
    loop.planned_pace = round(pace, 1)
    loop.planned_frames = max(algo.num_envs,
                              int(pace * share * (algo.max_seconds - loop.train_seconds)))


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
    set_global_rng_state(state["torch_rng"])
    if envs.restores_games:
        window.load_state_dict(state["window"], device)
        obs = state["obs"].to(device)
    else:  # a gymnasium env's games in progress cannot be saved: new ones start
        obs = envs.reset()
        stats.game_return.zero_()
    return obs, state["loss"].to(device), state["q_mean"].to(device)


class Clock:
    """Training time (greedy evaluations left out, time before a resume added), and when
    the loop last logged and saved."""

    def __init__(self, loop: LoopState):
        self.loop = loop
        self.start = self.last_log = self.last_save = time.perf_counter() - loop.train_seconds
        self.last_log_frame = loop.frame

    def seconds(self) -> float:
        self.now = time.perf_counter()
        return self.now - self.start

    def frames_per_second(self) -> float:
        """Since the last call; the log's framesPerSecond."""
        rate = (self.loop.frame - self.last_log_frame) / max(self.now - self.last_log, 1e-9)
        self.last_log, self.last_log_frame = self.now, self.loop.frame
        return rate

    def checkpoint_due(self, every_seconds: float) -> bool:
        if self.now - self.last_save < every_seconds:
            return False
        self.last_save = time.perf_counter()
        return True


def evaluate_greedily(env, online, algo, seed: int, device: torch.device, loop: LoopState,
                      clock: Clock, autocast) -> dict:
    """`eval_games` greedy games; `seconds` is the training time so far, evaluations
    left out, `wall_seconds` with them. Recorded in the loop's eval history."""
    began = time.perf_counter()
    seconds = began - clock.start - loop.eval_seconds
    # a fresh env with a fixed seed: every evaluation starts from the same boards, and
    # resume has no evaluation stream to restore
    eval_envs = env.batched(algo.eval_games, device, seed=seed + 1000)
    set_training(online, False)
    with autocast:
        games = play_batched(eval_envs, lambda o: online(o).float().argmax(1),
                             algo.eval_max_steps, algo.eval_max_steps_without_reward)
    loop.eval_seconds += time.perf_counter() - began
    record = {"frame": loop.frame, "seconds": round(seconds, 2),
              "wall_seconds": round(began - clock.start, 2),
              **mean_figures(games, eval_envs.counters)}
    loop.eval_history.append(record)
    return record


def log_video(run: Run, cfg, online, algo, frame: int, device: torch.device) -> None:
    """A greedy game of a fresh env as a TensorBoard video (Snake: Q values shaded), as
    long as an evaluation game may last."""
    set_training(online, False)
    log_game_video(run.logger, partial(instantiate, cfg.env), make_choose(online, device),
                   frame, cfg.seed, max_frames=algo.eval_max_steps,
                   max_steps_without_reward=algo.eval_max_steps_without_reward)


def log_games(run: Run, loop: LoopState, stats: GameStats, algo, epsilon: float, loss,
              q_mean, clock: Clock) -> dict:
    """After games finished: scalars, progress bar and history. The means logged."""
    logger = run.logger
    means = stats.means()
    values = {**means, "epsilon": epsilon, "framesPerSecond": clock.frames_per_second()}
    if loop.updates:
        values["loss"], values["q_mean"] = loss.item(), q_mean.item()
        run.check_finite(values["loss"], f"frame {loop.frame}")
    logger.scalars(loop.frame, values)
    live = {"reward100" if name == "cumulativeReward100" else name: value
            for name, value in means.items()}
    logger.progress({**live, "eps": epsilon}, loop.frame - logger.bar.n)
    record = {"frame": loop.frame, "games": stats.games, "seconds": round(loop.train_seconds, 2),
              **{name: round(value, 3) for name, value in means.items()}}
    if not loop.history or loop.frame - loop.history[-1]["frame"] >= algo.history_every_frames:
        loop.history.append(record)
    if stats.full:
        for level in algo.report_reward100_levels:
            if means["cumulativeReward100"] >= level and f"{level:g}" not in loop.reached:
                loop.reached[f"{level:g}"] = record
    return means


def keep_best_eval(run: Run, loop: LoopState, record: dict, online) -> None:
    """Log a greedy evaluation; checkpoints/best_eval: the weights at the best one."""
    run.logger.scalars(loop.frame, {f"eval/{key}": value for key, value in record.items()
                                if key.startswith("mean_")})
    if loop.best_eval is None or record["mean_return"] > loop.best_eval:
        loop.best_eval = record["mean_return"]
        run.save("best_eval", {"q_network": online.state_dict()}, record)


def keep_best(run: Run, loop: LoopState, stats: GameStats, means: dict, online) -> None:
    """checkpoints/best: the weights at the best cumulativeReward100 over 100 games."""
    mean_return = means["cumulativeReward100"]
    if stats.full and (loop.best is None or mean_return > loop.best):
        loop.best, loop.best_frame = mean_return, loop.frame
        run.save("best", {"q_network": online.state_dict()},
                 {"frame": loop.frame, "cumulativeReward100": mean_return, "games": stats.games})


def finished_by_rule(loop: LoopState, stats: GameStats, means: dict, algo) -> bool:
    """The recipe's own stop rules, checked when games finish: a cumulativeReward100 over
    100 games, a time budget."""
    if algo.stop_reward100 is not None and stats.full and \
            means["cumulativeReward100"] >= algo.stop_reward100:
        return True
    return algo.max_seconds is not None and loop.train_seconds >= algo.max_seconds


def finish(run: Run, loop: LoopState, stats: GameStats, device: torch.device) -> dict:
    elapsed = loop.train_seconds
    means = stats.means()
    metrics = {
        "device": str(device), "frames": loop.frame, "games": stats.games,
        "updates": loop.updates, "train_seconds": round(elapsed, 2),
        "frames_per_second": round(loop.frame / max(elapsed, 1e-9), 1),
        **{f"final_{name}": means.get(name) for name in
           ["cumulativeReward100", *[f"{c}100" for c in stats.counters]]},
        "best_cumulativeReward100": loop.best, "best_frame": loop.best_frame,
        "best_eval_return": loop.best_eval, "eval_history": loop.eval_history,
        "planned_frames": loop.planned_frames, "planned_pace": loop.planned_pace,
        "reached": loop.reached, "history": loop.history,
    }
    best_text = f"{loop.best:.1f}" if loop.best is not None else "n/a (under 100 games)"
    summary = (f"{run.cfg.name} seed {run.cfg.seed}: {loop.frame} frames, {stats.games} games "
               f"in {elapsed:.0f}s ({metrics['frames_per_second']:.0f} frames/s), best "
               f"cumulativeReward100 {best_text}")
    if loop.best_eval is not None:
        summary += f", best greedy evaluation {loop.best_eval:.1f}"
    hparams = {"best_cumulativeReward100": loop.best,
               **{f"final_{c}100": means.get(f"{c}100") for c in stats.counters}}
    return run.finish(metrics, hparams, summary)


def mean_figures(games: dict, counters: dict[str, str]) -> dict:
    """Means over finished greedy games (from `play_batched`): return, steps, and each of
    the env's counters under its label (Snake: mean_fruits)."""
    figures = {"mean_return": round(games["returns"].mean().item(), 3),
               "std_return": round(games["returns"].std(unbiased=False).item(), 3),
               "mean_steps": round(games["steps"].float().mean().item(), 2)}
    for name, label in counters.items():
        figures[f"mean_{label}"] = round(games[name].float().mean().item(), 3)
    return figures


def load_q_network(payload: dict, device: torch.device):
    return rebuild_agent(payload, build_q_network, "q_network", device)


def evaluate(payload: dict, args) -> dict:
    """Greedy play (epsilon 0) of `episodes` games at once; one JSON line."""
    device = select_device(args.device)
    cfg, env, q_network = load_q_network(payload, device)
    max_steps = args.max_steps or env.max_steps_per_game or 10_000
    if args.episodes < 1:
        raise UserError("episodes must be at least 1")
    envs = env.batched(args.episodes, device, seed=args.seed)

    @torch.no_grad()
    def act(obs):
        return q_network(obs).argmax(1)

    without_reward = (args.max_steps_without_reward
                      or cfg.algo.get("eval_max_steps_without_reward"))
    games = play_batched(envs, act, max_steps, without_reward)
    summary = {"experiment": payload["experiment"], "checkpoint": args.checkpoint,
               "frame": payload["meta"].get("frame"), "episodes": args.episodes, "seed": args.seed,
               "max_steps_per_game": max_steps, "max_steps_without_reward": without_reward,
               **mean_figures(games, envs.counters)}
    for name, label in envs.counters.items():
        summary[f"max_{label}"] = int(games[name].max())
    report(summary)
    return summary


def watch(payload: dict, args) -> dict:
    """Greedy play in a window, each move's Q values shaded on the board (Snake)."""
    cfg, _, q_network = load_q_network(payload, torch.device("cpu"))
    env_cfg = OmegaConf.merge(cfg.env, {"max_steps_per_game": args.max_steps})
    return watch_agent(partial(instantiate, env_cfg), make_choose(q_network, torch.device("cpu")),
                       args, own_window=is_gymnasium(env_cfg))


def make_choose(q_network, device: torch.device):
    """The greedy move in one unbatched game (watching, videos)."""

    @torch.no_grad()
    def choose(env, obs):
        q = q_network(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])[0]
        env.q_values = q.tolist()  # Snake shades them on the board
        return int(q.argmax())

    return choose
