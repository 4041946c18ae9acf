"""`rlgen-watch env=NAME`: a person plays an env in a pygame window with the arrow keys."""

from dataclasses import dataclass

from omegaconf import MISSING

from conf.compose import compose
from nn.config import explain_config_error, instantiate, parse_key_values
from nn.errors import UserError
from nn.viewer import Viewer


@dataclass
class PlayArgs:
    env: str = MISSING  # a config in conf/env/, e.g. snake or cartpole
    fps: float | None = None
    frames: int | None = None  # stop after this many frames (default: until closed)


def play_env_by_hand(argv: list[str]) -> dict:
    """Keys other than PlayArgs' are env settings, e.g. `height=12`."""
    ours = [a for a in argv if a.split("=", 1)[0] in ("env", "fps", "frames")]
    args = parse_key_values(PlayArgs, ours)
    env_overrides = [f"env.{a}" for a in argv if a not in ours]
    try:
        cfg = compose([f"env={args.env}", *env_overrides], job_name="play")
    except Exception as err:
        raise UserError(explain_config_error(err)) from err
    return play_by_hand(instantiate(cfg.env, render_mode="rgb_array"), args.fps, args.frames)


def play_by_hand(env, fps: float | None = None, frames: int | None = None) -> dict:
    """A person plays `env` with the arrow keys (the env's `human_action` maps them)."""
    import pygame

    try:
        viewer = Viewer(fps or env.metadata["render_fps"], f"rlgen {type(env).__name__}")
    except pygame.error as err:
        raise UserError(f"cannot open a window ({err}); run under a display") from err
    env.reset()
    env.caption = "arrow keys move; space pauses, r restarts, Esc quits"
    shown = games = 0
    try:
        while frames is None or shown < frames:
            command = viewer.show(env.render())
            shown += 1
            if command == "quit":
                break
            if command == "restart":
                env.reset()
                continue
            action = env.human_action(viewer.arrow_pressed, viewer.arrows_held())
            viewer.arrow_pressed = None
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                games += 1
                env.reset()
                env.caption = f"game over after {info['steps']} steps; playing game {games + 1}"
    finally:
        env.close()
        viewer.close()
    print(f"played {shown} frames, {games} finished games")
    return {"frames": shown, "games_finished": games}
