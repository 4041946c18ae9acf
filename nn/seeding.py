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


def random_streams() -> dict:
    """Every stream `seed_everything` seeded, as tensors a weights-only checkpoint holds:
    torch's (`global_rng_state`), Python's and NumPy's."""
    version, keys, gauss = random.getstate()
    name, np_keys, position, has_gauss, cached = np.random.get_state()
    return {**global_rng_state(),
            "python": torch.tensor([version, *keys], dtype=torch.int64),
            "python_gauss": torch.tensor([] if gauss is None else [gauss], dtype=torch.float64),
            "numpy": torch.tensor([position, has_gauss, *np_keys.tolist()], dtype=torch.int64),
            "numpy_gauss": torch.tensor([cached], dtype=torch.float64)}


def set_random_streams(state: dict) -> None:
    """Put back what `random_streams` read (torch's alone, from an older checkpoint)."""
    set_global_rng_state(state)
    if "python" in state:
        version, *keys = state["python"].tolist()
        gauss = state["python_gauss"].tolist()
        random.setstate((version, tuple(keys), gauss[0] if gauss else None))
        position, has_gauss, *np_keys = state["numpy"].tolist()
        np.random.set_state(("MT19937", np.array(np_keys, dtype=np.uint32), position,
                             has_gauss, state["numpy_gauss"].item()))


def set_global_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
