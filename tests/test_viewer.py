import numpy as np
import pygame
import pytest
from conftest import error_line, run_cli

from envs.cartpole import CartPoleEnv
from envs.snake import SnakeEnv
from nn.viewer import Viewer


def post_key(key):
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="",
                                         scancode=0))


def test_viewer_keys_pause_speed_restart_quit_and_arrows():
    viewer = Viewer(10, "test")
    frame = np.zeros((40, 60, 3), dtype=np.uint8)
    assert viewer.show(frame) is None
    post_key(pygame.K_PLUS)
    post_key(pygame.K_UP)
    assert viewer.show(frame) is None and viewer.fps == pytest.approx(15)
    assert viewer.arrow_pressed == "up"
    post_key(pygame.K_MINUS)
    viewer.show(frame)
    assert viewer.fps == pytest.approx(10)
    post_key(pygame.K_r)
    assert viewer.show(frame) == "restart"
    post_key(pygame.K_SPACE)  # pause: show() waits until a command or unpause
    post_key(pygame.K_ESCAPE)
    assert viewer.show(frame) == "quit" and viewer.paused
    viewer.close()


def test_arrow_keys_turn_the_snake_towards_them():
    env = SnakeEnv()
    env.reset(options={"snake": [(4, 4), (4, 3)], "fruits": [(0, 0)], "heading": 0})
    assert env.human_action("up", set()) == 1  # heading right: up is a left turn
    assert env.human_action("down", set()) == 2
    assert env.human_action("right", set()) == 0 and env.human_action("left", set()) == 0
    assert env.human_action(None, set()) == 0
    cart = CartPoleEnv()
    assert cart.human_action(None, {"left"}) == 0 and cart.human_action(None, set()) == 1


def test_a_person_can_play_through_the_cli_headless():
    result = run_cli("rlgen-watch", "env=snake", "height=6", "width=6", "frames=15", "fps=500")
    assert "played 15 frames" in result.stdout
    assert "unknown env 'snak'" in error_line(run_cli("rlgen-watch", "env=snak", check=False))
