"""Pygame drawing of a cart-pole state: rail, cart with wheels, pole, red limit lines,
the step count and the current action. Used by the env's `render()` and by live
rendering during training, so a game looks the same wherever it is shown."""

import math

import pygame

from envs.screen import Screen

WIDTH, HEIGHT = 600, 400
RAIL_Y = 300
CART_W, CART_H, WHEEL_R = 60, 30, 8
BACKGROUND, INK, RED = (255, 255, 255), (40, 40, 40), (220, 30, 30)
CART_COLOUR, POLE_COLOUR, AXLE_COLOUR = (60, 90, 160), (200, 150, 90), (120, 120, 120)


class CartPoleRenderer:
    def __init__(self, physics, mode: str, fps: int):
        self.physics = physics
        self.screen = Screen((WIDTH, HEIGHT), mode, fps, "rlgen cart-pole")
        self.font = pygame.font.Font(None, 26)
        world_width = 2 * physics.x_threshold * 1.2
        self.scale = WIDTH / world_width

    def to_screen_x(self, x: float) -> int:
        return int(WIDTH / 2 + x * self.scale)

    def draw(self, state, steps: int, action: int | None, caption: str = ""):
        x, _, theta, _ = (float(v) for v in state)
        s = self.screen.surface
        s.fill(BACKGROUND)
        # rail and the red lines the cart must stay between
        pygame.draw.line(s, INK, (0, RAIL_Y), (WIDTH, RAIL_Y), 2)
        for limit in (-self.physics.x_threshold, self.physics.x_threshold):
            lx = self.to_screen_x(limit)
            pygame.draw.line(s, RED, (lx, RAIL_Y - 170), (lx, RAIL_Y + 30), 3)
        # cart body on two wheels
        cx = self.to_screen_x(x)
        body = pygame.Rect(0, 0, CART_W, CART_H)
        body.midbottom = (cx, RAIL_Y - WHEEL_R)
        pygame.draw.rect(s, CART_COLOUR, body, border_radius=4)
        for wx in (cx - CART_W // 3, cx + CART_W // 3):
            pygame.draw.circle(s, INK, (wx, RAIL_Y - WHEEL_R), WHEEL_R)
        # the pole leans the way theta says: positive theta tips it to the right
        pivot = (cx, body.top)
        length = 2 * self.physics.pole_half_length * self.scale
        tip = (pivot[0] + length * math.sin(theta), pivot[1] - length * math.cos(theta))
        pygame.draw.line(s, POLE_COLOUR, pivot, tip, 10)
        pygame.draw.circle(s, AXLE_COLOUR, pivot, 5)
        # text: step count and action
        lines = [f"step {steps}"]
        if action is not None:
            lines.append("action: push " + ("right  >" if action == 1 else "<  left"))
        if caption:
            lines.append(caption)
        for i, text in enumerate(lines):
            s.blit(self.font.render(text, True, INK), (10, 10 + 24 * i))
        return self.screen.present()

    def close(self):
        self.screen.close()
