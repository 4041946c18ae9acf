"""What a DQN run keeps besides its learning step: the schedules (epsilon, learning rate,
priorities), the last 100 games' figures, the loop's counters and clock, the plan that
sizes the run to its time budget, greedy evaluations, logging, and which checkpoint is
kept as best. rl/dqn.py's loop calls these; the step itself (act, store, sample, the TD
target, the update, the target sync) is written out there."""

import copy
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from nn import budget
from nn.config import instantiate, plain
from nn.run import Run
from nn.seeding import make_generator
from rl.play import log_game_video, mean_figures, play_batched
from rl.replay import NStepWindow, PrioritizedReplayMemory, ReplayMemory


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


def set_training(module: torch.nn.Module, training: bool) -> None:
    """module.train(training), skipped when already so (it walks every submodule)."""
    if module.training != training:
        module.train(training)


def make_memory(algo, env, envs, device: torch.device) -> ReplayMemory:
    shape = tuple(env.observation_space.shape)
    if algo.prioritized:
        return PrioritizedReplayMemory(algo.replay_size, shape, envs.observation_dtype, device,
                                       algo.priority_alpha)
    return ReplayMemory(algo.replay_size, shape, envs.observation_dtype, device)


def make_choose(q_network, device: torch.device):
    """The greedy move in one unbatched game (watching, videos)."""

    @torch.no_grad()
    def choose(env, obs):
        q = q_network(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])[0]
        env.q_values = q.tolist()  # Snake shades them on the board
        return int(q.argmax())

    return choose


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
    """The training loop's counters and records: with the parts the run keeps (nets,
    optimizer, replay memory, games, random streams) all a resumed run needs."""
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
    plan_frame: int = 0  # where the latest plan was made: its frame and training seconds
    plan_seconds: float = 0.0
    replans: list = field(default_factory=list)  # each re-plan: when, the pace, the frames
    # tensors, saved with the networks: the games' observations, the last loss and mean Q
    obs: Any = None
    loss: Any = None
    q_mean: Any = None

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


def plan_by_budget(cfg, env, online, target, loop: LoopState, autocast, act, learn,
                   share: float = 0.9) -> None:
    """Size the run to its time budget on this machine: time the loop's steady pace (act,
    step, store, and learn at the recipe's replay ratio) for a few seconds on copies of
    the nets, a scratch memory of the recipe's size and scratch games, then plan the
    frames that fill `share` of what is left of algo.max_seconds (the rest for greedy
    evaluations and pace changes). `act` and `learn` are the loop's own (rl/dqn.py). The
    timing counts as training time; random streams are left as they were (nn/budget.py)."""
    algo, began = plain(cfg.algo), time.perf_counter()
    device = next(online.parameters()).device
    online, target = copy.deepcopy(online), copy.deepcopy(target)
    optimizer = instantiate(algo.optimizer)(online.parameters(), lr=algo.lr)
    envs = env.batched(algo.num_envs, device, seed=cfg.seed + 2)
    memory = make_memory(algo, env, envs, device)
    window = NStepWindow(algo.n_step, algo.gamma, device)
    # draws range over the whole memory, as they will for most of the run (a larger
    # memory costs more cache misses and a longer priority sum)
    memory.size = memory.capacity
    if algo.prioritized:
        memory.priorities.fill_(1.0)
    generator, scratch = make_generator(cfg.seed + 2, device), LoopState()
    obs, mirrored = envs.reset(), env.mirrored if algo.mirror else None
    learned = False

    def step() -> int:  # one step of the loop; frames count from the first update on
        nonlocal obs, learned
        with autocast:
            actions = act(online, obs, 0.5, generator, int(env.action_space.n))
        next_obs, reward, terminated, truncated = envs.step(actions)
        ended = terminated | truncated
        transition = window.push(obs, actions, reward, next_obs, terminated, ended)
        if transition is not None:
            memory.add(*transition)
        obs = envs.reset_done(ended)
        updates = scratch.updates_due(algo)
        if updates:
            learn(online, target, optimizer, memory, algo, 0, updates, generator, autocast,
                  mirrored)
            learned = True
        return algo.num_envs if learned else 0

    pace = budget.measure_pace(step, seconds=8.0)
    loop.train_seconds = loop.plan_seconds = time.perf_counter() - began
    loop.planned_pace = round(pace, 1)
    loop.planned_frames = budget.plan(pace, algo.max_seconds, loop.train_seconds, share,
                               minimum=algo.num_envs)


def planned(loop: LoopState, algo) -> str:
    """What the log says of a run sized to its time budget ("" for one given max_frames)."""
    if loop.planned_frames != algo.max_frames:
        return ""
    return (f" (planned for {algo.max_seconds:.0f} s at the {loop.planned_pace:.0f} frames/s "
            "timed at the start)")


def new_games(envs, window: NStepWindow, stats: GameStats):
    """Fresh games for a resumed run whose env cannot save its games in progress (a
    gymnasium env's): the steps and returns of the old ones are dropped. The observations."""
    window.clear()
    stats.game_return.zero_()
    return envs.reset()


def replan_due(loop: LoopState, algo) -> bool:
    """A planned run (not one given max_frames) whose training time has passed the next
    share of algo.replan_at."""
    done = len(loop.replans)
    return (loop.planned_frames is not None and done < len(algo.replan_at)
            and loop.train_seconds >= algo.replan_at[done] * algo.max_seconds)


def replan(loop: LoopState, algo, share: float = 0.9) -> str:
    """Plan the frames again at the pace the loop kept since the last plan, filling
    `share` of the time left as the first plan did, and size the schedules to the new
    plan (a schedule already past its end stays ended). Returns a line for the log."""
    pace = (loop.frame - loop.plan_frame) / max(loop.train_seconds - loop.plan_seconds, 1e-9)
    before = loop.planned_frames
    loop.planned_frames = loop.frame + budget.plan(pace, algo.max_seconds, loop.train_seconds,
                                                   share, minimum=algo.num_envs)
    loop.plan_frame, loop.plan_seconds = loop.frame, loop.train_seconds
    loop.replans.append({"frame": loop.frame, "seconds": round(loop.train_seconds, 1),
                         "pace": round(pace, 1), "planned_frames": loop.planned_frames})
    size_schedules(algo, loop.planned_frames)
    return (f"re-planned at {loop.train_seconds:.0f} s: {pace:.0f} frames/s since the last "
            f"plan, {before} -> {loop.planned_frames} frames")


# the evaluations that pick `best_eval` play boards seeded run seed + this; reported
# games (bench.snake: run seed + 5000) must come from other seeds
SELECTION_SEED_OFFSET = 1000


def evaluate_greedily(env, online, algo, seed: int, device: torch.device, loop: LoopState,
                      clock: Clock, autocast) -> dict:
    """`eval_games` greedy games; `seconds` is the training time so far, evaluations
    left out, `wall_seconds` with them. Recorded in the loop's eval history."""
    began = time.perf_counter()
    seconds = began - clock.start - loop.eval_seconds
    # a fresh env with a fixed seed: every evaluation starts from the same boards, and
    # resume has no evaluation stream to restore
    eval_envs = env.batched(algo.eval_games, device, seed=seed + SELECTION_SEED_OFFSET)
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
        run.progress(loop.frame, record)
    if stats.full:
        for level in algo.report_reward100_levels:
            if means["cumulativeReward100"] >= level and f"{level:g}" not in loop.reached:
                loop.reached[f"{level:g}"] = record
    return means


def keep_best_eval(run: Run, loop: LoopState, record: dict) -> None:
    """Log a greedy evaluation; checkpoints/best_eval: the weights at the best one."""
    run.logger.scalars(loop.frame, {f"eval/{key}": value for key, value in record.items()
                                if key.startswith("mean_")})
    if loop.best_eval is None or record["mean_return"] > loop.best_eval:
        loop.best_eval = record["mean_return"]
        run.save("best_eval", only=("q_network",), **record)


def keep_best(run: Run, loop: LoopState, stats: GameStats, means: dict) -> None:
    """checkpoints/best: the weights at the best cumulativeReward100 over 100 games."""
    mean_return = means["cumulativeReward100"]
    if stats.full and (loop.best is None or mean_return > loop.best):
        loop.best, loop.best_frame = mean_return, loop.frame
        run.save("best", only=("q_network",), cumulativeReward100=mean_return, games=stats.games)


def finished_by_rule(loop: LoopState, stats: GameStats, means: dict, algo) -> bool:
    """The recipe's own stop rules, checked when games finish: a cumulativeReward100 over
    100 games, a time budget."""
    if algo.stop_reward100 is not None and stats.full and \
            means["cumulativeReward100"] >= algo.stop_reward100:
        return True
    return algo.max_seconds is not None and loop.train_seconds >= algo.max_seconds


def finish(run: Run, loop: LoopState, stats: GameStats, device: torch.device) -> dict:
    if loop.best_frame is None:  # fewer than 100 games: the last weights are the best we have
        run.save("best", only=("q_network",), cumulativeReward100=None, games=stats.games)
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
        "replans": loop.replans, "reached": loop.reached, "history": loop.history,
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
