"""Pygame drawing of a Snake game: grid, snake with a marked head, fruit, score and
length, and the book's overlay that shades each square the head can move into by the
Q value of that move (values printed), when the env carries `q_values`."""

import pygame

from envs.screen import Screen

CELL, BAR = 44, 56
BACKGROUND, GRID, INK = (245, 245, 240), (210, 210, 205), (40, 40, 40)
BODY, HEAD, FRUIT = (70, 130, 80), (25, 70, 35), (210, 40, 40)


def q_colour(value: float, low: float, high: float) -> tuple[int, int, int]:
    """Red for the worst of the moves, green for the best."""
    t = 0.5 if high - low < 1e-9 else (value - low) / (high - low)
    return (int(230 - 150 * t), int(110 + 120 * t), 110)


class SnakeRenderer:
    def __init__(self, height: int, width: int, mode: str, fps: int):
        self.height, self.width = height, width
        size = (max(width * CELL, 360), height * CELL + BAR)
        self.screen = Screen(size, mode, fps, "rlgen snake")
        self.font = pygame.font.Font(None, 26)
        self.small = pygame.font.Font(None, 20)

    def square(self, y: int, x: int) -> pygame.Rect:
        return pygame.Rect(x * CELL, BAR + y * CELL, CELL, CELL)

    def draw(self, env):
        s = self.screen.surface
        s.fill(BACKGROUND)
        for y in range(self.height):
            for x in range(self.width):
                pygame.draw.rect(s, GRID, self.square(y, x), 1)
        if env.q_values is not None and env.snake:
            values = [float(v) for v in env.q_values]
            low, high = min(values), max(values)
            for (y, x), value in zip(env.next_head_squares(), values, strict=True):
                if 0 <= y < self.height and 0 <= x < self.width:
                    rect = self.square(y, x)
                    pygame.draw.rect(s, q_colour(value, low, high), rect.inflate(-2, -2))
                    label = self.small.render(f"{value:.1f}", True, INK)
                    s.blit(label, label.get_rect(center=rect.center))
        for y, x in env.fruits:
            pygame.draw.circle(s, FRUIT, self.square(y, x).center, CELL // 3)
        for i, (y, x) in enumerate(env.snake):
            rect = self.square(y, x).inflate(-6, -6)
            pygame.draw.rect(s, HEAD if i == 0 else BODY, rect, border_radius=6)
        if env.snake:  # eyes on the head
            hy, hx = env.snake[0]
            centre = self.square(hy, hx).center
            pygame.draw.circle(s, (255, 255, 255), centre, 5)
        text = f"fruits {env.eaten}   length {len(env.snake)}   step {env.steps}"
        s.blit(self.font.render(text, True, INK), (10, 8))
        if env.caption:
            s.blit(self.small.render(env.caption, True, INK), (10, 32))
        return self.screen.present()

    def close(self):
        self.screen.close()
