"""Playing a trained agent: batched evaluation and the pygame watch loop.

An algorithm module hands these an env and an `act(obs_batch) -> actions` function;
the loops know nothing about how the agent was trained.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import MISSING

from nn.errors import UserError


@dataclass
class EvalArgs:
    run: str = MISSING
    checkpoint: str = "best"  # best | last
    episodes: int = 100
    seed: int = 0
    device: str = "auto"
    greedy: bool = False  # False samples actions, as the book's Test button does
    max_steps: int | None = None  # per game; default: the run's max_steps_per_game


@dataclass
class WatchArgs:
    run: str = MISSING
    checkpoint: str = "best"
    seed: int = 0
    greedy: bool = False
    fps: int = 50
    max_steps: int | None = None  # per game; default: no limit, like the book's Test
    games: int | None = None  # stop after this many games (default: until closed)
    frames: int | None = None  # stop after this many frames (recording default: 300)
    record: str | None = None  # write frames to this .gif (or the last one to a .png)


@torch.no_grad()
def play_batched(envs, act, max_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Play one game in each of the batched envs; return each game's length and return."""
    obs = envs.reset()
    live = torch.ones(envs.num_envs, dtype=torch.bool, device=envs.device)
    lengths = torch.zeros(envs.num_envs, dtype=torch.long, device=envs.device)
    returns = torch.zeros(envs.num_envs, dtype=torch.float64, device=envs.device)
    for _ in range(max_steps):
        obs, reward, terminated, truncated = envs.step(act(obs))
        lengths += live
        returns += reward * live
        live &= ~(terminated | truncated)
        if not live.any():
            break
    return lengths, returns


def report(summary: dict) -> None:
    """Evaluation results: one JSON line on stdout."""
    print(json.dumps(summary), flush=True)


def quit_requested() -> bool:
    import pygame

    for event in pygame.event.get():
        if event.type == pygame.QUIT:
            return True
        if event.type == pygame.KEYDOWN and event.key in (pygame.K_ESCAPE, pygame.K_q):
            return True
    return False


def save_recording(frames: list[np.ndarray], path: Path, fps: int) -> None:
    from PIL import Image

    if not frames:
        raise UserError("nothing was recorded")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:],
                       duration=max(1, round(1000 / fps)), loop=0)
    else:
        Image.fromarray(frames[-1]).save(path)


def watch_agent(make_env, act, args) -> dict:
    """Play games in a pygame window (or into a recording) until closed or a limit."""
    recording = args.record is not None
    if recording and Path(args.record).suffix.lower() not in (".gif", ".png"):
        raise UserError(f"record={args.record}: use a .gif (all frames) or .png (last frame)")
    frame_limit = args.frames if args.frames is not None else (300 if recording else None)
    import pygame

    env = make_env(render_mode="rgb_array" if recording else "human")
    env.metadata["render_fps"] = args.fps
    frames, lengths = [], []
    games = frame_count = 0
    try:
        obs, _ = env.reset(seed=args.seed)
    except pygame.error as err:
        raise UserError(f"cannot open a window ({err}); run under a display (e.g. xvfb-run) "
                        "or pass record=out.gif") from err
    env.caption = "game 1"
    try:
        while True:
            action = act(torch.as_tensor(obs)[None])[0].item()
            obs, _, terminated, truncated, info = env.step(action)
            frame_count += 1
            if recording:
                frames.append(env.render())
            elif quit_requested():
                break
            if terminated or truncated:
                games += 1
                lengths.append(info["steps"])
                if args.games is not None and games >= args.games:
                    break
                obs, _ = env.reset()
                env.caption = f"game {games + 1}   last game: {lengths[-1]} steps"
            if frame_limit is not None and frame_count >= frame_limit:
                break
    finally:
        env.close()
    if recording:
        save_recording(frames, Path(args.record), args.fps)
    return {"frames": frame_count, "games_finished": games, "game_steps": lengths}
