"""Types of the config tree, registered in Hydra's ConfigStore.

Each yaml file in conf/ names its schema in its defaults list, so a misspelt key or a
value of the wrong type fails when the config is composed, before any work starts.
Values live in the yaml files (the book's numbers); here are only names and types.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class RunConfig:
    name: str = MISSING  # experiment name; also the run dir's parent folder
    trainer: str = MISSING  # module that trains, evaluates and watches this experiment
    seed: int = MISSING
    device: str = MISSING  # auto | cpu | cuda | cuda:N | mps
    bf16: bool = False  # bfloat16 autocast of the networks' forward passes
    compile: bool = False  # torch.compile the networks (first steps are slow: compiling)
    threads: int | None = None  # torch CPU threads (null: torch's default, all cores)
    resume: str | None = None  # a run dir to continue
    render: bool = False  # show the games live while training (pygame window)
    env: Any = None
    model: Any = None
    algo: Any = None
    data: Any = None


@dataclass
class CartPoleEnvConfig:
    _target_: str = MISSING
    gravity: float = MISSING
    cart_mass: float = MISSING
    pole_mass: float = MISSING
    pole_half_length: float = MISSING
    force_mag: float = MISSING
    tau: float = MISSING
    x_threshold: float = MISSING
    theta_threshold_degrees: float = MISSING
    start_x: float = MISSING  # start state ~ U(-value, value), per component
    start_x_dot: float = MISSING
    start_theta_degrees: float = MISSING
    start_theta_dot: float = MISSING
    max_steps_per_game: int | None = MISSING


@dataclass
class MLPConfig:
    _target_: str = MISSING
    hidden_sizes: list[int] = field(default_factory=lambda: [])
    activation: str = MISSING
    init: str = MISSING  # glorot_normal (tf.js default) | torch_default


@dataclass
class ReinforceConfig:
    iterations: int = MISSING
    games_per_iteration: int = MISSING  # all games of an iteration run in parallel
    gamma: float = MISSING
    lr: float = MISSING
    optimizer: Any = MISSING  # a `_partial_: true` torch.optim target; lr comes from `lr`
    baseline: str = MISSING  # none (book: normalise returns globally) | time_step
    max_grad_norm: float | None = None
    stop_mean_steps: float | None = None  # end early once an iteration's mean steps reach this
    target_mean_steps: float = MISSING  # "solved" level reported in metrics.json


@dataclass
class SnakeEnvConfig:
    _target_: str = MISSING
    height: int = MISSING
    width: int = MISSING
    num_fruits: int = MISSING
    init_len: int = MISSING
    max_steps_per_game: int | None = MISSING
    reward_fruit: float = MISSING
    reward_step: float = MISSING
    reward_death: float = MISSING
    egocentric: bool = MISSING  # turn the board so the snake heads up (square boards)


@dataclass
class ConvNetConfig:
    _target_: str = MISSING
    channels: list[int] = field(default_factory=lambda: [])
    kernel_size: int = MISSING
    padding: int = MISSING
    batch_norm: bool = MISSING
    hidden_sizes: list[int] = field(default_factory=lambda: [])
    dropout: float = MISSING
    dueling: bool = MISSING
    init: str = MISSING


@dataclass
class DQNConfig:
    num_envs: int = MISSING  # games played in parallel (1 = the original)
    replay_size: int = MISSING
    replay_warmup: int = MISSING  # transitions in memory before training starts
    batch_size: int = MISSING
    gamma: float = MISSING
    lr: float = MISSING
    # with lr_final set, the learning rate falls linearly to it over lr_decay_frames frames
    lr_final: float | None = None
    lr_decay_frames: int = 0
    optimizer: Any = MISSING
    epsilon_init: float = MISSING
    epsilon_final: float = MISSING
    epsilon_decay_frames: int = MISSING
    sync_every_frames: int = MISSING
    target_init: str = MISSING  # random (the original) | copy
    train_every_frames: int = MISSING
    updates_per_train: int = MISSING
    sample_without_replacement: bool = MISSING
    double_dqn: bool = MISSING
    mirror: bool = False  # train on mirror images of half the sampled transitions
    # prioritized replay: draw by |TD error|^alpha, importance weights with an exponent
    # that rises from priority_beta_init to 1 over priority_beta_frames frames
    prioritized: bool = False
    priority_alpha: float = 0.6
    priority_beta_init: float = 0.4
    priority_beta_frames: int = 0
    n_step: int = MISSING
    loss: str = MISSING  # mse | huber
    max_grad_norm: float | None = None
    max_frames: int = MISSING
    max_seconds: float | None = None  # wall-time budget
    stop_reward100: float | None = None  # stop once cumulativeReward100 reaches this
    report_reward100_levels: list[float] = field(default_factory=lambda: [])
    history_every_frames: int = MISSING
    checkpoint_every_seconds: float = MISSING  # full checkpoint (memory too) for resume
    # greedy evaluation during training (off in the book's recipe): every this many frames
    # play eval_games fresh games at epsilon 0; the best kept as checkpoints/best_eval
    eval_every_frames: int | None = None
    eval_games: int = 100
    eval_max_steps: int = 1000  # per evaluation game (a greedy agent can loop forever)
    stop_eval_return: float | None = None  # stop once a greedy evaluation reaches this


@dataclass
class TextDataConfig:
    corpus: str = MISSING  # shakespeare | python_source | shakespeare_t8 | nietzsche | ...
    path: str | None = None  # any UTF-8 text file instead of a named corpus
    cache_dir: str = MISSING  # where downloaded corpora are kept
    sha256: str | None = None  # pin a downloaded corpus's checksum
    val_fraction: float = MISSING  # the end of the text held out for validation


@dataclass
class CharLSTMConfig:
    _target_: str = MISSING
    input: str = MISSING  # one_hot (the book) | embedding
    embedding_dim: int = MISSING
    hidden_sizes: list[int] = field(default_factory=lambda: [])
    forget_bias: float = MISSING  # initial forget-gate bias (Keras' unitForgetBias: 1)


@dataclass
class TextTrainConfig:
    objective: str = MISSING  # last_char (the book) | all_positions
    sample_len: int = MISSING  # window length, or chunk length of truncated backprop
    sample_step: int | None = MISSING  # last_char: stride between window starts
    examples_per_epoch: int = MISSING  # windows (last_char) or chunks (all_positions)
    batch_size: int = MISSING  # all_positions: the number of parallel text streams
    epochs: int = MISSING
    lr: float = MISSING
    optimizer: Any = MISSING
    lr_schedule: str = MISSING  # constant | cosine
    warmup_steps: int = MISSING
    final_lr_fraction: float = MISSING  # cosine: lr at the last step, as a fraction of lr
    max_grad_norm: float | None = None
    max_seconds: float | None = None  # wall-time budget, evaluation included
    val_positions: int | None = None  # last_char: evenly spaced validation targets (null: all)
    display_length: int = MISSING  # characters per logged sample
    temperatures: list[float] = field(default_factory=lambda: [])


@dataclass
class ImageDataConfig:
    name: str = MISSING  # mnist_5k (offline) | mnist | fashion_mnist
    path: str | None = None  # a folder holding the four IDX files instead of downloading
    cache_dir: str = MISSING  # where downloads are kept
    timeout: float = MISSING  # seconds per download attempt


@dataclass
class VAEModelConfig:
    _target_: str = MISSING
    intermediate_dim: int = MISSING
    latent_dim: int = MISSING
    init: str = MISSING  # glorot_normal (tf.js) | torch_default


@dataclass
class ConvVAEModelConfig(VAEModelConfig):
    channels: list[int] = field(default_factory=lambda: [])  # the two strided convolutions


@dataclass
class VAETrainConfig:
    epochs: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    optimizer: Any = MISSING
    likelihood: str = MISSING  # mse784 (the book: 784 * MSE) | bernoulli


@dataclass
class ConvClassifierConfig:
    _target_: str = MISSING
    channels: list[int] = field(default_factory=lambda: [])  # the two conv layers
    kernel_size: int = MISSING
    hidden: int | None = None  # a dense layer before the output (null: the book's none)
    dropout: float = MISSING


@dataclass
class ClassifierTrainConfig:
    epochs: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    optimizer: Any = MISSING
    augment_shift: int = MISSING  # random translations of up to this many pixels (0: none)


@dataclass
class ACGANModelConfig:
    generator: Any = MISSING
    discriminator: Any = MISSING


@dataclass
class ACGANTrainConfig:
    epochs: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    optimizer: Any = MISSING
    soft_one: float = MISSING  # realness label of real images (and of fakes, for the generator)
    fakes_in_inference_mode: bool = MISSING  # discriminator step: G's BatchNorm running stats
    shuffle: bool = MISSING  # reshuffle each epoch (the original: file order)
    ema_decay: float | None = None  # draw digits from an average of the generator's weights
    judge: str | None = None  # an mnist_cnn run dir: score each epoch, keep the best
    judge_per_class: int = MISSING


def register() -> None:
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(group="env", name="cartpole_schema", node=CartPoleEnvConfig)
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
