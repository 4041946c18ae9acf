"""The schemas Hydra checks the config tree against, registered in its ConfigStore.

Each schema lives beside the code it configures (as CleanRL's `Args` sits in its file).
The run's, the envs', the shared networks' and the datasets' are named here; a trainer
names its own in its module's `SCHEMAS` ({"group/name": dataclass}), found through the
experiments that name the trainer, so a new algorithm adds its settings in its own file.
"""

import importlib
from pathlib import Path

import yaml
from hydra.core.config_store import ConfigStore

from envs.cartpole import CartPoleEnvConfig
from envs.gymnasium_env import GymnasiumEnvConfig
from envs.snake import SnakeEnvConfig
from generative.corpus import TextDataConfig
from generative.datasets import ImageDataConfig
from nn.blocks import ConvNetConfig, MLPConfig
from nn.run import RunConfig

SHARED = {"run_schema": RunConfig, "env/cartpole_schema": CartPoleEnvConfig,
          "env/gymnasium_schema": GymnasiumEnvConfig, "env/snake_schema": SnakeEnvConfig,
          "model/mlp_schema": MLPConfig, "model/conv_schema": ConvNetConfig,
          "data/text_schema": TextDataConfig, "data/image_schema": ImageDataConfig}


def trainers() -> list[str]:
    """The trainer modules the experiments name (conf/experiment/*.yaml)."""
    folder = Path(__file__).resolve().parent / "experiment"
    return sorted({(yaml.safe_load(path.read_text()) or {}).get("trainer")
                   for path in folder.glob("*.yaml")} - {None})


def register() -> None:
    store = ConfigStore.instance()
    schemas = dict(SHARED)
    for name in trainers():
        try:
            module = importlib.import_module(name)
        except ImportError:  # rlgen-train names the missing trainer in one line
            continue
        schemas.update(getattr(module, "SCHEMAS", {}))
    for key, node in schemas.items():
        group, _, name = key.rpartition("/")
        store.store(group=group or None, name=name, node=node)
