"""Run logging: TensorBoard scalars and text, a live progress bar, train.log, metrics.json."""

import logging
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from tqdm import tqdm

from nn.checkpoint import write_json

log = logging.getLogger("rlgen")


def flat_hparams(config: DictConfig) -> dict:
    """Config leaves as `a.b.c -> scalar`, the form TensorBoard's HParams tab takes."""
    flat: dict = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        elif isinstance(node, list):
            flat[prefix[:-1]] = str(node)
        elif isinstance(node, (int, float, str, bool)):
            flat[prefix[:-1]] = node
        elif node is None:
            flat[prefix[:-1]] = "null"

    walk(OmegaConf.to_container(config, resolve=True), "")
    return flat


class RunLogger:
    """Everything a training loop reports goes through here, into one run dir."""

    def __init__(self, run_dir: Path, config: DictConfig, total: int, unit: str,
                 purge_step: int | None = None, initial: int = 0):
        self.run_dir = Path(run_dir)
        # purge_step drops events a crashed run wrote past its last checkpoint
        self.writer = SummaryWriter(str(self.run_dir), purge_step=purge_step)
        self.config = config
        if initial == 0:
            self.writer.add_text("config", "    " + OmegaConf.to_yaml(config).replace("\n", "\n    "))
        self.bar = tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, leave=True,
                        mininterval=0.5)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def video(self, tag: str, frames: list, step: int, fps: float) -> None:
        """Frames as an animated GIF in TensorBoard's Images tab (see nn/media.py)."""
        from nn.media import video_summary

        self.writer.file_writer.add_summary(video_summary(tag, frames, fps), step)

    def progress(self, live: dict[str, float], advance: int = 1) -> None:
        """Advance the bar; `live` figures show beside it."""
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in live.items()}, refresh=False)
        self.bar.update(advance)

    def info(self, message: str) -> None:
        log.info(message)

    def finish(self, metrics: dict, hparam_metrics: dict[str, float], summary: str = "",
               stopped: str | None = None) -> None:
        """Write metrics.json and the HParams summary, close everything, then print the
        run's one-line summary (or, after a signal, how to resume it)."""
        self.bar.close()
        clean = {k: v for k, v in hparam_metrics.items() if v is not None and math.isfinite(v)}
        for record in hparams(flat_hparams(self.config), clean):
            self.writer.file_writer.add_summary(record)
        for tag, value in clean.items():
            self.writer.add_scalar(tag, value)
        self.writer.close()
        write_json(self.run_dir / "metrics.json", metrics)
        if stopped or summary:
            print(stopped or summary, flush=True)
