"""Total seeding, and the RNG state a checkpoint needs to continue a run exactly."""

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a CPU run repeats bit for bit."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A private generator on `device`, so sampling never depends on global RNG use."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
