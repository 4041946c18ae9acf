"""Sizes that come from the command line, checked before they are allocated.

A board of 100000x100000 squares, a layer of two billion units or a corpus of many
gigabytes is refused in one line that names what needs how much, the limit it is over
and the setting to turn, before the allocation that would get the process killed (or a
page of the allocator's own message). The limit is the least of what this process may
really use: the host's available memory, the cgroup's memory.max less what the cgroup
uses (containers, Slurm jobs), the address-space limit (`ulimit -v`) less what the
process has mapped, and on CUDA the device's free memory. An estimate over 80% of it is
refused: the rest is for what the run allocates beside it.
"""

import math
import os
import resource
from pathlib import Path

import torch

from nn.errors import UserError

SHARE = 0.8


class OverMemory(UserError):
    """A size that does not fit: said as it is, never with a hint about something else."""


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def host_limits() -> list[tuple[int, str]]:
    """(bytes this process may still allocate, what limits it) for every limit found."""
    found = []
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    found.append((int(line.split()[1]) * 1024, "available memory"))
    except OSError:
        found.append((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "memory"))
    # cgroup v2 (RLGEN_CGROUP_DIR: another folder with the same two files, for tests)
    cgroup = Path(os.environ.get("RLGEN_CGROUP_DIR", "/sys/fs/cgroup"))
    limit = _read_int(cgroup / "memory.max")
    if limit is not None:
        used = _read_int(cgroup / "memory.current") or 0
        found.append((max(0, limit - used), "left under the cgroup's memory.max"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        mapped = 0
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmSize:"):
                    mapped = int(line.split()[1]) * 1024
        except OSError:
            pass
        found.append((max(0, soft - mapped), "left under the address-space limit (ulimit -v)"))
    return found


def usable(device: torch.device | str = "cpu") -> tuple[int, str]:
    """The least of the limits on a new allocation on `device`, and what it is."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0], f"free on {device}"
    return min(host_limits())


def check_fits(what: str, need: int, knob: str, device: torch.device | str = "cpu",
               share: float = SHARE) -> None:
    """One line, before the allocation, when `need` bytes are over `share` of what the
    process may use on `device`; `knob` says what to change."""
    have, limit = usable(device)
    if need > share * have:
        raise OverMemory(f"{what} needs {gib(need)}, over {share:.0%} of the {gib(have)} "
                        f"{limit}: {knob}")


# weights, their gradients and Adam's two moments: four copies of every parameter
COPIES_IN_TRAINING = 4


def build_network(node, device: torch.device | str = "cpu", **kwargs) -> torch.nn.Module:
    """`instantiate(node, **kwargs)` once its size is known to fit: the network is first
    built on PyTorch's meta device, which records shapes and allocates nothing."""
    from nn.config import instantiate

    try:
        with torch.device("meta"):
            probe = instantiate(node, **kwargs)
    except (UserError, RuntimeError, ValueError, TypeError, NotImplementedError):
        probe = None  # a network that cannot be built on meta: built (and checked) as is
    if probe is not None:
        count = sum(p.numel() for p in probe.parameters())
        size = sum(p.numel() * p.element_size() for p in probe.parameters())
        name = str(node.get("_target_", "the network")).rsplit(".", 1)[-1]
        check_fits(f"the network {name} with {count:,} parameters (weights, gradients and "
                   f"Adam's moments)", size * COPIES_IN_TRAINING,
                   "make it smaller (model.hidden_sizes, model.channels, ...)", device)
    return instantiate(node, **kwargs)


def activation_bytes(network: torch.nn.Module, in_shape, dtype: torch.dtype, batch: int) -> int:
    """Bytes of every layer's output for a batch, from a forward pass of a network built
    on the meta device (shapes only, nothing allocated): an upper bound of what a forward
    pass holds at once, and what a backward pass keeps."""
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in network.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            network(torch.zeros(batch, *in_shape, dtype=dtype, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def check_text_file(path: Path, what: str, knob: str) -> None:
    """A text file as a run loads it: the string, its character ids as a Python list and
    as an int64 tensor, about 20 bytes a character, checked from the file's size."""
    size = Path(path).stat().st_size
    check_fits(f"{what} ({size:,} bytes, about {math.ceil(size / 2**20):,} MiB)", 20 * size, knob)
