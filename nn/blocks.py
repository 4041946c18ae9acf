"""Small network building blocks shared by experiments."""

import math

import torch
from torch import nn

ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def glorot_normal_(weight: torch.Tensor) -> torch.Tensor:
    """tf.js's default kernel initializer: normal with std sqrt(2/(fan_in+fan_out)), cut at 2 std."""
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class MLP(nn.Module):
    """Dense layers `in -> hidden... -> out` with one activation between them."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_sizes: list[int],
        activation: str = "relu",
        init: str = "glorot_normal",
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {sorted(ACTIVATIONS)}")
        sizes = [in_features, *hidden_sizes, out_features]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)
        if init == "glorot_normal":
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    glorot_normal_(layer.weight)
                    nn.init.zeros_(layer.bias)
        elif init != "torch_default":
            raise ValueError(f"init {init!r} is not glorot_normal or torch_default")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
