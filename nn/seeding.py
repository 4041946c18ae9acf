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


def global_rng_state() -> dict:
    """torch's global random streams for a checkpoint: the CPU's, and every CUDA
    device's where CUDA is in use (dropout on a GPU draws from those)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
