"""Self-contained, safe-to-load checkpoints.

A checkpoint is one `torch.save` file holding only tensors and plain Python values:
the experiment name, the resolved config, the step, and the state dicts. It is read
with `weights_only=True`, so a file from elsewhere cannot run code, and it is written
to a temporary file then renamed, so a crash mid-write never replaces a good one.
"""

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from nn.errors import UserError

FORMAT = "rlgen-checkpoint"
FORMAT_VERSION = 1


def atomic_write(path: Path, write) -> None:
    """Call `write(tmp_path)`, fsync, then rename over `path` in one step. A full or
    read-only disk is one clear error, and the previous file stays as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        kept = " (the previous one is kept)" if path.exists() else ""
        raise UserError(f"cannot write {path}{kept}: {err.strerror or err}; free some space "
                        "or write runs elsewhere (hydra.run.dir=...)") from err
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(path: Path) -> None:
    """Half-written files beside `path` (of any file there: a run killed while writing
    best.pt may never write best.pt again) left by processes that were killed mid-write."""
    for tmp in path.parent.glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json(path: Path, data: dict) -> None:
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def write_png(path: Path, image: torch.Tensor) -> Path:
    """A [H, W] image in [0, 1] as an 8-bit grey PNG, written atomically."""
    from PIL import Image

    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: folder {path.parent} does not exist")
    pixels = (image.detach().cpu().clamp(0, 1) * 255).round().byte().numpy()
    atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))
    return path


def load_weights(module: torch.nn.Module, payload: dict, key: str) -> torch.nn.Module:
    """Load `payload["state"][key]` into a module built from the run's model config; a
    mismatch means other model settings than the run's own, or a damaged file."""
    try:
        module.load_state_dict(payload["state"][key])
    except (KeyError, RuntimeError) as err:
        raise UserError(f"the checkpoint's {key} weights do not fit the model config (other "
                        "model settings than the run's own, or a damaged file)") from err
    return module


def save_checkpoint(path: Path, *, experiment: str, trainer: str, config: dict,
                    state: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "experiment": experiment,
        "trainer": trainer,
        "config": config,
        "meta": meta or {},
        "state": state,
    }
    # serialised in memory first: torch.save to a file reports a full disk as an
    # unexplained RuntimeError, a plain write as OSError (ENOSPC)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(buffer.getbuffer()))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu",
                    mmap: bool = False) -> dict:
    """The checkpoint's payload. `mmap=True` maps the tensors instead of reading them:
    a cheap look at the experiment and meta of a large file (a DQN's holds its replay)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; train one with rlgen-train or pick another run")
    try:
        # a plain pickle makes torch warn in several lines before it refuses: our one
        # line below says it all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # corrupt zip, foreign pickle, truncated file, ...
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise UserError(f"{path} is not a readable rlgen checkpoint ({reason}); "
                        "delete it or point to another run") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not an rlgen checkpoint; point to a run dir made by rlgen-train")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(f"{path} has checkpoint format {version!r}, newer than this rlgen "
                        f"reads ({FORMAT_VERSION}); upgrade rlgen")
    return payload


def checkpoint_path(run: str | Path, which: str = "best") -> Path:
    """`run` is a run dir (then `checkpoints/<which>.pt` inside it) or a checkpoint file."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.exists():
        raise UserError(f"run dir {run} does not exist; pass run=runs/<experiment>/<timestamp>")
    path = run / "checkpoints" / f"{which}.pt"
    if not path.exists():
        raise UserError(f"{run} holds no checkpoints/{which}.pt; is it an rlgen run dir "
                        "whose training saved at least once?")
    return path


def require_experiment(payload: dict, expected: str, path: Path) -> None:
    found = payload.get("experiment")
    if found != expected:
        raise UserError(f"{path} belongs to experiment {found!r}, not {expected!r}; "
                        f"use experiment={found} or another run dir")


def resume_payload(resume: str | Path, experiment: str, mmap: bool = False) -> dict:
    """The `last` checkpoint of the run dir to resume, refused clearly if another
    experiment wrote it (`mmap`: see load_checkpoint)."""
    path = checkpoint_path(resume, "last")
    payload = load_checkpoint(path, mmap=mmap)
    require_experiment(payload, experiment, path)
    return payload
