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
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import MISSING, DictConfig

from generative.acgan_nets import (
    NUM_CLASSES,
    ACGANModelConfig,
    build_nets,
    digit_grid,
    generate_per_class,
    sample_classes,
    sample_z,
)
from generative.acgan_tools import frechet_distance, judge_images
from generative.classifier import load_judge, random_shift, to_model_input
from generative.datasets import load_images
from nn.config import instantiate
from nn.device import maybe_compile, mixed_precision
from nn.epochs import EpochRecipe
from nn.errors import UserError
from nn.run import Run
from nn.schema import above, at_least, between, one_of
from nn.seeding import make_generator

# the read-back tools of this trainer (nn/contracts.py)
TOOLS = "generative.acgan_tools"


@dataclass
class ACGANTrainConfig(EpochRecipe):
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
    standing_stats_batches: int = at_least(1, default=20)  # ... from this many batches of 100
    max_seconds: float | None = above(0, default=None)  # stop training after this long
    # images an epoch (each epoch a fresh random subset; null: all), so a large dataset is
    # judged and checkpointed as often as a small one
    epoch_images: int | None = at_least(1, default=None)


# the settings this trainer adds to the config tree, {group/name: schema} (conf/schemas.py)
SCHEMAS = {"algo/acgan_schema": ACGANTrainConfig, "model/acgan_schema": ACGANModelConfig}


CURVES = ("judge/class_accuracy", "gLoss")


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
    check_config(cfg)
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
    # with ema_decay the averaged weights are saved as "generator" (what the tools draw from)
    raw = {"generator_raw": gen} if averaged is not None else {}
    loop = run.keep({"epoch": 0, "step": 0, "best": -1.0, "history": [], "train_seconds": 0.0,
                     "dataset": data.name}, generator=drawer, **raw, discriminator=disc,
                    opt_g=opt_g, opt_d=opt_d, rng=rng)
    position = run.epoch_position(rng)
    logger = run.open_logger(algo.epochs, "epoch", done=loop.epoch, logged_to=loop.step)
    per_epoch = min(len(images), algo.epoch_images or len(images))
    logger.info(f"training {cfg.name} on {device}: {data.name}, {len(images)} images, "
                f"{math.ceil(per_epoch / algo.batch_size)} batches per epoch; run dir {run_dir}")
    for epoch in range(loop.epoch + 1, algo.epochs + 1):
        order = position.draw_order(
            lambda: (torch.randperm(len(images), generator=rng, device=device) if algo.shuffle
                     else torch.arange(len(images), device=device))[:algo.epoch_images])
        for index in position.remaining(order.split(algo.batch_size)):
            with autocast:  # the steps' backward passes follow the forward dtypes
                d = discriminator_step(gen, disc, opt_d, images[index], labels[index], rng, algo)
                g = generator_step(gen, disc, opt_g, algo.generator_batches * len(index), rng,
                                   algo, device)
            if averaged is not None:
                update_average(averaged, gen, ema_decay(algo, loop.step))
            loop.step += 1
            values = {k: v.item() for k, v in (d | g).items()}
            run.check_finite(sum(values.values()), f"step {loop.step} (epoch {epoch})")
            logger.scalars(loop.step, values)
            position.add(**values)
            if run.stop_requested(f"batch {position.done} of epoch {epoch}") or \
                    out_of_time(algo, loop.train_seconds + position.seconds):
                break
        if run.stopped:  # inside the epoch: the final save keeps the position
            break
        batches = position.done
        sums = position.finish()
        seconds = sums.pop("seconds")
        loop.epoch, loop.train_seconds = epoch, loop.train_seconds + seconds
        record = {"epoch": epoch, "step": loop.step, **{k: v / batches for k, v in sums.items()},
                  "steps_per_second": batches / seconds, "train_seconds": round(loop.train_seconds, 2)}
        if algo.standing_stats:
            standing_statistics(drawer, cfg.seed + 4, algo.standing_stats_batches)
        if selection is not None:
            record |= selection.judge_epoch(drawer, rng, device)
        loop.history.append(record)
        run.progress(epoch, record)
        log_epoch(logger, record, digit_grid(drawer, fixed_z, list(range(10))))
        # with a judge, the best by the selection rule; without one, the latest. The best
        # so far is updated before "last" is saved, so a resume knows what it must beat
        improved = selection is None or selection.better(record, loop.best)
        if improved and selection is not None:
            loop.best = selection.score(record)
        run.save("last")
        if improved:
            run.save("best")
        if out_of_time(algo, loop.train_seconds):
            break
    return finish(run, loop, selection, len(images), algo)


def check_config(cfg: DictConfig) -> None:
    """Settings that cannot go together, refused before a run dir is made."""
    if cfg.algo.epoch_images and not cfg.algo.shuffle:
        raise UserError("algo.epoch_images draws a random subset each epoch: it needs "
                        "algo.shuffle=true")


def out_of_time(algo, train_seconds: float) -> bool:
    return algo.max_seconds is not None and train_seconds >= algo.max_seconds


def ema_decay(algo, step: int) -> float:
    """The average's decay; with ema_warmup, a short memory while the generator moves fast."""
    if algo.ema_warmup:
        return min(algo.ema_decay, (1 + step) / (10 + step))
    return algo.ema_decay


def finish(run: Run, loop, selection, train_images: int, algo) -> dict:
    """metrics.json: the last epoch's losses and, with a judge, the kept epoch's figures."""
    cfg, history, step, best, elapsed = run.cfg, loop.history, loop.step, loop.best, loop.train_seconds
    judge = selection is not None
    last = history[-1] if history else {}
    metrics = {"device": str(run.device), "dataset": loop.dataset, "train_images": train_images,
               "epochs": last.get("epoch", 0), "steps": step, "final_dLoss": last.get("dLoss"),
               "final_gLoss": last.get("gLoss"), "select": algo.select if judge else None,
               "best": best if judge else None, "train_seconds": round(elapsed, 2),
               "history": history}
    if judge and history:  # the kept checkpoint's epoch and both of its figures
        kept = next(h for h in history if selection.score(h) == best)
        metrics |= {"best_epoch": kept["epoch"], "best_class_accuracy": kept["class_accuracy"],
                    "best_frechet_train": kept["frechet_train"]}
    summary = (f"{cfg.name} seed {cfg.seed}: stopped inside its first epoch" if not history
               else f"{cfg.name} seed {cfg.seed}: {metrics['epochs']} epochs ({step} steps) in "
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


