"""What the benchmarks share: composing a config, quiet in-process training, tables."""

import json
import platform
import tempfile
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def compose(*overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from nn.cli import CONF_DIR, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="bench"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def train_quiet(train, *overrides, device: str = "cpu") -> dict:
    """Run `train` (an algorithm module's) on a composed config in a temporary run dir."""
    import logging

    logging.getLogger("rlgen").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        return train(compose(*overrides, f"device={device}"), Path(tmp))


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
            f"threads, torch {torch.__version__}")


def table(title: str, rows: list[dict]) -> None:
    print(f"\n## {title}")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


def write(name: str, results: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")
