"""Playing a trained agent: batched evaluation and the pygame watch loop.

An algorithm module hands these an env and a function that picks actions; the loops
know nothing about how the agent was trained.
"""

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gymnasium
import numpy as np
import torch
from omegaconf import OmegaConf

from envs.gymnasium_env import is_gymnasium
from nn.checkpoint import load_weights
from nn.config import instantiate
from nn.contracts import OnnxToolArgs, ToolArgs
from nn.device import select_device
from nn.errors import UserError
from nn.export import OnnxNetwork
from nn.media import check_record_path, save_frames
from nn.schema import at_least
from nn.seeding import make_generator
from nn.viewer import Viewer


@dataclass
class EvalArgs(OnnxToolArgs):
    # a run whose env.id is module:EnvId imports that module only when this is true
    import_env_module: bool = False
    episodes: int = at_least(1, 100)
    seed: int = 0  # seeds the games played here
    greedy: bool = False  # policy-gradient agents: False samples, as the book's Test button
    max_steps: int | None = at_least(1, None)  # per game; default: the run's max_steps_per_game
    # end a game after this many steps without a positive reward (Snake: without a fruit);
    # default: the run's algo.eval_max_steps_without_reward, if it has one
    max_steps_without_reward: int | None = at_least(1, None)


@dataclass
class WatchArgs(ToolArgs):
    device: str = "cpu"  # one picture at a time: the CPU is quick enough
    # a run whose env.id is module:EnvId imports that module only when this is true
    import_env_module: bool = False
    seed: int = 0  # seeds the games played here
    greedy: bool = False  # policy-gradient agents: the likeliest move instead of a sampled one
    fps: int | None = at_least(1, None)  # default: the env's own speed
    max_steps: int | None = at_least(1, None)  # per game; default: no limit, like the book's Test
    games: int | None = at_least(1, None)  # stop after this many games (default: until closed)
    # stop after this many frames (recording default: 300, or 10,000 with games=N)
    frames: int | None = at_least(1, None)
    record: str | None = None  # write the frames to this .mp4 or .gif (or the last one to a .png)


@torch.no_grad()
def play_batched(envs, act, max_steps: int,
                 max_steps_without_reward: int | None = None) -> dict[str, torch.Tensor]:
    """Play one game in each of the batched envs, for at most `max_steps` steps and, if
    given, at most `max_steps_without_reward` steps since its last positive reward (a
    greedy agent that loops is stopped without cutting long games short). Per game:
    `steps`, `returns`, and each of the env's `counters` (Snake: fruits eaten, length) as
    it was at the game's end."""
    obs = envs.reset()
    n, device = envs.num_envs, envs.device
    live = torch.ones(n, dtype=torch.bool, device=device)
    games = {"steps": torch.zeros(n, dtype=torch.long, device=device),
             "returns": torch.zeros(n, dtype=torch.float64, device=device)}
    counters = list(getattr(envs, "counters", {}))
    for name in counters:
        games[name] = getattr(envs, name).clone()
    since_reward = torch.zeros(n, dtype=torch.long, device=device)
    for _ in range(max_steps):
        obs, reward, terminated, truncated = envs.step(act(obs))
        games["steps"] += live
        games["returns"] += reward * live
        for name in counters:  # finished games keep the value they ended with
            games[name] = torch.where(live, getattr(envs, name), games[name])
        live &= ~(terminated | truncated)
        if max_steps_without_reward is not None:
            since_reward = torch.where(reward > 0, 0, since_reward + 1)
            live &= since_reward < max_steps_without_reward
        if not live.any():
            break
    return games


def mean_figures(games: dict, counters: dict[str, str]) -> dict:
    """Means over finished greedy games (from `play_batched`): return, steps, and each of
    the env's counters under its label (Snake: mean_fruits)."""
    figures = {"mean_return": round(games["returns"].mean().item(), 3),
               "std_return": round(games["returns"].std(unbiased=False).item(), 3),
               "mean_steps": round(games["steps"].float().mean().item(), 3)}
    for name, label in counters.items():
        figures[f"mean_{label}"] = round(games[name].float().mean().item(), 3)
    return figures


def evaluate_agent(payload: dict, args, env, act, device: torch.device, max_steps: int,
                   max_steps_without_reward: int | None = None, **about) -> dict:
    """The RL trainers' one evaluator (rlgen-eval): `args.episodes` games of `env` at
    once, moves from `act(obs)`; one JSON line with the same figures for every trainer
    and env: return, length and the env's own counters (Snake: fruits). `about`: what
    the trainer adds on the checkpoint (its iteration or frame)."""
    envs = env.batched(args.episodes, device, seed=args.seed)
    games = play_batched(envs, act, max_steps, max_steps_without_reward)
    steps = games["steps"].float()
    summary = {"experiment": payload["experiment"], "checkpoint": args.checkpoint,
               "backend": args.backend, **about,
               "episodes": args.episodes, "seed": args.seed, "greedy": args.greedy,
               "max_steps_per_game": max_steps, "max_steps_without_reward": max_steps_without_reward,
               **mean_figures(games, envs.counters),
               "std_steps": round(steps.std(unbiased=False).item(), 3),
               "min_steps": int(steps.min()), "max_steps": int(steps.max())}
    for name, label in envs.counters.items():
        summary[f"max_{label}"] = int(games[name].max())
    report(summary)
    return summary


def check_model_fits(cfg, env, build, batches: tuple = ()) -> None:
    """The network builds for this env's observations (a conv net needs a board) and fits
    in memory, and so do its forward passes over `batches` ((size, what, knob) each);
    built and run on the meta device, so nothing is allocated."""
    from nn.memory import OverMemory, activation_bytes, check_fits

    try:
        with torch.device("meta"):
            network = build(cfg, env)
    except OverMemory:
        raise
    except UserError as err:
        raise UserError(f"{err}; the env observes shape {tuple(env.observation_space.shape)}: "
                        "pick a model that takes it (e.g. model=mlp)") from err
    shape = env.observation_space.shape
    dtype = torch.uint8 if env.observation_space.dtype == "uint8" else torch.float32
    for size, what, knob in batches:
        check_fits(f"{what} ({size} at once)", activation_bytes(network, shape, dtype, size),
                   knob, select_device(cfg.device))


def action_kind(space) -> str:
    """"discrete", "bounded box" (every bound finite), "unbounded box", or the space's
    class name for any other kind."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return "discrete"
    if isinstance(space, gymnasium.spaces.Box):
        finite = np.isfinite(space.low).all() and np.isfinite(space.high).all()
        return "bounded box" if finite else "unbounded box"
    return type(space).__name__


# what to train instead, for each kind of action space
ALGORITHMS_FOR = {"discrete": "DQN, REINFORCE or PPO", "bounded box": "PPO or SAC",
                  "unbounded box": "PPO"}


def check_action_space(env, kinds: tuple[str, ...], algorithm: str) -> None:
    """An algorithm that cannot act in the env's action space is refused in one line
    that names those that can."""
    kind = action_kind(env.action_space)
    if kind not in kinds:
        name = getattr(env, "id", None) or type(env.unwrapped).__name__
        instead = ALGORITHMS_FOR.get(kind)
        raise UserError(f"{name} has {kind} actions ({env.action_space}); {algorithm} acts in "
                        f"{' or '.join(kinds)} action spaces"
                        + (f": train it with {instead}" if instead else ""))


def action_bounds(env, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A Box action space's low and high bounds as tensors (None for discrete actions)."""
    space = env.action_space
    if not isinstance(space, gymnasium.spaces.Box):
        return None
    return (torch.as_tensor(space.low, dtype=torch.float32, device=device),
            torch.as_tensor(space.high, dtype=torch.float32, device=device))


def random_actions(space, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` actions drawn uniformly from a Discrete space or a Box (a standard normal
    where a Box has no bounds)."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return torch.randint(int(space.n), (count,), generator=generator)
    uniform = torch.rand((count, *space.shape), generator=generator)
    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in (space.low, space.high))
    bounded = torch.isfinite(low) & torch.isfinite(high)
    normal = torch.randn((count, *space.shape), generator=generator)
    return torch.where(bounded, low.nan_to_num() + uniform * (high - low).nan_to_num(), normal)


def sample_observations(env, count: int = 256, seed: int = 0) -> torch.Tensor:
    """`count` real observations of `env`: its games' starts and the states random moves
    lead to (an export is checked on them)."""
    envs = env.batched(64, torch.device("cpu"), seed=seed)
    generator = torch.Generator().manual_seed(seed)
    seen = [envs.reset()]
    while sum(len(obs) for obs in seen) < count:
        actions = random_actions(env.action_space, envs.num_envs, generator)
        _, _, terminated, truncated = envs.step(actions)
        seen.append(envs.reset_done(terminated | truncated))
    return torch.cat(seen)[:count]


def observation_about(env) -> str:
    """The observation in words: rlgen's envs say it themselves; gymnasium's docstrings
    have an "Observation Space" section (its opening, without the markdown table)."""
    own = getattr(env.unwrapped, "observation_about", None)
    if own:
        return own
    doc = env.unwrapped.__doc__ or ""
    section = doc.split("## Observation Space", 1)[1].split("##", 1)[0] if \
        "## Observation Space" in doc else ""
    words = " ".join(line.strip() for line in section.splitlines()
                     if line.strip() and not line.strip().startswith("|"))
    return words[:800] or str(env.observation_space)


def env_manifest(cfg, env) -> dict:
    """What an export's user needs to know of the env: its settings, the observation a
    network takes and what each action means."""
    space, actions = env.observation_space, env.action_space
    names = getattr(env.unwrapped, "action_names", None)
    if isinstance(actions, gymnasium.spaces.Box):  # continuous: the shape and the bounds
        described = {"shape": list(actions.shape), "low": actions.low.tolist(),
                     "high": actions.high.tolist()}
    else:
        described = list(names) if names else [str(a) for a in range(int(actions.n))]
    return {"env": OmegaConf.to_container(cfg.env, resolve=True),
            "observation": {"shape": list(space.shape), "dtype": str(space.dtype),
                            "about": observation_about(env)},
            "actions": described}


def rebuild_agent(payload: dict, build, state_key: str, device: torch.device):
    """The run's config, its env and its trained network, from a checkpoint alone (or
    from an export folder, as `nn.export.read_export` reads it)."""
    cfg = OmegaConf.create(payload["config"])
    env = instantiate(cfg.env)
    if "export" in payload:  # an rlgen-export folder: ONNX Runtime plays, no torch model
        return cfg, env, OnnxNetwork(payload["export"] / f"{state_key}.onnx")
    network = build(cfg, env).to(device)
    load_weights(network, payload, state_key).eval()
    return cfg, env, network


def choose_by(act, device, continuous: bool):
    """The move in one unbatched game (watching, videos) from a batched `act(obs)`."""

    def choose(env, obs):
        action = act(torch.as_tensor(obs, device=device)[None])[0]
        return action.cpu().numpy() if continuous else action.item()

    return choose


def evaluate_policy(payload: dict, args, load, make_act, **about) -> dict:
    """rlgen-eval for an agent that acts through a policy (PPO, SAC): the network from
    `load(payload, device)`, moves from `make_act(network, greedy, generator, bounds)`."""
    device = select_device(args.device)
    cfg, env, network = load(payload, device)
    max_steps = args.max_steps or env.max_steps_per_game
    if max_steps is None:
        raise UserError("pass max_steps=N: this run's games have no step limit")
    env.max_steps_per_game = max_steps
    act = make_act(network, args.greedy, make_generator(args.seed + 1, device),
                   action_bounds(env, device))
    return evaluate_agent(payload, args, env, act, device, max_steps,
                          args.max_steps_without_reward, **about)


def watch_policy(payload: dict, args, load, make_act) -> dict:
    """rlgen-watch for the same agents."""
    device = select_device(args.device)
    cfg, env, network = load(payload, device)
    env_cfg = OmegaConf.merge(cfg.env, {"max_steps_per_game": args.max_steps})
    bounds = action_bounds(env, device)
    act = make_act(network, args.greedy, make_generator(args.seed + 1, device), bounds)
    return watch_agent(partial(instantiate, env_cfg), choose_by(act, device, bounds is not None),
                       args, own_window=is_gymnasium(env_cfg))


def report(summary: dict) -> None:
    """Evaluation results: one JSON line on stdout."""
    print(json.dumps(summary), flush=True)


VIDEO_MAX_FRAMES = 1000  # a game logged to TensorBoard stops here (a greedy agent may loop)


@torch.no_grad()
def game_frames(make_env, choose, seed: int, max_frames: int = VIDEO_MAX_FRAMES,
                max_steps_without_reward: int | None = None):
    """One game from a fresh env: the frame before each move, at most `max_frames` and,
    if given, at most `max_steps_without_reward` since the last positive reward (as
    `play_batched`). Also the env's frame rate."""
    env = make_env(render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed)
        frames, since_reward = [], 0
        while len(frames) < max_frames:
            frames.append(env.render())
            obs, reward, terminated, truncated, _ = env.step(choose(env, obs))
            since_reward = 0 if reward > 0 else since_reward + 1
            if terminated or truncated or since_reward == max_steps_without_reward:
                break
        return frames, env.metadata.get("render_fps") or 30
    finally:
        env.close()


def log_game_video(logger, make_env, choose, step: int, seed: int, **limits) -> None:
    """A greedy game as a video in TensorBoard (tag `game`), at the training step;
    `limits`: those of `game_frames`."""
    frames, fps = game_frames(make_env, choose, seed, **limits)
    logger.video("game", frames, step, fps)


class OwnWindowKeys:
    """For an env that draws its own pygame window (a gymnasium env's render_mode="human"):
    reads the keys the Viewer would, Esc or closing the window quits, r restarts."""

    def __init__(self):
        import pygame

        self.pygame = pygame

    def show(self, frame) -> str | None:
        pygame = self.pygame
        if not pygame.display.get_init():
            return None
        for event in pygame.event.get():
            if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and
                                             event.key in (pygame.K_ESCAPE, pygame.K_q)):
                return "quit"
            if event.type == pygame.KEYDOWN and event.key == pygame.K_r:
                return "restart"
        return None

    def close(self):
        pass


def watch_agent(make_env, choose, args, own_window: bool = False) -> dict:
    """Play games, showing each state in a window (or recording it) before the move.

    `choose(env, obs)` returns the action and may annotate the env for drawing (e.g.
    Snake's Q values). `own_window`: the env draws its own window (render_mode="human",
    at its own speed) and this loop only reads the keys."""
    import pygame

    recording = args.record is not None
    if recording:
        check_record_path(args.record)
    # a recording stops at 300 frames, or with games=N after N games (a game that never
    # ends still stops at 10,000 frames: every frame is held in memory until written)
    frame_limit = args.frames if args.frames is not None else (
        (300 if args.games is None else 10_000) if recording else None)
    own_window = own_window and not recording
    try:
        env = make_env(render_mode="human" if own_window else "rgb_array")
        fps = args.fps or env.metadata.get("render_fps") or 30
        if recording:
            viewer = None
        else:
            viewer = OwnWindowKeys() if own_window else Viewer(fps, f"rlgen {type(env).__name__}")
    except pygame.error as err:
        raise UserError(f"cannot open a window ({err}); run under a display (e.g. xvfb-run) "
                        "or pass record=out.gif") from err
    frames, lengths = [], []
    games = frame_count = steps = 0
    obs, _ = env.reset(seed=args.seed)
    env.caption = "game 1"
    try:
        while True:
            action = choose(env, obs)
            frame = None if own_window else env.render()
            frame_count += 1
            if recording:
                frames.append(frame)
            else:
                command = viewer.show(frame)
                if command == "quit":
                    break
                if command == "restart":
                    obs, _ = env.reset()
                    steps = 0
                    continue
            obs, _, terminated, truncated, _ = env.step(action)
            steps += 1
            if terminated or truncated:
                games += 1
                lengths.append(steps)
                steps = 0
                if args.games is not None and games >= args.games:
                    break
                obs, _ = env.reset()
                env.caption = f"game {games + 1}   last game: {lengths[-1]} steps"
            if frame_limit is not None and frame_count >= frame_limit:
                break
    finally:
        env.close()
        if viewer is not None:
            viewer.close()
    if recording:
        save_frames(frames, Path(args.record), fps)
    print(f"watched {frame_count} frames, {games} finished games {lengths}"
          + (f"; wrote {args.record}" if recording else ""))
    return {"frames": frame_count, "games_finished": games, "game_steps": lengths}
