"""Variational autoencoder with a 2-D latent space.

The book's recipe (Deep Learning with JavaScript, ch. 10, `fashion-mnist-vae`; see
docs/recipes.md): 784-512-2 MLP encoder and 2-512-784 decoder, loss
784 * MSE + KL, Adam 1e-3, batch 256; "the loss at the end of a good training run
will be in the 40-50 range" after 100 epochs.

rlgen adds a held-out test split (the original trained on the training images only and
reported nothing else), per-epoch test ELBO terms, and `vae_conv`: convolutional
encoder and decoder with a Bernoulli likelihood.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import MISSING, DictConfig, OmegaConf

from generative.datasets import ImageData, load_images
from nn.blocks import init_weights
from nn.checkpoint import load_weights, write_png
from nn.config import instantiate
from nn.contracts import OnnxToolArgs, ToolArgs
from nn.device import mixed_precision, select_device
from nn.epochs import EpochRecipe
from nn.errors import UserError
from nn.export import Network, OnnxNetwork
from nn.memory import build_network
from nn.run import Run
from nn.schema import above, at_least, one_of, sizes
from nn.seeding import make_generator


# rlgen-plot's default curve: the first of these tags a run logged (held-out loss, each epoch)
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
class VAETrainConfig(EpochRecipe):
    likelihood: str = one_of("mse784", "bernoulli")  # mse784: the book (784 * MSE)



# the settings this trainer adds to the config tree, {group/name: schema} (conf/schemas.py)
SCHEMAS = {"algo/vae_schema": VAETrainConfig, "model/vae_schema": VAEModelConfig,
           "model/conv_vae_schema": ConvVAEModelConfig}


CURVES = ("test/loss",)

IMAGE = 28 * 28


class MLPVAE(torch.nn.Module):
    """The book's VAE: dense encoder with z_mean / z_log_var heads, dense decoder."""

    def __init__(self, intermediate_dim: int, latent_dim: int, init: str):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = torch.nn.Sequential(torch.nn.Flatten(),
                                           torch.nn.Linear(IMAGE, intermediate_dim),
                                           torch.nn.ReLU())
        self.z_mean = torch.nn.Linear(intermediate_dim, latent_dim)
        self.z_log_var = torch.nn.Linear(intermediate_dim, latent_dim)
        self.decoder = torch.nn.Sequential(torch.nn.Linear(latent_dim, intermediate_dim),
                                           torch.nn.ReLU(),
                                           torch.nn.Linear(intermediate_dim, IMAGE))
        init_weights(self, init)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.z_mean(h), self.z_log_var(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid pixels [B, 784]."""
        return self.decoder(z)


class ConvVAE(torch.nn.Module):
    """Two strided convolutions down to 7x7, dense heads; the mirror image up again."""

    def __init__(self, channels: list[int], intermediate_dim: int, latent_dim: int, init: str):
        super().__init__()
        c1, c2 = channels
        self.latent_dim = latent_dim
        self.encoder = torch.nn.Sequential(
            torch.nn.Unflatten(1, (1, 28, 28)),
            torch.nn.Conv2d(1, c1, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(c1, c2, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Flatten(), torch.nn.Linear(c2 * 49, intermediate_dim), torch.nn.ReLU())
        self.z_mean = torch.nn.Linear(intermediate_dim, latent_dim)
        self.z_log_var = torch.nn.Linear(intermediate_dim, latent_dim)
        self.decoder = torch.nn.Sequential(
            torch.nn.Linear(latent_dim, intermediate_dim), torch.nn.ReLU(),
            torch.nn.Linear(intermediate_dim, c2 * 49), torch.nn.ReLU(), torch.nn.Unflatten(1, (c2, 7, 7)),
            torch.nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1), torch.nn.Flatten())
        init_weights(self, init)

    encode = MLPVAE.encode
    decode_logits = MLPVAE.decode_logits


def reparameterize(mean, log_var, generator=None):
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * log_var) * eps


def elbo_terms(model, x: torch.Tensor, likelihood: str, generator=None):
    """Per-image reconstruction and KL terms (nats for bernoulli; the book's units for mse784)."""
    mean, log_var = model.encode(x)
    logits = model.decode_logits(reparameterize(mean, log_var, generator))
    if likelihood == "mse784":  # the book: 784 * mean squared error = summed squared error
        reconstruction = ((torch.sigmoid(logits) - x) ** 2).sum(1)
    elif likelihood == "bernoulli":
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
    else:
        raise UserError(f"algo.likelihood={likelihood!r} is not mse784 or bernoulli")
    kl = -0.5 * (1 + log_var - mean ** 2 - log_var.exp()).sum(1)
    return reconstruction, kl


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float [N, 784] in [0, 1] (pixels / 255, as the original)."""
    return images.reshape(len(images), IMAGE).float() / 255.0


@torch.no_grad()
def test_terms(model, images: torch.Tensor, likelihood: str, seed: int) -> dict:
    """Mean test reconstruction, KL and loss over held-out images (fixed noise)."""
    model.eval()
    generator = make_generator(seed, images.device)
    rec_sum = kl_sum = 0.0
    for batch in images.split(1000):
        reconstruction, kl = elbo_terms(model, batch, likelihood, generator)
        rec_sum += reconstruction.sum().item()
        kl_sum += kl.sum().item()
    model.train()
    n = len(images)
    return {"loss": (rec_sum + kl_sum) / n, "reconstruction": rec_sum / n, "kl": kl_sum / n}


@torch.no_grad()
def latent_grid(model, grid: int, extent: float) -> torch.Tensor:
    """The book's picture: decoded images for z on a grid x grid lattice over
    [-extent, extent]^2 (z1 left to right, z2 bottom to top), as one [28g, 28g] image."""
    if model.latent_dim != 2:
        raise UserError(f"the latent grid needs a 2-D latent space; this model has "
                        f"{model.latent_dim} dimensions")
    values = torch.linspace(-extent, extent, grid)
    z1, z2 = torch.meshgrid(values, values.flip(0), indexing="xy")
    z = torch.stack([z1.flatten(), z2.flatten()], 1).to(model_device(model))
    images = torch.sigmoid(model.decode_logits(z)).view(grid, grid, 28, 28)
    return images.permute(0, 2, 1, 3).reshape(grid * 28, grid * 28).cpu()


def pairs_image(originals: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
    """Originals on the top row, reconstructions below: [56, 28n]."""
    top = originals.view(-1, 28, 28).permute(1, 0, 2).reshape(28, -1)
    bottom = decoded.view(-1, 28, 28).permute(1, 0, 2).reshape(28, -1)
    return torch.cat([top, bottom]).cpu()


def build_model(cfg) -> torch.nn.Module:
    return build_network(cfg.model)


def train(cfg: DictConfig, run_dir: Path) -> dict:
    algo = cfg.algo
    run = Run(cfg, run_dir)  # picks the device, seeds everything
    device = run.device
    data: ImageData = load_images(cfg.data)
    train_x = as_float(data.train_images).to(device)
    test_x = as_float(data.test_images).to(device)
    model = build_model(cfg).to(device)
    # the loss calls encode and decode, not forward: compile the whole loss instead
    elbo = torch.compile(elbo_terms) if cfg.compile else elbo_terms
    autocast = mixed_precision(device, cfg.bf16)
    optimizer = instantiate(algo.optimizer)(model.parameters(), lr=algo.lr)
    shuffle_rng = make_generator(cfg.seed + 1, device)
    noise_rng = make_generator(cfg.seed + 2, device)
    loop = run.keep({"epoch": 0, "step": 0, "best_test_loss": math.inf, "history": [],
                     "train_seconds": 0.0, "dataset": data.name, "classes": data.classes},
                    model=model, optimizer=optimizer, shuffle_rng=shuffle_rng, noise_rng=noise_rng)
    position = run.epoch_position(shuffle_rng)
    logger = run.open_logger(algo.epochs, "epoch", done=loop.epoch, logged_to=loop.step)
    logger.info(f"training {cfg.name} on {device}: {data.name}, {len(train_x)} training and "
                f"{len(test_x)} test images; run dir {run_dir}")
    for epoch in range(loop.epoch + 1, algo.epochs + 1):
        order = position.draw_order(
            lambda: torch.randperm(len(train_x), generator=shuffle_rng, device=device))
        for index in position.remaining(order.split(algo.batch_size)):
            with autocast:
                reconstruction, kl = elbo(model, train_x[index], algo.likelihood, noise_rng)
                loss = (reconstruction + kl).float().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loop.step += 1
            value = loss.item()
            position.add(loss=value * len(index))
            logger.writer.add_scalar("loss", value, loop.step)
            if run.stop_requested(f"batch {position.done} of epoch {epoch}"):
                break
        if run.stopped:  # inside the epoch: the final save keeps the position
            break
        sums = position.finish()
        test = test_terms(model, test_x, algo.likelihood, cfg.seed)
        loop.epoch, loop.train_seconds = epoch, loop.train_seconds + sums["seconds"]
        record = {"epoch": epoch, "step": loop.step, "loss": sums["loss"] / len(train_x),
                  "test_loss": test["loss"], "test_reconstruction": test["reconstruction"],
                  "test_kl": test["kl"], "images_per_second": len(train_x) / sums["seconds"],
                  "train_seconds": round(loop.train_seconds, 2)}
        run.check_finite(record["loss"] + record["test_loss"], f"epoch {epoch} (step {loop.step})")
        loop.history.append(record)
        run.progress(epoch, record)
        log_epoch(logger, record, model, test_x[:10])
        if test["loss"] < loop.best_test_loss:
            loop.best_test_loss = test["loss"]
            run.save("best")
        run.save("last")
    return finish(run, loop, data, algo)


def finish(run: Run, loop, data: ImageData, algo) -> dict:
    """metrics.json: the last epoch's losses and the best held-out loss."""
    history, cfg, elapsed, best = loop.history, run.cfg, loop.train_seconds, loop.best_test_loss
    last = history[-1] if history else {}
    metrics = {"device": str(run.device), "dataset": data.name,
               "train_images": len(data.train_images), "test_images": len(data.test_images),
               "likelihood": algo.likelihood,
               "epochs": last.get("epoch", 0), "final_loss": last.get("loss"),
               "final_test_loss": last.get("test_loss"),
               "final_test_reconstruction": last.get("test_reconstruction"),
               "final_test_kl": last.get("test_kl"), "best_test_loss": best if history else None,
               "train_seconds": round(elapsed, 2), "history": history}
    summary = (f"{cfg.name} seed {cfg.seed}: stopped inside its first epoch" if not history
               else f"{cfg.name} seed {cfg.seed}: {metrics['epochs']} epochs in {elapsed:.0f}s, final "
               f"loss {metrics['final_loss']:.2f}, test loss {metrics['final_test_loss']:.2f}")
    return run.finish(metrics, {"best_test_loss": metrics["best_test_loss"],
                                "final_test_loss": metrics["final_test_loss"]}, summary)


def log_epoch(logger, record: dict, model, shown: torch.Tensor) -> None:
    """An epoch's figures, reconstructions of `shown` and (2-D latent) the latent grid."""
    epoch = record["epoch"]
    logger.scalars(epoch, {"epoch_loss": record["loss"], "test/loss": record["test_loss"],
                           "test/reconstruction": record["test_reconstruction"],
                           "test/kl": record["test_kl"],
                           "images_per_second": record["images_per_second"]})
    with torch.no_grad():
        model.eval()
        mean, _ = model.encode(shown)
        decoded = torch.sigmoid(model.decode_logits(mean))
        grid = latent_grid(model, 20, 4.0) if model.latent_dim == 2 else None
        model.train()
    logger.writer.add_image("reconstructions", pairs_image(shown, decoded), epoch,
                            dataformats="HW")
    if grid is not None:
        logger.writer.add_image("latent_grid", grid, epoch, dataformats="HW")
    logger.progress({"loss": record["loss"], "test_loss": record["test_loss"]})
    logger.info(f"epoch {epoch}: loss {record['loss']:.2f}, test loss {record['test_loss']:.2f} "
                f"(reconstruction {record['test_reconstruction']:.2f}, KL "
                f"{record['test_kl']:.2f}), {record['images_per_second']:.0f} images/s")


# ---------------------------------------------------------------- tools


@dataclass
class GenerateArgs(OnnxToolArgs):
    grid: int = at_least(1, 20)  # images per side
    range: float = above(0, 4.0)  # z in [-range, range] on both axes
    out: str = "latent.png"  # the PNG to write
    device: str = "cpu"  # cpu | cuda | cuda:N | mps | auto


@dataclass
class EvalArgs(OnnxToolArgs):
    seed: int = 0  # seeds what is drawn at random here


@dataclass
class WatchArgs(ToolArgs):
    device: str = "cpu"  # one picture at a time: the CPU is quick enough
    range: float = above(0, 4.0)
    points: int = at_least(1, 2000)  # test images plotted in the latent plane
    frames: int | None = None  # stop after this many frames (default: until closed)
    record: str | None = None  # save the last frame to this .png
    fps: int = at_least(1, 30)  # frames per second of the window


def load_model(payload: dict, device: torch.device):
    """The run's model, or an export's two networks standing in for it."""
    cfg = OmegaConf.create(payload["config"])
    if "export" in payload:
        return cfg, ExportedVAE(payload["export"])
    model = load_weights(build_model(cfg).to(device), payload, "model").eval()
    return cfg, model


def model_device(model) -> torch.device:
    return next(model.parameters()).device if isinstance(model, torch.nn.Module) else \
        torch.device("cpu")


class ExportedVAE:
    """An export's encoder and decoder behind the model's own methods, run by ONNX
    Runtime. The decoder gives pixels, so logits come back as their logit, clipped where
    a pixel rounds to 0 or 1 in float32 (the bernoulli loss moves in its last digits)."""

    def __init__(self, folder: Path):
        self.encoder = OnnxNetwork(Path(folder) / "encoder.onnx")
        self.decoder = OnnxNetwork(Path(folder) / "decoder.onnx")
        self.latent_dim = self.decoder.session.get_inputs()[0].shape[1]

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(images)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return torch.logit(self.decoder(z), eps=1e-7)

    def eval(self) -> "ExportedVAE":
        return self

    def train(self, mode: bool = True) -> "ExportedVAE":
        return self


def generate(payload: dict, args) -> Path:
    cfg, model = load_model(payload, select_device(args.device))
    out = write_png(Path(args.out), latent_grid(model, args.grid, args.range))
    print(f"wrote a {args.grid}x{args.grid} latent grid over [-{args.range:g}, {args.range:g}] "
          f"to {out}", flush=True)
    return out


def evaluate(payload: dict, args) -> dict:
    device = select_device(args.device)
    cfg, model = load_model(payload, device)
    data = load_images(cfg.data)
    test = test_terms(model, as_float(data.test_images).to(device), cfg.algo.likelihood, args.seed)
    summary = {"experiment": payload["experiment"], "checkpoint": args.checkpoint,
               "backend": args.backend, "epoch": payload["meta"]["epoch"], "dataset": data.name,
               "test_images": len(data.test_images), **{f"test_{k}": round(v, 4)
                                                        for k, v in test.items()}}
    print(json.dumps(summary), flush=True)
    return summary


def watch(payload: dict, args) -> dict:
    from generative.latent_explorer import explore

    device = select_device(args.device)
    cfg, model = load_model(payload, device)
    data = load_images(cfg.data)
    # a fixed random subset: a test split stored class by class must show every class
    pick = torch.randperm(len(data.test_images), generator=torch.Generator().manual_seed(0))
    pick = pick[:args.points]
    with torch.no_grad():
        z, _ = model.encode(as_float(data.test_images[pick]).to(device))

    def decode(point: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = model.decode_logits(torch.tensor(point, dtype=torch.float32, device=device)[None])
        return torch.sigmoid(logits).view(28, 28).cpu().numpy()

    return explore(decode, z.cpu().numpy(), data.test_labels[pick].numpy(),
                   payload["meta"]["classes"], args)


class Encoder(torch.nn.Module):
    """image [B, 784] in [0, 1] -> (mean, log_var) of the latent: the export's encoder."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(image)


class Decoder(torch.nn.Module):
    """z [B, latent] -> image [B, 784] in [0, 1]: the export's decoder."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model.decode_logits(z))


def export(payload: dict) -> tuple[list[Network], dict]:
    """The encoder and the decoder, checked on test images and their latents."""
    cfg, model = load_model(payload, torch.device("cpu"))
    data = load_images(cfg.data)
    images = as_float(data.test_images[:256])
    with torch.no_grad():
        z, _ = model.encode(images)
    return ([Network("encoder", Encoder(model), {"image": images}, ["mean", "log_var"],
                     about="the latent's Gaussian: mean and log variance"),
             Network("decoder", Decoder(model), {"z": z}, ["image"],
                     about="pixels in [0, 1], row by row (28 x 28)")],
            {"latent_size": int(z.shape[1]), "classes": data.classes, "dataset": data.name,
             "image": "[batch, 784] float32: uint8 pixels / 255, row by row"})
