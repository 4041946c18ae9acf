"""Pick the torch device a run uses: `auto` prefers cuda, then mps, then cpu."""

import logging

import torch

from nn.errors import UserError


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"device={name!r} is not a torch device; use auto, cpu, cuda or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name!r} asked for CUDA but none is available; use device=auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device={name!r} asked for MPS but it is not available; use device=auto or cpu")
    return device


def cpu_has_bf16() -> bool:
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def mixed_precision(device: torch.device, bf16: bool):
    """The `bf16` switch: bfloat16 autocast of the forward passes on `device`.
    Losses and reductions stay float32 (autocast's own policy); weights stay float32.
    A CPU without bfloat16 instructions (AVX2 only) runs float32: oneDNN has no bfloat16
    LSTM there and refuses to build one."""
    if bf16 and device.type == "cpu" and not cpu_has_bf16():
        # a log line, not a Python warning: one line in the run's log and on the console
        logging.getLogger("rlgen").warning(
            "bf16=true: this CPU has no bfloat16 support; running in float32")
        bf16 = False
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def maybe_compile(module: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """The `compile` switch: torch.compile the module in place, so its state_dict keys
    and checkpoints stay the same as without it."""
    if enabled:
        module.compile()
    return module
