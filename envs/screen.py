"""The drawing surface an env renders on: a pygame window ("human") or an off-screen
surface whose pixels are returned ("rgb_array")."""

import os

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402


class Screen:
    def __init__(self, size: tuple[int, int], mode: str, fps: int, title: str):
        pygame.display.init()  # display and fonts only: no audio device is needed
        pygame.font.init()
        self.mode, self.fps = mode, fps
        if mode == "human":
            pygame.display.set_caption(title)
            self.surface = pygame.display.set_mode(size)
            self.clock = pygame.time.Clock()
        else:
            self.surface = pygame.Surface(size)

    def present(self) -> np.ndarray | None:
        """Show the finished drawing (human) or return its pixels as [H, W, 3] uint8."""
        if self.mode == "human":
            pygame.event.pump()
            pygame.display.flip()
            self.clock.tick(self.fps)
            return None
        return np.transpose(pygame.surfarray.array3d(self.surface), (1, 0, 2)).copy()

    def close(self) -> None:
        if self.mode == "human":
            pygame.display.quit()
