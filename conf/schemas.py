"""The schemas Hydra checks the config tree against, registered in its ConfigStore.

Each schema lives beside the code it configures (as CleanRL's `Args` sits in its file);
this module only gives them the names the yaml files' defaults lists use.
"""

from hydra.core.config_store import ConfigStore

from envs.cartpole import CartPoleEnvConfig
from envs.gymnasium_env import GymnasiumEnvConfig
from envs.snake import SnakeEnvConfig
from generative.acgan import ACGANTrainConfig
from generative.acgan_nets import ACGANModelConfig
from generative.char_lstm import CharLSTMConfig
from generative.classifier import ClassifierTrainConfig, ConvClassifierConfig
from generative.corpus import TextDataConfig
from generative.datasets import ImageDataConfig
from generative.lstm_text import TextTrainConfig
from generative.vae import ConvVAEModelConfig, VAEModelConfig, VAETrainConfig
from nn.blocks import ConvNetConfig, MLPConfig
from nn.run import RunConfig
from rl.dqn import DQNConfig
from rl.reinforce import ReinforceConfig


def register() -> None:
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(group="env", name="cartpole_schema", node=CartPoleEnvConfig)
    store.store(group="env", name="gymnasium_schema", node=GymnasiumEnvConfig)
    store.store(group="model", name="mlp_schema", node=MLPConfig)
    store.store(group="algo", name="reinforce_schema", node=ReinforceConfig)
    store.store(group="env", name="snake_schema", node=SnakeEnvConfig)
    store.store(group="model", name="conv_schema", node=ConvNetConfig)
    store.store(group="algo", name="dqn_schema", node=DQNConfig)
    store.store(group="data", name="text_schema", node=TextDataConfig)
    store.store(group="model", name="char_lstm_schema", node=CharLSTMConfig)
    store.store(group="algo", name="text_schema", node=TextTrainConfig)
    store.store(group="data", name="image_schema", node=ImageDataConfig)
    store.store(group="model", name="vae_schema", node=VAEModelConfig)
    store.store(group="model", name="conv_vae_schema", node=ConvVAEModelConfig)
    store.store(group="algo", name="vae_schema", node=VAETrainConfig)
    store.store(group="model", name="conv_classifier_schema", node=ConvClassifierConfig)
    store.store(group="algo", name="classifier_schema", node=ClassifierTrainConfig)
    store.store(group="model", name="acgan_schema", node=ACGANModelConfig)
    store.store(group="algo", name="acgan_schema", node=ACGANTrainConfig)
