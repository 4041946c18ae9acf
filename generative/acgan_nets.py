"""The ACGAN's networks: the book's generator and discriminator (Keras' mnist_acgan),
a lighter generator with a spectrally normalised discriminator, and drawing digits of
chosen classes from a generator."""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import MISSING

from nn.blocks import glorot_normal_
from nn.memory import build_network


# rlgen-plot's default curve: the first of these tags a run logged (a judge's accuracy,
# else G's loss)
@dataclass
class ACGANModelConfig:
    generator: Any = MISSING
    discriminator: Any = MISSING


NUM_CLASSES = 10


def batch_norm(channels: int) -> torch.nn.BatchNorm2d:
    """tf.js BatchNormalization's defaults: momentum 0.99 (torch counts 0.01), eps 1e-3."""
    return torch.nn.BatchNorm2d(channels, momentum=0.01, eps=1e-3)


class Generator(torch.nn.Module):
    """(z [B, latent], class [B]) -> images [B, 1, 28, 28] in [-1, 1]."""

    def __init__(self, latent_size: int):
        super().__init__()
        self.latent_size = latent_size
        self.embedding = torch.nn.Embedding(NUM_CLASSES, latent_size)
        self.dense = torch.nn.Linear(latent_size, 3 * 3 * 384)
        self.up = torch.nn.Sequential(
            torch.nn.ConvTranspose2d(384, 192, 5, stride=1), torch.nn.ReLU(), batch_norm(192),
            torch.nn.ConvTranspose2d(192, 96, 5, stride=2, padding=2, output_padding=1),
            torch.nn.ReLU(), batch_norm(96),
            torch.nn.ConvTranspose2d(96, 1, 5, stride=2, padding=2, output_padding=1),
            torch.nn.Tanh())
        glorot_normal_(self.embedding.weight)
        for layer in [self.dense, *self.up]:
            if isinstance(layer, (torch.nn.Linear, torch.nn.ConvTranspose2d)):
                glorot_normal_(layer.weight)
                torch.nn.init.zeros_(layer.bias)

    def forward(self, z: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        h = z * self.embedding(classes)  # the class reaches the generator here
        h = F.relu(self.dense(h)).view(-1, 384, 3, 3)
        return self.up(h)


class Discriminator(torch.nn.Module):
    """images -> (realness logit [B], class logits [B, 10])."""

    def __init__(self, dropout: float):
        super().__init__()
        layers, width = [], 1
        for channels, stride in ((32, 2), (64, 1), (128, 2), (256, 1)):
            layers += [torch.nn.Conv2d(width, channels, 3, stride=stride, padding=1),
                       torch.nn.LeakyReLU(0.2), torch.nn.Dropout(dropout)]
            width = channels
        self.body = torch.nn.Sequential(*layers, torch.nn.Flatten())
        self.realness = torch.nn.Linear(256 * 7 * 7, 1)
        self.aux = torch.nn.Linear(256 * 7 * 7, NUM_CLASSES)
        for layer in self.modules():
            if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
                glorot_normal_(layer.weight)
                torch.nn.init.zeros_(layer.bias)

    def forward(self, images: torch.Tensor, classes: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """`classes` is not used: the book's realness does not depend on the class."""
        h = self.body(images)
        return self.realness(h).squeeze(1), self.aux(h)


class LightGenerator(torch.nn.Module):
    """rlgen's generator for `acgan_sharp`: (z, class) -> [B, 1, 28, 28] in [-1, 1], about a
    third of the book generator's multiply-adds, so a CPU affords several times the steps.
    The class embedding is concatenated to z (the book multiplies them), then dense to
    7x7, two 4x4 transposed convs to 28x28 and a 3x3 conv; BatchNorm and ReLU between."""

    def __init__(self, latent_size: int, class_size: int, width: int):
        super().__init__()
        self.latent_size = latent_size
        self.embedding = torch.nn.Embedding(NUM_CLASSES, class_size)
        self.dense = torch.nn.Linear(latent_size + class_size, 7 * 7 * 4 * width)
        self.width = width
        self.up = torch.nn.Sequential(
            torch.nn.BatchNorm2d(4 * width), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(4 * width, 2 * width, 4, stride=2, padding=1),
            torch.nn.BatchNorm2d(2 * width), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            torch.nn.BatchNorm2d(width), torch.nn.ReLU(),
            torch.nn.Conv2d(width, 1, 3, padding=1), torch.nn.Tanh())

    def forward(self, z: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        h = self.dense(torch.cat([z, self.embedding(classes)], 1))
        return self.up(h.view(-1, 4 * self.width, 7, 7))


class SpectralDiscriminator(torch.nn.Module):
    """(images, classes) -> (realness logit [B], class logits [B, 10]) for `acgan_sharp`:
    three strided convs (28 -> 14 -> 7 -> 4) with LeakyReLU, each layer and the realness
    head spectrally normalised (largest singular value held at 1, so the critic cannot
    sharpen without bound); no dropout. The realness is conditioned on the class by
    projection (Miyato & Koyama 2018: plus <embedding(class), features>), so a fake must
    look like a real image of its requested class, a pressure that, unlike the class
    head's, does not reward drawing every image of a class alike."""

    def __init__(self, width: int):
        super().__init__()
        sn = torch.nn.utils.parametrizations.spectral_norm
        self.body = torch.nn.Sequential(
            sn(torch.nn.Conv2d(1, width, 4, stride=2, padding=1)), torch.nn.LeakyReLU(0.1),
            sn(torch.nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)), torch.nn.LeakyReLU(0.1),
            sn(torch.nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1)),
            torch.nn.LeakyReLU(0.1), torch.nn.Flatten())
        self.realness = sn(torch.nn.Linear(4 * width * 4 * 4, 1))
        self.projection = sn(torch.nn.Embedding(NUM_CLASSES, 4 * width * 4 * 4))
        self.aux = torch.nn.Linear(4 * width * 4 * 4, NUM_CLASSES)

    def forward(self, images: torch.Tensor, classes: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(images)
        realness = self.realness(h).squeeze(1) + (self.projection(classes) * h).sum(1)
        return realness, self.aux(h)


def build_nets(cfg):
    return build_network(cfg.model.generator), build_network(cfg.model.discriminator)


def sample_z(n: int, latent_size: int, generator: torch.Generator, device) -> torch.Tensor:
    """z ~ U(-1, 1), as the original."""
    return torch.rand(n, latent_size, generator=generator, device=device) * 2 - 1


def sample_classes(n: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.randint(0, NUM_CLASSES, (n,), generator=generator, device=device)


@torch.no_grad()
def digit_grid(gen, z: torch.Tensor, digits: list[int]) -> torch.Tensor:
    """One row per digit, one column per z: [28 rows, 28 cols] image in [0, 1]."""
    gen.eval()
    device = z.device
    rows = [gen(z, torch.full((len(z),), d, device=device, dtype=torch.long)) for d in digits]
    gen.train()
    images = (torch.stack(rows)[:, :, 0] + 1) / 2  # [digits, n, 28, 28]
    return images.permute(0, 2, 1, 3).reshape(len(digits) * 28, len(z) * 28).cpu()


@torch.no_grad()
def generate_per_class(gen, per_class: int, rng, device) -> tuple[torch.Tensor, torch.Tensor]:
    gen.eval()
    classes = torch.arange(NUM_CLASSES, device=device).repeat_interleave(per_class)
    images = torch.cat([gen(sample_z(len(c), gen.latent_size, rng, device), c)
                        for c in classes.split(500)])
    return images, classes
