"""A pygame window that shows rendered frames and reads the keyboard: watching agents,
the generative models' viewers, and people playing an env by hand (nn/tools/by_hand.py)."""

import numpy as np

from nn.errors import UserError


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
        self.arrow_pressed: str | None = None  # the last arrow key pressed (for players)

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
            elif event.key in self.arrows:
                self.arrow_pressed = self.arrows[event.key]
        return None

    @property
    def arrows(self) -> dict:
        pygame = self.pygame
        return {pygame.K_LEFT: "left", pygame.K_RIGHT: "right", pygame.K_UP: "up",
                pygame.K_DOWN: "down"}

    def arrows_held(self) -> set[str]:
        pressed = self.pygame.key.get_pressed()
        return {name for key, name in self.arrows.items() if pressed[key]}

    def close(self):
        self.pygame.display.quit()


def open_window(size: tuple[int, int], caption: str):
    """A pygame window (fonts ready), or one clear line when there is no display."""
    import pygame

    pygame.display.init()
    pygame.font.init()
    try:
        screen = pygame.display.set_mode(size)
    except pygame.error as err:
        raise UserError(f"cannot open a window ({err}); run under a display") from err
    pygame.display.set_caption(caption)
    return screen
