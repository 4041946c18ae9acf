"""How good a generator's digits are (a judge classifier's accuracy on the requested
classes, the Frechet distance in the judge's features, distances to the nearest
training image), and `rlgen-eval`, `rlgen-generate`, `rlgen-watch` for an ACGAN run."""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import MISSING, DictConfig, OmegaConf

from generative.acgan_nets import NUM_CLASSES, Generator, build_nets, digit_grid, generate_per_class, sample_z
from generative.classifier import load_judge, to_model_input
from generative.datasets import load_images
from nn.checkpoint import load_weights, write_png
from nn.contracts import OnnxToolArgs, ToolArgs
from nn.device import select_device
from nn.errors import UserError
from nn.export import Network, OnnxNetwork
from nn.schema import at_least
from nn.seeding import make_generator


@dataclass
class EvalArgs(OnnxToolArgs):
    judge: str = MISSING  # a run dir of experiment mnist_cnn
    # generated images per class; default: as many as the held-out set has (equal sample
    # sizes for every Frechet distance, floor included)
    per_class: int | None = at_least(2, None)
    seed: int = 0  # seeds what is drawn at random here


@dataclass
class GenerateArgs(OnnxToolArgs):
    digits: str = "0123456789"  # one row per digit
    n: int = at_least(1, 8)  # images per digit
    seed: int = 0  # seeds what is drawn at random here
    out: str = "digits.png"  # the PNG to write
    device: str = "cpu"  # cpu | cuda | cuda:N | mps | auto


@dataclass
class WatchArgs(ToolArgs):
    device: str = "cpu"  # one picture at a time: the CPU is quick enough
    seed: int = 0  # seeds what is drawn at random here
    frames: int | None = None  # stop after this many frames (default: until closed)
    record: str | None = None  # save the last frame to this .png
    fps: int = at_least(1, 30)  # frames per second of the window


def load_generator(payload: dict, device) -> tuple[DictConfig, Generator]:
    cfg = OmegaConf.create(payload["config"])
    if "export" in payload:  # an rlgen-export folder: ONNX Runtime draws, no torch model
        gen = OnnxNetwork(payload["export"] / "generator.onnx")
        gen.latent_size = gen.session.get_inputs()[0].shape[1]  # as the torch generator has it
        return cfg, gen
    gen, _ = build_nets(cfg)
    return cfg, load_weights(gen, payload, "generator").to(device).eval()


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
    z = sample_z(args.n, gen.latent_size, make_generator(args.seed, device), device)
    out = write_png(Path(args.out), digit_grid(gen, z, [int(c) for c in args.digits]))
    print(f"wrote {len(args.digits)} rows of {args.n} digits to {out}", flush=True)
    return out


def watch(payload: dict, args) -> dict:
    from generative.digit_viewer import view_digits

    device = select_device(args.device)
    cfg, gen = load_generator(payload, device)
    data = load_images(cfg.data)
    real = [data.test_images[data.test_labels == d][0].float() / 255 for d in range(NUM_CLASSES)]

    def draw(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = gen(z.to(device).expand(NUM_CLASSES, -1), torch.arange(NUM_CLASSES, device=device))
        return (out[:, 0].cpu() + 1) / 2

    return view_digits(draw, torch.stack(real), gen.latent_size,
                       make_generator(args.seed, torch.device("cpu")), args)


def export(payload: dict) -> tuple[list[Network], dict]:
    """The generator: a latent and a class in, an image in [-1, 1] out."""
    cfg, gen = load_generator(payload, torch.device("cpu"))
    rng = make_generator(0, torch.device("cpu"))
    classes = torch.arange(NUM_CLASSES).repeat(26)[:256]
    z = sample_z(len(classes), gen.latent_size, rng, torch.device("cpu"))
    data = load_images(cfg.data)
    return ([Network("generator", gen, {"z": z, "classes": classes}, ["images"],
                     about="images [batch, 1, 28, 28] in [-1, 1]; pixel = (v + 1) * 127.5")],
            {"latent_size": int(gen.latent_size), "latent": "uniform in [-1, 1]",
             "classes": data.classes, "dataset": data.name})
