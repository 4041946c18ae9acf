"""Small network building blocks shared by experiments."""

import math
from dataclasses import dataclass

import torch
from omegaconf import MISSING

from nn.schema import at_least, between, one_of, sizes


@dataclass
class MLPConfig:
    _target_: str = MISSING
    hidden_sizes: list[int] = sizes()
    activation: str = one_of("elu", "relu", "tanh", "gelu")
    init: str = one_of("glorot_normal", "torch_default")  # glorot_normal: tf.js default


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



ACTIVATIONS = {"elu": torch.nn.ELU, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU}


def glorot_normal_(weight: torch.Tensor) -> torch.Tensor:
    """tf.js's default kernel initializer: normal with std sqrt(2/(fan_in+fan_out)), cut at
    2 std. For convolutions both fans count the kernel's receptive field, as Keras does."""
    receptive = weight[0][0].numel() if weight.dim() > 2 else 1
    fan_out, fan_in = weight.shape[0] * receptive, weight.shape[1] * receptive
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return torch.nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def init_weights(module: torch.nn.Module, init: str) -> None:
    """`glorot_normal` (tf.js's default, zero biases) or `torch_default` (leave as built)."""
    if init == "torch_default":
        return
    if init != "glorot_normal":
        raise ValueError(f"init {init!r} is not glorot_normal or torch_default")
    for layer in module.modules():
        if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            glorot_normal_(layer.weight)
            torch.nn.init.zeros_(layer.bias)


class MLP(torch.nn.Module):
    """Dense layers `in -> hidden... -> out` with one activation between them.
    The input is flattened from `in_shape` (the observation's shape)."""

    def __init__(
        self,
        in_shape: list[int],
        out_features: int,
        hidden_sizes: list[int],
        activation: str = "relu",
        init: str = "glorot_normal",
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {sorted(ACTIVATIONS)}")
        sizes = [math.prod(in_shape), *hidden_sizes, out_features]
        layers: list[torch.nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(torch.nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        self.net = torch.nn.Sequential(torch.nn.Flatten(), *layers)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())


class ConvNet(torch.nn.Module):
    """Convolutions over a channels-last board, then dense layers.

    With the defaults of conf/model/snake_conv.yaml this is the book's Snake DQN: conv 128,
    256, 256 (3x3, valid, ReLU) with BatchNorm after the first two, dense 100 ReLU,
    dropout 0.25, one output per action. `dueling` splits the dense part into a state
    value and action advantages (Wang et al. 2016), here sharing the dense layers.
    """

    def __init__(self, in_shape: list[int], out_features: int, channels: list[int],
                 kernel_size: int = 3, padding: int = 0, batch_norm: bool = True,
                 hidden_sizes: list[int] = (100,), dropout: float = 0.0, dueling: bool = False,
                 init: str = "glorot_normal", strides: list[int] | None = None):
        super().__init__()
        height, width, in_channels = in_shape
        strides = list(strides) if strides else [1] * len(channels)
        if len(strides) != len(channels):
            raise ValueError(f"strides {strides} must give one stride per conv layer "
                             f"({len(channels)})")
        layers: list[torch.nn.Module] = []
        for i, (out_channels, stride) in enumerate(zip(channels, strides, strict=True)):
            layers += [torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                                       padding=padding),
                       torch.nn.ReLU()]
            if batch_norm and i < len(channels) - 1:
                # tf.js momentum 0.99 is PyTorch's momentum 0.01
                layers.append(torch.nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01))
            in_channels = out_channels
            height = (height + 2 * padding - kernel_size) // stride + 1
            width = (width + 2 * padding - kernel_size) // stride + 1
        if height < 1 or width < 1:
            raise ValueError(f"board {in_shape[:2]} is too small for {len(channels)} "
                             f"{kernel_size}x{kernel_size} convolutions without padding")
        self.features = torch.nn.Sequential(*layers, torch.nn.Flatten())
        sizes, dense = [in_channels * height * width, *hidden_sizes], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            dense += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
            if dropout:
                dense.append(torch.nn.Dropout(dropout))
        self.dense = torch.nn.Sequential(*dense)
        self.out = torch.nn.Linear(sizes[-1], out_features)
        # dueling: a state value and action advantages share the dense layers
        self.value = torch.nn.Linear(sizes[-1], 1) if dueling else None
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.dense(self.features(x.float().permute(0, 3, 1, 2)))
        advantage = self.out(hidden)
        if self.value is None:
            return advantage
        return self.value(hidden) + advantage - advantage.mean(1, keepdim=True)


def clip_grad_norm(parameters: list, max_norm: float) -> None:
    """torch.nn.utils.clip_grad_norm_ (scale all gradients so that their joint norm is at
    most max_norm) for one network's parameters on one device and dtype: torch's version
    first sorts the gradients by device and dtype, which on the CPU took as long as the
    Adam step itself in RL Zoo's cart-pole updates."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (total + 1e-6)).clamp_(max=1.0))
