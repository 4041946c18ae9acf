"""A pygame window for exploring a 2-D latent space: the latent plane on the left
(test images as dots coloured by class), the decoded image of the point under the
mouse on the right, updated as the mouse moves.

Keys: arrows or +/- widen and narrow the plotted range, Esc quits.
"""

import os

import numpy as np

from nn.viewer import open_window

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

PLANE = 480  # pixels per side of the latent plane
IMAGE = 280  # pixels per side of the decoded image
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def to_pixels(z: np.ndarray, extent: float) -> np.ndarray:
    """Latent coordinates -> plane pixels (z2 grows upwards)."""
    scaled = (z + extent) / (2 * extent) * (PLANE - 1)
    return np.stack([scaled[:, 0], PLANE - 1 - scaled[:, 1]], 1).round().astype(int)


def to_latent(x: int, y: int, extent: float) -> np.ndarray:
    return np.array([x / (PLANE - 1) * 2 * extent - extent,
                     (PLANE - 1 - y) / (PLANE - 1) * 2 * extent - extent], dtype=np.float32)


def explore(decode, z: np.ndarray, labels: np.ndarray, classes: list[str], args) -> dict:
    """`decode(point [2]) -> image [28, 28] in [0, 1]`. Runs until closed, or for
    `args.frames` frames; the mouse may also be moved by posted events (tests)."""
    import pygame

    screen = open_window((PLANE + IMAGE + 40, PLANE + 40),
                         "rlgen latent explorer: move the mouse; arrows/+/- zoom, Esc quits")
    font = pygame.font.SysFont(None, 20)
    clock = pygame.time.Clock()
    extent, mouse = float(args.range), (PLANE // 2, PLANE // 2)
    frames, decoded_at = 0, None
    try:
        while args.frames is None or frames < args.frames:
            quit_now = False
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    quit_now = True
                elif event.type == pygame.MOUSEMOTION and event.pos[0] < PLANE:
                    mouse = (event.pos[0], min(event.pos[1], PLANE - 1))
                elif event.type == pygame.KEYDOWN:
                    if event.key in (pygame.K_ESCAPE, pygame.K_q):
                        quit_now = True
                    elif event.key in (pygame.K_UP, pygame.K_RIGHT, pygame.K_PLUS,
                                       pygame.K_EQUALS, pygame.K_KP_PLUS):
                        extent *= 1.25
                    elif event.key in (pygame.K_DOWN, pygame.K_LEFT, pygame.K_MINUS,
                                       pygame.K_KP_MINUS):
                        extent /= 1.25
            if quit_now:
                break
            point = to_latent(*mouse, extent)
            screen.fill((255, 255, 255))
            pygame.draw.rect(screen, (245, 245, 245), (0, 0, PLANE, PLANE))
            for (px, py), label in zip(to_pixels(z, extent), labels, strict=True):
                if 0 <= px < PLANE and 0 <= py < PLANE:
                    screen.fill(COLOURS[int(label) % 10], (px - 1, py - 1, 3, 3))
            pygame.draw.circle(screen, (0, 0, 0), mouse, 6, 2)
            image = decode(point)
            decoded_at = point
            pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8).T
            surface = pygame.surfarray.make_surface(np.stack([pixels] * 3, -1))
            screen.blit(pygame.transform.scale(surface, (IMAGE, IMAGE)), (PLANE + 20, 10))
            screen.blit(font.render(f"z = ({point[0]:+.2f}, {point[1]:+.2f})   range "
                                    f"+/-{extent:.2f}", True, (0, 0, 0)), (8, PLANE + 12))
            for i, name in enumerate(classes):
                screen.fill(COLOURS[i % 10], (PLANE + 20, IMAGE + 24 + 18 * i, 10, 10))
                screen.blit(font.render(name, True, (0, 0, 0)), (PLANE + 36, IMAGE + 20 + 18 * i))
            pygame.display.flip()
            frames += 1
            clock.tick(args.fps)
        if args.record:
            pygame.image.save(screen, args.record)
    finally:
        pygame.display.quit()
    print(f"showed {frames} frames; last decoded z = "
          f"({decoded_at[0]:+.3f}, {decoded_at[1]:+.3f})" if decoded_at is not None
          else f"showed {frames} frames", flush=True)
    return {"frames": frames, "extent": extent,
            "last_z": None if decoded_at is None else decoded_at.tolist()}
