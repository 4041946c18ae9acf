"""A pygame window for a class-conditional generator: generated digits 0-9 for one z
above real digits for comparison, the picked digit large, and z as bars (the book's
sliders).

Keys: space or r resamples z; 0-9 picks a digit; up/down picks a z dimension and
left/right nudges it; Esc quits.
"""

import os

import numpy as np
import torch

from nn.viewer import open_window

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

CELL = 56  # pixels per small digit
BIG = 224  # pixels of the picked digit
NUDGE = 0.1


def to_surface(pygame, image: torch.Tensor, size: int):
    pixels = (image.clamp(0, 1) * 255).byte().numpy().T
    surface = pygame.surfarray.make_surface(np.stack([pixels] * 3, -1))
    return pygame.transform.scale(surface, (size, size))


def view_digits(draw, real: torch.Tensor, latent_size: int, generator: torch.Generator,
                args) -> dict:
    """`draw(z [1, latent]) -> images [10, 28, 28] in [0, 1]`; `real`: [10, 28, 28]."""
    import pygame

    width = max(10 * CELL, BIG + 20 + latent_size * 3) + 20
    screen = open_window((width, 2 * CELL + BIG + 90),
                         "rlgen ACGAN: space resamples z, 0-9 picks, arrows nudge z, Esc")
    font = pygame.font.SysFont(None, 20)
    clock = pygame.time.Clock()

    def new_z():
        return torch.rand(1, latent_size, generator=generator) * 2 - 1

    z, digit, dim, frames, resamples = new_z(), 0, 0, 0, 0
    try:
        while args.frames is None or frames < args.frames:
            quit_now = False
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    quit_now = True
                elif event.type == pygame.KEYDOWN:
                    if event.key in (pygame.K_ESCAPE, pygame.K_q):
                        quit_now = True
                    elif event.key in (pygame.K_SPACE, pygame.K_r):
                        z, resamples = new_z(), resamples + 1
                    elif pygame.K_0 <= event.key <= pygame.K_9:
                        digit = event.key - pygame.K_0
                    elif event.key == pygame.K_UP:
                        dim = (dim - 1) % latent_size
                    elif event.key == pygame.K_DOWN:
                        dim = (dim + 1) % latent_size
                    elif event.key in (pygame.K_LEFT, pygame.K_RIGHT):
                        step = NUDGE if event.key == pygame.K_RIGHT else -NUDGE
                        z[0, dim] = (z[0, dim] + step).clamp(-1, 1)
            if quit_now:
                break
            images = draw(z)
            screen.fill((255, 255, 255))
            screen.blit(font.render("generated", True, (0, 0, 0)), (10, 2))
            for d in range(10):
                screen.blit(to_surface(pygame, images[d], CELL), (10 + d * CELL, 18))
                screen.blit(to_surface(pygame, real[d], CELL), (10 + d * CELL, 22 + CELL))
            pygame.draw.rect(screen, (220, 30, 30), (10 + digit * CELL, 18, CELL, CELL), 2)
            top = 2 * CELL + 40
            screen.blit(font.render(f"real MNIST above; digit {digit} below", True, (0, 0, 0)),
                        (10, top - 14))
            screen.blit(to_surface(pygame, images[digit], BIG), (10, top + 4))
            base = top + 4 + BIG // 2
            for i, value in enumerate(z[0].tolist()):
                colour = (220, 30, 30) if i == dim else (60, 90, 200)
                height = int(value * (BIG // 2 - 4))
                x = BIG + 30 + 3 * i
                pygame.draw.line(screen, colour, (x, base), (x, base - height), 2)
            screen.blit(font.render(f"z[{dim}] = {z[0, dim]:+.2f}", True, (0, 0, 0)),
                        (BIG + 30, top + BIG + 12))
            pygame.display.flip()
            frames += 1
            clock.tick(args.fps)
        if args.record:
            pygame.image.save(screen, args.record)
    finally:
        pygame.display.quit()
    print(f"showed {frames} frames; digit {digit}, z[{dim}] = {z[0, dim]:+.2f}, "
          f"{resamples} resamples", flush=True)
    return {"frames": frames, "digit": digit, "dim": dim, "z": z[0].tolist(),
            "resamples": resamples}
