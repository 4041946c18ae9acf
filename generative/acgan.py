"""Auxiliary-classifier GAN that draws MNIST digits of a requested class.

The book's recipe (Deep Learning with JavaScript, ch. 10, `mnist-acgan`, itself from
Keras' `mnist_acgan.py`) is written down in docs/recipes.md. Book: reasonable digits after 5
epochs, good after 15, close to perfect by 100 (600 batches of 100 per epoch).

Per batch: a discriminator step on real images (realness label 0.95, the "soft one")
beside generated ones (label 0; the generator in inference mode), then a generator
step on twice as many fakes through the frozen discriminator, asking for realness
0.95 and the requested classes. Both losses are binary cross-entropy on realness plus
cross-entropy on the class.
"""

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import MISSING, DictConfig, OmegaConf

from conf.schemas import at_least
from generative.classifier import load_judge, random_shift, to_model_input
from generative.datasets import load_images
from nn.blocks import glorot_normal_
from nn.checkpoint import load_weights, write_png
from nn.config import instantiate
from nn.device import maybe_compile, mixed_precision, select_device
from nn.errors import UserError
from nn.run import Run
from nn.seeding import global_rng_state, make_generator, set_global_rng_state

# rlgen-plot's default curve: the first of these tags a run logged (a judge's accuracy,
# else G's loss)
CURVES = ("judge/class_accuracy", "gLoss")

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


def sample_z(n: int, latent_size: int, generator: torch.Generator, device) -> torch.Tensor:
    """z ~ U(-1, 1), as the original."""
    return torch.rand(n, latent_size, generator=generator, device=device) * 2 - 1


def sample_classes(n: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.randint(0, NUM_CLASSES, (n,), generator=generator, device=device)


def realness_loss(logits: torch.Tensor, real: bool, algo) -> torch.Tensor:
    """The book's binary cross-entropy (real images labelled soft_one), or the hinge loss
    of spectrally normalised GANs (real pushed above 1, fakes below -1)."""
    if algo.loss == "hinge":
        return F.relu(1 - logits).mean() if real else F.relu(1 + logits).mean()
    return F.binary_cross_entropy_with_logits(
        logits, torch.full_like(logits, algo.soft_one if real else 0.0))


def augment(images: torch.Tensor, algo, rng) -> torch.Tensor:
    """What the discriminator sees: with augment_shift, every image (real or fake, in both
    steps) shifted at random, so a small training set is not memorised and the generator
    gains nothing from drawing shifted digits (differentiable augmentation)."""
    return random_shift(images, algo.augment_shift, rng) if algo.augment_shift else images


def discriminator_step(gen, disc, opt_d, real, labels, rng, algo) -> dict:
    """Real images beside fakes. The original draws the fakes with the generator in
    inference mode (BatchNorm running statistics); the alternative uses batch statistics,
    the same mode the generator step trains in. The class loss covers the fakes' requested
    classes too, unless `class_loss_on_fakes` is off (the classifier then learns from real
    images only, and cannot be satisfied by fakes that are merely easy to classify)."""
    n = len(real)
    z = sample_z(n, gen.latent_size, rng, real.device)
    requested = sample_classes(n, rng, real.device)
    gen.train(not algo.fakes_in_inference_mode)
    with torch.no_grad():
        fake = gen(z, requested)
    gen.train()
    realness, aux = disc(augment(torch.cat([real, fake]), algo, rng),
                         torch.cat([labels, requested]))
    real_loss = realness_loss(realness[:n], True, algo)
    fake_loss = realness_loss(realness[n:], False, algo)
    if algo.loss == "bce":  # the book: one cross-entropy over the 2n images
        loss_realness = (real_loss + fake_loss) / 2
    else:
        loss_realness = real_loss + fake_loss
    if algo.class_loss_on_fakes:
        class_loss = F.cross_entropy(aux, torch.cat([labels, requested]))
    else:
        class_loss = F.cross_entropy(aux[:n], labels)
    loss = loss_realness + class_loss
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return {"dLoss": loss, "d_realness": loss_realness, "d_class": class_loss}


def generator_step(gen, disc, opt_g, n: int, rng, algo, device) -> dict:
    """Fakes through the frozen discriminator, asking to be judged real and of the
    requested classes; only the generator's weights move."""
    z = sample_z(n, gen.latent_size, rng, device)
    requested = sample_classes(n, rng, device)
    disc.requires_grad_(False)
    try:
        realness, aux = disc(augment(gen(z, requested), algo, rng), requested)
        if algo.loss == "hinge":
            loss_realness = -realness.mean()
        else:
            loss_realness = realness_loss(realness, True, algo)
        class_loss = F.cross_entropy(aux, requested)
        loss = loss_realness + algo.generator_class_weight * class_loss
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
    finally:
        disc.requires_grad_(True)
    return {"gLoss": loss, "g_realness": loss_realness, "g_class": class_loss}


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


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, D]:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), in float64."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(cov_a)
    root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


@torch.no_grad()
def judge_images(judge, images: torch.Tensor, requested: torch.Tensor) -> dict:
    logits, feats = [], []
    for x in images.split(1000):
        feats.append(judge.features(x))
        logits.append(judge.head(feats[-1]))
    probs = torch.cat(logits).softmax(1)
    return {"class_accuracy": (probs.argmax(1) == requested).float().mean().item(),
            "judge_confidence": probs.gather(1, requested[:, None]).mean().item(),
            "features": torch.cat(feats)}


@torch.no_grad()
def update_average(average: torch.nn.Module, current: torch.nn.Module, decay: float) -> None:
    """Exponential moving average of the generator's weights (BatchNorm statistics copied)."""
    for avg, cur in zip(average.parameters(), current.parameters(), strict=True):
        avg.lerp_(cur, 1 - decay)
    for avg, cur in zip(average.buffers(), current.buffers(), strict=True):
        avg.copy_(cur)


@torch.no_grad()
def standing_statistics(gen, seed: int, batches: int = 20, batch_size: int = 100) -> None:
    """Re-estimate BatchNorm's running statistics for the generator's current weights
    (BigGAN's "standing statistics"): an averaged generator never runs forward in training
    mode, so statistics copied from the raw one do not fit its weights. A fixed seed, so the
    same weights always get the same statistics."""
    norms = [m for m in gen.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches below
    device = next(gen.parameters()).device
    rng = make_generator(seed, device)
    gen.train()
    for _ in range(batches):
        gen(sample_z(batch_size, gen.latent_size, rng, device),
            sample_classes(batch_size, rng, device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    gen.eval()


def build_nets(cfg):
    return instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)


class Selection:
    """Judges the drawing generator after each epoch on one sample (the selection sample;
    `rlgen-eval` reports on fresh ones): class accuracy, and the Frechet distance (judge
    features) to a fixed sample of training images of the same size. The kept checkpoint
    is the one with the highest class accuracy (`select=class_accuracy`) or the lowest
    distance (`select=frechet`)."""

    def __init__(self, judge, images: torch.Tensor, algo, seed: int):
        self.judge, self.algo, self.seed = judge, algo, seed
        pick = torch.randperm(len(images), generator=make_generator(seed, torch.device("cpu")))
        real = images[pick[:algo.judge_per_class * NUM_CLASSES].to(images.device)]
        self.real_features = judge_images(judge, real, torch.zeros(len(real), dtype=torch.long,
                                                                   device=images.device))["features"]

    def judge_epoch(self, drawer, rng, device) -> dict:
        fakes, requested = generate_per_class(drawer, self.algo.judge_per_class, rng, device)
        judged = judge_images(self.judge, fakes, requested)
        return {"class_accuracy": judged["class_accuracy"],
                "frechet_train": frechet_distance(judged["features"], self.real_features)}

    def better(self, record: dict, best: float) -> bool:
        if self.algo.select == "frechet":
            return best < 0 or record["frechet_train"] < best
        return record["class_accuracy"] > best

    def score(self, record: dict) -> float:
        return record["frechet_train" if self.algo.select == "frechet" else "class_accuracy"]


def train(cfg: DictConfig, run_dir: Path) -> dict:
    algo = cfg.algo
    if algo.epoch_images and not algo.shuffle:
        raise UserError("algo.epoch_images draws a random subset each epoch: it needs "
                        "algo.shuffle=true")
    run = Run(cfg, run_dir)  # picks the device, seeds everything
    device = run.device
    data = load_images(cfg.data)
    images = to_model_input(data.train_images).to(device)
    labels = data.train_labels.to(device)
    gen, disc = (net.to(device) for net in build_nets(cfg))
    autocast = mixed_precision(device, cfg.bf16)
    opt_g = instantiate(algo.optimizer)(gen.parameters(), lr=algo.lr)
    opt_d = instantiate(algo.optimizer)(disc.parameters(), lr=algo.lr_d or algo.lr)
    rng = make_generator(cfg.seed + 1, device)
    fixed_z = sample_z(10, gen.latent_size, make_generator(cfg.seed + 2, device), device)
    judge = load_judge(algo.judge, device, cfg.data.name) if algo.judge else None
    selection = Selection(judge, images, algo, cfg.seed + 3) if judge else None
    # with ema_decay, digits are drawn (and saved as "generator") from averaged weights
    averaged = copy.deepcopy(gen) if algo.ema_decay is not None else None
    drawer = averaged if averaged is not None else gen
    maybe_compile(gen, cfg.compile)  # after the copy: the average is only drawn from
    maybe_compile(disc, cfg.compile)
    start, step, best, history, elapsed = 0, 0, -1.0, [], 0.0
    if run.resumed:
        gen.load_state_dict(run.state["generator_raw" if averaged else "generator"])
        disc.load_state_dict(run.state["discriminator"])
        opt_g.load_state_dict(run.state["opt_g"])
        opt_d.load_state_dict(run.state["opt_d"])
        if averaged is not None:
            averaged.load_state_dict(run.state["generator"])
        rng.set_state(run.state["rng"])
        set_global_rng_state(run.state["torch_rng"])
        start, step, best = run.meta["epoch"], run.meta["step"], run.meta["best"]
        history, elapsed = run.meta["history"], run.meta["train_seconds"]

    def save(name: str, epoch: int) -> None:
        state = {"generator": drawer.state_dict(), "discriminator": disc.state_dict(),
                 "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                 "rng": rng.get_state(), "torch_rng": global_rng_state()}
        if averaged is not None:
            state["generator_raw"] = gen.state_dict()
        run.save(name, state, {"epoch": epoch, "step": step, "best": best, "history": history,
                               "train_seconds": elapsed, "dataset": data.name})

    def out_of_time(epoch_start: float) -> bool:
        spent = elapsed + time.perf_counter() - epoch_start
        return algo.max_seconds is not None and spent >= algo.max_seconds

    logger = run.open_logger(algo.epochs, "epoch", done=start, logged_to=step)
    per_epoch = min(len(images), algo.epoch_images or len(images))
    logger.info(f"training {cfg.name} on {device}: {data.name}, {len(images)} images, "
                f"{math.ceil(per_epoch / algo.batch_size)} batches per epoch; run dir {run_dir}")
    for epoch in range(start + 1, algo.epochs + 1):
        t0 = time.perf_counter()
        order = (torch.randperm(len(images), generator=rng, device=device) if algo.shuffle
                 else torch.arange(len(images), device=device))[:algo.epoch_images]
        sums, batches = {}, 0
        for index in order.split(algo.batch_size):
            with autocast:  # the steps' backward passes follow the forward dtypes
                d = discriminator_step(gen, disc, opt_d, images[index], labels[index], rng, algo)
                g = generator_step(gen, disc, opt_g, algo.generator_batches * len(index), rng,
                                   algo, device)
            if averaged is not None:  # with ema_warmup, a short memory while G moves fast
                decay = min(algo.ema_decay, (1 + step) / (10 + step)) if algo.ema_warmup \
                    else algo.ema_decay
                update_average(averaged, gen, decay)
            step, batches = step + 1, batches + 1
            values = {k: v.item() for k, v in (d | g).items()}
            run.check_finite(sum(values.values()), f"step {step} (epoch {epoch})")
            logger.scalars(step, values)
            sums = {k: sums.get(k, 0.0) + v for k, v in values.items()}
            if out_of_time(t0):
                break
        seconds = time.perf_counter() - t0
        elapsed += seconds
        record = {"epoch": epoch, "step": step, **{k: v / batches for k, v in sums.items()},
                  "steps_per_second": batches / seconds, "train_seconds": round(elapsed, 2)}
        if algo.standing_stats:
            standing_statistics(drawer, cfg.seed + 4)
        if selection is not None:
            record |= selection.judge_epoch(drawer, rng, device)
        history.append(record)
        log_epoch(logger, record, digit_grid(drawer, fixed_z, list(range(10))))
        save("last", epoch)
        # with a judge, the best by the selection rule; without one, the latest
        if selection is None or selection.better(record, best):
            best = selection.score(record) if selection else best
            save("best", epoch)
        if run.stop_requested(f"epoch {epoch}") or out_of_time(time.perf_counter()):
            break

    last = history[-1] if history else {}
    metrics = {"device": str(device), "dataset": data.name, "train_images": len(images),
               "epochs": last.get("epoch", 0), "steps": step, "final_dLoss": last.get("dLoss"),
               "final_gLoss": last.get("gLoss"), "select": algo.select if judge else None,
               "best": best if judge else None, "train_seconds": round(elapsed, 2),
               "history": history}
    if judge and history:  # the kept checkpoint's epoch and both of its figures
        kept = next(h for h in history if selection.score(h) == best)
        metrics |= {"best_epoch": kept["epoch"], "best_class_accuracy": kept["class_accuracy"],
                    "best_frechet_train": kept["frechet_train"]}
    summary = (f"{cfg.name} seed {cfg.seed}: {metrics['epochs']} epochs ({step} steps) in "
               f"{elapsed:.0f}s, final dLoss {metrics['final_dLoss']:.3f}, gLoss "
               f"{metrics['final_gLoss']:.3f}")
    return run.finish(metrics, {"final_dLoss": metrics["final_dLoss"],
                                "final_gLoss": metrics["final_gLoss"]}, summary)


def log_epoch(logger, record: dict, digits: torch.Tensor) -> None:
    """An epoch's figures, the fixed-noise digit grid and the progress line."""
    epoch, judged = record["epoch"], "class_accuracy" in record
    if judged:
        logger.scalars(epoch, {"judge/class_accuracy": record["class_accuracy"],
                               "judge/frechet_train": record["frechet_train"]})
    logger.scalars(epoch, {"steps_per_second": record["steps_per_second"]})
    logger.writer.add_image("digits", digits, epoch, dataformats="HW")
    live = {"dLoss": record["dLoss"], "gLoss": record["gLoss"]}
    if judged:
        live["class_acc"] = record["class_accuracy"]
    logger.progress(live)
    logger.info(f"epoch {epoch}: dLoss {record['dLoss']:.4f}, gLoss {record['gLoss']:.4f}, "
                f"{record['steps_per_second']:.2f} steps/s"
                + (f", class accuracy {record['class_accuracy']:.3f}, Frechet distance to "
                   f"training images {record['frechet_train']:.1f}" if judged else ""))


# ---------------------------------------------------------------- tools


@dataclass
class EvalArgs:
    run: str = MISSING  # a run dir made by rlgen-train (or one of its checkpoint files)
    judge: str = MISSING  # a run dir of experiment mnist_cnn
    checkpoint: str = "best"  # best | last (the kept or the latest weights)
    # generated images per class; default: as many as the held-out set has (equal sample
    # sizes for every Frechet distance, floor included)
    per_class: int | None = at_least(2, None)
    seed: int = 0  # seeds what is drawn at random here
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps


@dataclass
class GenerateArgs:
    run: str = MISSING  # a run dir made by rlgen-train (or one of its checkpoint files)
    checkpoint: str = "best"  # best | last (the kept or the latest weights)
    digits: str = "0123456789"  # one row per digit
    n: int = at_least(1, 8)  # images per digit
    seed: int = 0  # seeds what is drawn at random here
    out: str = "digits.png"  # the PNG to write
    device: str = "cpu"  # cpu | cuda | cuda:N | mps | auto


@dataclass
class WatchArgs:
    run: str = MISSING  # a run dir made by rlgen-train (or one of its checkpoint files)
    checkpoint: str = "best"  # best | last (the kept or the latest weights)
    seed: int = 0  # seeds what is drawn at random here
    frames: int | None = None  # stop after this many frames (default: until closed)
    record: str | None = None  # save the last frame to this .png
    fps: int = at_least(1, 30)  # frames per second of the window


def load_generator(payload: dict, device) -> tuple[DictConfig, Generator]:
    cfg = OmegaConf.create(payload["config"])
    gen, _ = build_nets(cfg)
    return cfg, load_weights(gen, payload, "generator").to(device).eval()


@torch.no_grad()
def nearest_distances(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """For each image, the pixel-space (L2) distance to its nearest reference image."""
    flat_refs = references.flatten(1)
    return torch.cat([torch.cdist(x.flatten(1), flat_refs).min(1).values
                      for x in images.split(1000)])


def evaluate(payload: dict, args) -> dict:
    """How right and how sharp, measured fairly: the judge's class accuracy on generated
    images; Frechet distances (judge features) to the held-out images and to as many
    training images, beside the real-vs-real floor at the same sample size; and a
    nearest-neighbour check that the generator does not copy its training images (its
    images' distances to the nearest training image against those of held-out images)."""
    device = select_device(args.device)
    cfg, gen = load_generator(payload, device)
    judge = load_judge(args.judge, device, cfg.data.name)
    data = load_images(cfg.data)
    real_test = to_model_input(data.test_images).to(device)
    per_class = args.per_class or max(2, len(real_test) // NUM_CLASSES)
    fakes, requested = generate_per_class(gen, per_class, make_generator(args.seed, device),
                                          device)
    judged = judge_images(judge, fakes, requested)
    real_train = to_model_input(data.train_images).to(device)
    n = min(len(fakes), len(real_test))  # every Frechet distance on n images a side
    cpu_rng = make_generator(args.seed, torch.device("cpu"))
    train_sample = real_train[torch.randperm(len(real_train), generator=cpu_rng)[:n].to(device)]
    test_sample = real_test[torch.randperm(len(real_test), generator=cpu_rng)[:n].to(device)]
    fake_feats = judged["features"][torch.randperm(len(fakes), generator=cpu_rng)[:n].to(device)]

    def features(images: torch.Tensor) -> torch.Tensor:
        return judge_images(judge, images, torch.zeros(len(images), dtype=torch.long,
                                                       device=device))["features"]

    test_feats, train_feats = features(test_sample), features(train_sample)
    fake_nn = nearest_distances(fakes, real_train)
    test_nn = nearest_distances(real_test, real_train)
    summary = {"experiment": payload["experiment"], "checkpoint": args.checkpoint,
               "epoch": payload["meta"]["epoch"], "step": payload["meta"].get("step"),
               "dataset": data.name, "generated": len(fakes), "frechet_sample": n,
               "seed": args.seed,
               "class_accuracy": round(judged["class_accuracy"], 4),
               "judge_confidence": round(judged["judge_confidence"], 4),
               "frechet_distance": round(frechet_distance(fake_feats, test_feats), 3),
               "frechet_to_train": round(frechet_distance(fake_feats, train_feats), 3),
               "frechet_floor_real_test_vs_train": round(
                   frechet_distance(test_feats, train_feats), 3),
               "nearest_train_median_generated": round(fake_nn.median().item(), 3),
               "nearest_train_median_held_out": round(test_nn.median().item(), 3),
               # images closer to a training image than 99% of held-out images are
               "closer_than_held_out_p1": round(
                   (fake_nn < torch.quantile(test_nn, 0.01)).float().mean().item(), 4)}
    summary["frechet_ratio"] = round(summary["frechet_distance"]
                                     / max(summary["frechet_floor_real_test_vs_train"], 1e-9), 2)
    print(json.dumps(summary), flush=True)
    return summary


def generate(payload: dict, args) -> Path:
    device = select_device(args.device)
    _, gen = load_generator(payload, device)
    if not args.digits or any(c not in "0123456789" for c in args.digits):
        raise UserError(f"digits={args.digits!r} must be a string of digits 0-9, e.g. 0123456789")
    if args.n < 1:
        raise UserError("n must be at least 1")
    z = sample_z(args.n, gen.latent_size, make_generator(args.seed, device), device)
    out = write_png(Path(args.out), digit_grid(gen, z, [int(c) for c in args.digits]))
    print(f"wrote {len(args.digits)} rows of {args.n} digits to {out}", flush=True)
    return out


def watch(payload: dict, args) -> dict:
    from generative.digit_viewer import view_digits

    cfg, gen = load_generator(payload, torch.device("cpu"))
    data = load_images(cfg.data)
    real = [data.test_images[data.test_labels == d][0].float() / 255 for d in range(NUM_CLASSES)]

    def draw(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = gen(z.expand(NUM_CLASSES, -1), torch.arange(NUM_CLASSES))
        return (out[:, 0] + 1) / 2

    return view_digits(draw, torch.stack(real), gen.latent_size,
                       make_generator(args.seed, torch.device("cpu")), args)
