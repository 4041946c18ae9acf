"""Playing a trained agent: batched evaluation and the pygame watch loop.

An algorithm module hands these an env and a function that picks actions; the loops
know nothing about how the agent was trained.
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
    greedy: bool = False  # policy-gradient agents: False samples, as the book's Test button
    max_steps: int | None = None  # per game; default: the run's max_steps_per_game


@dataclass
class WatchArgs:
    run: str = MISSING
    checkpoint: str = "best"
    seed: int = 0
    greedy: bool = False
    fps: int | None = None  # default: the env's own speed
    max_steps: int | None = None  # per game; default: no limit, like the book's Test
    games: int | None = None  # stop after this many games (default: until closed)
    frames: int | None = None  # stop after this many frames (recording default: 300)
    record: str | None = None  # write frames to this .gif (or the last one to a .png)


@torch.no_grad()
def play_batched(envs, act, max_steps: int) -> dict[str, torch.Tensor]:
    """Play one game in each of the batched envs. Per game: `steps`, `returns`, and the
    env's `eaten` and `length` counters at the game's end where the env keeps them."""
    obs = envs.reset()
    n, device = envs.num_envs, envs.device
    live = torch.ones(n, dtype=torch.bool, device=device)
    games = {"steps": torch.zeros(n, dtype=torch.long, device=device),
             "returns": torch.zeros(n, dtype=torch.float64, device=device)}
    counters = [name for name in ("eaten", "length") if hasattr(envs, name)]
    for name in counters:
        games[name] = getattr(envs, name).clone()
    for _ in range(max_steps):
        obs, reward, terminated, truncated = envs.step(act(obs))
        games["steps"] += live
        games["returns"] += reward * live
        for name in counters:  # finished games keep the value they ended with
            games[name] = torch.where(live, getattr(envs, name), games[name])
        live &= ~(terminated | truncated)
        if not live.any():
            break
    return games


def report(summary: dict) -> None:
    """Evaluation results: one JSON line on stdout."""
    print(json.dumps(summary), flush=True)


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


class Viewer:
    """A pygame window showing rendered frames. Keys: space pauses, + and - change the
    speed, r restarts the game, Esc (or closing the window) quits."""

    def __init__(self, fps: float, title: str):
        import pygame

        self.pygame = pygame
        pygame.display.init()
        pygame.display.set_caption(title)
        self.fps = fps
        self.screen = None
        self.clock = pygame.time.Clock()
        self.paused = False

    def show(self, frame: np.ndarray) -> str | None:
        """Draw a frame and wait one tick; returns "quit", "restart" or None."""
        pygame = self.pygame
        if self.screen is None:
            self.screen = pygame.display.set_mode((frame.shape[1], frame.shape[0]))
        while True:
            surface = pygame.surfarray.make_surface(np.transpose(frame, (1, 0, 2)))
            self.screen.blit(surface, (0, 0))
            pygame.display.flip()
            command = self.handle_events()
            self.clock.tick(self.fps)
            if command or not self.paused:
                return command

    def handle_events(self) -> str | None:
        pygame = self.pygame
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                return "quit"
            if event.type != pygame.KEYDOWN:
                continue
            if event.key in (pygame.K_ESCAPE, pygame.K_q):
                return "quit"
            if event.key == pygame.K_SPACE:
                self.paused = not self.paused
            elif event.key in (pygame.K_PLUS, pygame.K_EQUALS, pygame.K_KP_PLUS):
                self.fps = min(self.fps * 1.5, 1000)
            elif event.key in (pygame.K_MINUS, pygame.K_KP_MINUS):
                self.fps = max(self.fps / 1.5, 1)
            elif event.key == pygame.K_r:
                return "restart"
        return None

    def close(self):
        self.pygame.display.quit()


def watch_agent(make_env, choose, args) -> dict:
    """Play games, showing each state in a window (or recording it) before the move.

    `choose(env, obs)` returns the action and may annotate the env for drawing (e.g.
    Snake's Q values)."""
    import pygame

    recording = args.record is not None
    if recording and Path(args.record).suffix.lower() not in (".gif", ".png"):
        raise UserError(f"record={args.record}: use a .gif (all frames) or .png (last frame)")
    frame_limit = args.frames if args.frames is not None else (300 if recording else None)
    env = make_env(render_mode="rgb_array")
    fps = args.fps or env.metadata["render_fps"]
    try:
        viewer = None if recording else Viewer(fps, f"rlgen {type(env).__name__}")
    except pygame.error as err:
        raise UserError(f"cannot open a window ({err}); run under a display (e.g. xvfb-run) "
                        "or pass record=out.gif") from err
    frames, lengths = [], []
    games = frame_count = 0
    obs, _ = env.reset(seed=args.seed)
    env.caption = "game 1"
    try:
        while True:
            action = choose(env, obs)
            frame = env.render()
            frame_count += 1
            if recording:
                frames.append(frame)
            else:
                command = viewer.show(frame)
                if command == "quit":
                    break
                if command == "restart":
                    obs, _ = env.reset()
                    continue
            obs, _, terminated, truncated, info = env.step(action)
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
        if viewer is not None:
            viewer.close()
    if recording:
        save_recording(frames, Path(args.record), fps)
    print(f"watched {frame_count} frames, {games} finished games {lengths}"
          + (f"; wrote {args.record}" if recording else ""))
    return {"frames": frame_count, "games_finished": games, "game_steps": lengths}
