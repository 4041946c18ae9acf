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
from generative.classifier import load_judge, to_model_input
from generative.datasets import load_images
from nn.blocks import glorot_normal_
from nn.checkpoint import load_weights, write_png
from nn.config import instantiate
from nn.device import maybe_compile, mixed_precision, select_device
from nn.errors import UserError
from nn.run import Run
from nn.seeding import global_rng_state, make_generator, set_global_rng_state

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

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(images)
        return self.realness(h).squeeze(1), self.aux(h)


def sample_z(n: int, latent_size: int, generator: torch.Generator, device) -> torch.Tensor:
    """z ~ U(-1, 1), as the original."""
    return torch.rand(n, latent_size, generator=generator, device=device) * 2 - 1


def sample_classes(n: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.randint(0, NUM_CLASSES, (n,), generator=generator, device=device)


def discriminator_step(gen, disc, opt_d, real, labels, rng, soft_one: float,
                       fakes_in_inference_mode: bool = True) -> dict:
    """Real images (realness soft_one) beside fakes. The original draws the fakes with the
    generator in inference mode (BatchNorm running statistics); the alternative uses batch
    statistics, the same mode the generator step trains in."""
    n = len(real)
    z = sample_z(n, gen.latent_size, rng, real.device)
    requested = sample_classes(n, rng, real.device)
    gen.train(not fakes_in_inference_mode)
    with torch.no_grad():
        fake = gen(z, requested)
    gen.train()
    realness, aux = disc(torch.cat([real, fake]))
    target = torch.cat([torch.full((n,), soft_one, device=real.device),
                        torch.zeros(n, device=real.device)])
    realness_loss = F.binary_cross_entropy_with_logits(realness, target)
    class_loss = F.cross_entropy(aux, torch.cat([labels, requested]))
    loss = realness_loss + class_loss
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return {"dLoss": loss, "d_realness": realness_loss, "d_class": class_loss}


def generator_step(gen, disc, opt_g, n: int, rng, soft_one: float, device) -> dict:
    """Fakes through the frozen discriminator, asking for realness soft_one and the
    requested classes; only the generator's weights move."""
    z = sample_z(n, gen.latent_size, rng, device)
    requested = sample_classes(n, rng, device)
    disc.requires_grad_(False)
    try:
        realness, aux = disc(gen(z, requested))
        realness_loss = F.binary_cross_entropy_with_logits(
            realness, torch.full((n,), soft_one, device=device))
        class_loss = F.cross_entropy(aux, requested)
        loss = realness_loss + class_loss
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
    finally:
        disc.requires_grad_(True)
    return {"gLoss": loss, "g_realness": realness_loss, "g_class": class_loss}


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


def build_nets(cfg):
    return instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)


def train(cfg: DictConfig, run_dir: Path) -> dict:
    algo = cfg.algo
    run = Run(cfg, run_dir)  # picks the device, seeds everything
    device = run.device
    data = load_images(cfg.data)
    images = to_model_input(data.train_images).to(device)
    labels = data.train_labels.to(device)
    gen, disc = (net.to(device) for net in build_nets(cfg))
    autocast = mixed_precision(device, cfg.bf16)
    opt_g = instantiate(algo.optimizer)(gen.parameters(), lr=algo.lr)
    opt_d = instantiate(algo.optimizer)(disc.parameters(), lr=algo.lr)
    rng = make_generator(cfg.seed + 1, device)
    fixed_z = sample_z(10, gen.latent_size, make_generator(cfg.seed + 2, device), device)
    judge = load_judge(algo.judge, device) if algo.judge else None
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
        start, step, best = run.meta["epoch"], run.meta["step"], run.meta["best_class_accuracy"]
        history, elapsed = run.meta["history"], run.meta["train_seconds"]

    def save(name: str, epoch: int) -> None:
        state = {"generator": drawer.state_dict(), "discriminator": disc.state_dict(),
                 "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                 "rng": rng.get_state(), "torch_rng": global_rng_state()}
        if averaged is not None:
            state["generator_raw"] = gen.state_dict()
        run.save(name, state, {"epoch": epoch, "step": step, "best_class_accuracy": best,
                               "history": history, "train_seconds": elapsed,
                               "dataset": data.name})

    batches = math.ceil(len(images) / algo.batch_size)
    logger = run.open_logger(algo.epochs, "epoch", done=start, logged_to=step)
    logger.info(f"training {cfg.name} on {device}: {data.name}, {len(images)} images, "
                f"{batches} batches per epoch; run dir {run_dir}")
    for epoch in range(start + 1, algo.epochs + 1):
        t0 = time.perf_counter()
        order = (torch.randperm(len(images), generator=rng, device=device) if algo.shuffle
                 else torch.arange(len(images), device=device))
        sums = {}
        for index in order.split(algo.batch_size):
            with autocast:  # the steps' backward passes follow the forward dtypes
                d = discriminator_step(gen, disc, opt_d, images[index], labels[index], rng,
                                       algo.soft_one, algo.fakes_in_inference_mode)
                g = generator_step(gen, disc, opt_g, 2 * len(index), rng, algo.soft_one,
                                   device)
            if averaged is not None:
                update_average(averaged, gen, algo.ema_decay)
            step += 1
            values = {k: v.item() for k, v in (d | g).items()}
            run.check_finite(sum(values.values()), f"step {step} (epoch {epoch})")
            logger.scalars(step, values)
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
        seconds = time.perf_counter() - t0
        elapsed += seconds
        record = {"epoch": epoch, "step": step, **{k: v / batches for k, v in sums.items()},
                  "steps_per_second": batches / seconds, "train_seconds": round(elapsed, 2)}
        if judge is not None:
            fakes, requested = generate_per_class(drawer, algo.judge_per_class, rng, device)
            record["class_accuracy"] = judge_images(judge, fakes, requested)["class_accuracy"]
        history.append(record)
        log_epoch(logger, record, digit_grid(drawer, fixed_z, list(range(10))))
        save("last", epoch)
        # with a judge, best = the highest class accuracy; without one, the latest
        if judge is None or record["class_accuracy"] > best:
            best = record.get("class_accuracy", best)
            save("best", epoch)
        if run.stop_requested(f"epoch {epoch}"):
            break

    last = history[-1] if history else {}
    metrics = {"device": str(device), "dataset": data.name, "train_images": len(images),
               "epochs": last.get("epoch", 0), "steps": step, "final_dLoss": last.get("dLoss"),
               "final_gLoss": last.get("gLoss"), "best_class_accuracy": best if judge else None,
               "train_seconds": round(elapsed, 2), "history": history}
    summary = (f"{cfg.name} seed {cfg.seed}: {metrics['epochs']} epochs ({step} steps) in "
               f"{elapsed:.0f}s, final dLoss {metrics['final_dLoss']:.3f}, gLoss "
               f"{metrics['final_gLoss']:.3f}")
    return run.finish(metrics, {"final_dLoss": metrics["final_dLoss"],
                                "final_gLoss": metrics["final_gLoss"]}, summary)


def log_epoch(logger, record: dict, digits: torch.Tensor) -> None:
    """An epoch's figures, the fixed-noise digit grid and the progress line."""
    epoch, judged = record["epoch"], "class_accuracy" in record
    if judged:
        logger.scalars(epoch, {"judge/class_accuracy": record["class_accuracy"]})
    logger.scalars(epoch, {"steps_per_second": record["steps_per_second"]})
    logger.writer.add_image("digits", digits, epoch, dataformats="HW")
    live = {"dLoss": record["dLoss"], "gLoss": record["gLoss"]}
    if judged:
        live["class_acc"] = record["class_accuracy"]
    logger.progress(live)
    logger.info(f"epoch {epoch}: dLoss {record['dLoss']:.4f}, gLoss {record['gLoss']:.4f}, "
                f"{record['steps_per_second']:.2f} steps/s"
                + (f", class accuracy {record['class_accuracy']:.3f}" if judged else ""))


# ---------------------------------------------------------------- tools


@dataclass
class EvalArgs:
    run: str = MISSING
    judge: str = MISSING  # a run dir of experiment mnist_cnn
    checkpoint: str = "best"
    per_class: int = at_least(1, 500)  # generated images per digit
    seed: int = 0
    device: str = "auto"


@dataclass
class GenerateArgs:
    run: str = MISSING
    checkpoint: str = "best"
    digits: str = "0123456789"  # one row per digit
    n: int = at_least(1, 8)  # images per digit
    seed: int = 0
    out: str = "digits.png"
    device: str = "cpu"


@dataclass
class WatchArgs:
    run: str = MISSING
    checkpoint: str = "best"
    seed: int = 0
    frames: int | None = None  # stop after this many frames (default: until closed)
    record: str | None = None  # save the last frame to this .png
    fps: int = at_least(1, 30)


def load_generator(payload: dict, device) -> tuple[DictConfig, Generator]:
    cfg = OmegaConf.create(payload["config"])
    gen, _ = build_nets(cfg)
    return cfg, load_weights(gen, payload, "generator").to(device).eval()


def evaluate(payload: dict, args) -> dict:
    """Class accuracy and confidence of the judge on generated digits, and the Frechet
    distance in the judge's feature space (with the real-vs-real floor beside it)."""
    device = select_device(args.device)
    cfg, gen = load_generator(payload, device)
    judge = load_judge(args.judge, device)
    if args.per_class < 2:
        raise UserError("per_class must be at least 2")
    fakes, requested = generate_per_class(gen, args.per_class, make_generator(args.seed, device),
                                          device)
    judged = judge_images(judge, fakes, requested)
    data = load_images(cfg.data)
    real_test = to_model_input(data.test_images).to(device)
    real_train = to_model_input(data.train_images).to(device)
    pick = torch.randperm(len(real_train), generator=make_generator(args.seed, torch.device("cpu")))
    real_train = real_train[pick[:len(real_test)].to(device)]
    test_feats = judge_images(judge, real_test, data.test_labels.to(device))["features"]
    train_feats = judge_images(judge, real_train, torch.zeros(len(real_train), dtype=torch.long,
                                                              device=device))["features"]
    summary = {"experiment": payload["experiment"], "checkpoint": args.checkpoint,
               "epoch": payload["meta"]["epoch"], "generated_per_class": args.per_class,
               "class_accuracy": round(judged["class_accuracy"], 4),
               "judge_confidence": round(judged["judge_confidence"], 4),
               "frechet_distance": round(frechet_distance(judged["features"], test_feats), 3),
               "frechet_floor_real_test_vs_train": round(
                   frechet_distance(test_feats, train_feats), 3),
               "real_images": len(real_test), "dataset": data.name}
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
