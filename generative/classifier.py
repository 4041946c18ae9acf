"""MNIST convnet classifier: the book's chapter 4 model shape, used here as the judge of
generated digits (its class predictions, and its penultimate features for a Frechet
distance).

Book model: conv 8 5x5 ReLU, max-pool 2, conv 16 5x5 ReLU, max-pool 2, flatten,
dense 10 softmax. The `mnist_cnn` experiment widens it (32 and 64 filters, a dense
layer of 128 with dropout) because a judge must be clearly better than what it judges,
and the 128 features give the Frechet distance a compact, well-trained space.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import MISSING, DictConfig, OmegaConf

from generative.datasets import load_images
from nn.checkpoint import checkpoint_path, load_checkpoint, load_weights
from nn.config import instantiate
from nn.contracts import OnnxToolArgs
from nn.device import maybe_compile, mixed_precision, select_device
from nn.epochs import EpochRecipe
from nn.errors import UserError
from nn.export import Network, OnnxNetwork
from nn.memory import build_network
from nn.run import Run
from nn.schema import at_least, between, sizes
from nn.seeding import make_generator


# rlgen-plot's default curve: the first of these tags a run logged (held-out accuracy, each epoch)
@dataclass
class ConvClassifierConfig:
    _target_: str = MISSING
    channels: list[int] = sizes()  # one conv block (conv, ReLU, max-pool) each
    kernel_size: int = at_least(1)
    hidden: int | None = at_least(1, None)  # a dense layer before the output (null: the book's none)
    dropout: float = between(0, 1, upper_open=True)
    batch_norm: bool = False  # after each conv: steadier, faster training of a wider judge


@dataclass
class ClassifierTrainConfig(EpochRecipe):
    augment_shift: int = at_least(0)  # random translations of up to this many pixels (0: none)
    augment_flip: bool = False  # mirror half the images left to right (clothes, not digits)
    cosine_lr: bool = False  # lr falls from algo.lr to 0 over the epochs, set at each epoch



# the settings this trainer adds to the config tree, {group/name: schema} (conf/schemas.py)
SCHEMAS = {"algo/classifier_schema": ClassifierTrainConfig,
           "model/conv_classifier_schema": ConvClassifierConfig}


CURVES = ("test_accuracy",)

IMAGE_FAMILY = {"mnist_5k": "mnist"}  # a judge of MNIST digits judges any of them


class MNISTConvNet(torch.nn.Module):
    """Images in [-1, 1], [B, 1, 28, 28] -> class logits; `features` gives the
    penultimate activations."""

    def __init__(self, channels: list[int], kernel_size: int, hidden: int | None,
                 dropout: float, batch_norm: bool = False):
        super().__init__()
        layers, width, side = [], 1, 28
        for c in channels:  # conv, (batch norm), ReLU, max-pool: one block a size
            layers += [torch.nn.Conv2d(width, c, kernel_size)]
            layers += [torch.nn.BatchNorm2d(c)] if batch_norm else []
            layers += [torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
            width, side = c, (side - kernel_size + 1) // 2
        if side < 1:
            raise UserError(f"{len(channels)} conv blocks of kernel {kernel_size} shrink a 28x28 "
                            "image to nothing; use fewer model.channels or a smaller kernel_size")
        layers.append(torch.nn.Flatten())
        width *= side * side
        if hidden:
            layers += [torch.nn.Dropout(dropout), torch.nn.Linear(width, hidden), torch.nn.ReLU()]
            width = hidden
        self.body = torch.nn.Sequential(*layers)
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(width, 10)
        self.feature_dim = width

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(images)))


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float [N, 1, 28, 28] in [-1, 1] (the generator's range)."""
    return images[:, None].float() / 127.5 - 1.0


@torch.no_grad()
def accuracy(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = sum((model(x).argmax(1) == y).sum().item()
                  for x, y in zip(images.split(1000), labels.split(1000), strict=True))
    model.train()
    return correct / len(images)


def build_model(cfg) -> torch.nn.Module:
    return build_network(cfg.model)


def train(cfg: DictConfig, run_dir: Path) -> dict:
    algo = cfg.algo
    run = Run(cfg, run_dir)  # picks the device, seeds everything
    device = run.device
    data = load_images(cfg.data)
    train_x, train_y = to_model_input(data.train_images).to(device), data.train_labels.to(device)
    test_x, test_y = to_model_input(data.test_images).to(device), data.test_labels.to(device)
    model = maybe_compile(build_model(cfg).to(device), cfg.compile)
    autocast = mixed_precision(device, cfg.bf16)
    optimizer = instantiate(algo.optimizer)(model.parameters(), lr=algo.lr)
    shuffle_rng = make_generator(cfg.seed + 1, device)
    loop = run.keep({"epoch": 0, "step": 0, "test_accuracy": None, "best_test_accuracy": -1.0,
                     "history": [], "train_seconds": 0.0, "dataset": data.name},
                    model=model, optimizer=optimizer, shuffle_rng=shuffle_rng)
    position = run.epoch_position(shuffle_rng)
    logger = run.open_logger(algo.epochs, "epoch", done=loop.epoch)
    logger.info(f"training {cfg.name} on {device}: {data.name}, {len(train_x)} training and "
                f"{len(test_x)} test images; run dir {run_dir}")
    for epoch in range(loop.epoch + 1, algo.epochs + 1):
        if algo.cosine_lr:  # from the epoch alone, so a resumed run sets the same lr
            for group in optimizer.param_groups:
                group["lr"] = algo.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / algo.epochs))
        order = position.draw_order(
            lambda: torch.randperm(len(train_x), generator=shuffle_rng, device=device))
        for index in position.remaining(order.split(algo.batch_size)):
            x = train_x[index]
            if algo.augment_shift:  # random translations of up to augment_shift pixels
                x = random_shift(x, algo.augment_shift, shuffle_rng)
            if algo.augment_flip:
                mirrored = torch.rand(len(x), generator=shuffle_rng, device=device) < 0.5
                x = torch.where(mirrored[:, None, None, None], x.flip(3), x)
            with autocast:
                loss = F.cross_entropy(model(x), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loop.step += 1
            position.add(loss=loss.item() * len(index))
            if run.stop_requested(f"batch {position.done} of epoch {epoch}"):
                break
        if run.stopped:  # inside the epoch: the final save keeps the position
            break
        sums = position.finish()
        loop.epoch, loop.train_seconds = epoch, loop.train_seconds + sums["seconds"]
        loop.test_accuracy = accuracy(model, test_x, test_y)
        record = {"epoch": epoch, "loss": sums["loss"] / len(train_x),
                  "test_accuracy": loop.test_accuracy, "train_seconds": round(loop.train_seconds, 2)}
        run.check_finite(record["loss"], f"epoch {epoch} (step {loop.step})")
        loop.history.append(record)
        run.progress(epoch, record)
        if loop.test_accuracy > loop.best_test_accuracy:
            loop.best_test_accuracy = loop.test_accuracy
            run.save("best")
        run.save("last")
        log_epoch(logger, record)
    best, elapsed = loop.best_test_accuracy, loop.train_seconds
    metrics = {"dataset": data.name, "train_images": len(train_x), "test_images": len(test_x),
               "final_test_accuracy": loop.test_accuracy, "best_test_accuracy": best,
               "train_seconds": round(elapsed, 2), "history": loop.history}
    summary = (f"{cfg.name} seed {cfg.seed}: stopped inside its first epoch" if not loop.history
               else f"{cfg.name} seed {cfg.seed}: test accuracy {loop.test_accuracy:.4f} (best "
               f"{best:.4f}) on {len(test_x)} {data.name} test images in {elapsed:.0f}s")
    return run.finish(metrics, {"best_test_accuracy": best}, summary)


def log_epoch(logger, record: dict) -> None:
    epoch, test_accuracy = record["epoch"], record["test_accuracy"]
    logger.scalars(epoch, {"loss": record["loss"], "test_accuracy": test_accuracy})
    logger.progress({"loss": record["loss"], "test_accuracy": test_accuracy})
    logger.info(f"epoch {epoch}: loss {record['loss']:.4f}, test accuracy {test_accuracy:.4f}")


def random_shift(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to `pixels` in x and y, filling with background (-1)."""
    padded = F.pad(x, (pixels,) * 4, value=-1.0)
    n = len(x)
    dx = torch.randint(0, 2 * pixels + 1, (n,), generator=generator, device=x.device)
    dy = torch.randint(0, 2 * pixels + 1, (n,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(28, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(28, device=x.device))[:, None, :]
    return padded[torch.arange(n, device=x.device)[:, None, None], 0, rows, cols][:, None]


# ---------------------------------------------------------------- the judge


def load_judge(run: str, device: torch.device, dataset: str | None = None) -> torch.nn.Module:
    """A classifier run's best model (mnist_cnn, fashion_cnn, ...), refused in one line if
    it is not a classifier or (given `dataset`) was trained on other images."""
    path = checkpoint_path(run, "best")
    payload = load_checkpoint(path)
    if payload.get("trainer") != __name__:
        raise UserError(f"{path} belongs to experiment {payload.get('experiment')!r}, not a "
                        "classifier; train a judge with experiment=mnist_cnn or fashion_cnn")
    judged = payload["config"]["data"]["name"]
    if dataset is not None and IMAGE_FAMILY.get(judged, judged) != IMAGE_FAMILY.get(dataset,
                                                                                    dataset):
        raise UserError(f"the judge {run} was trained on {judged}, these images are {dataset}; "
                        f"train one with experiment=mnist_cnn data={dataset}")
    return load_weights(build_model(OmegaConf.create(payload["config"])).to(device), payload,
                        "model").eval()


@dataclass
class EvalArgs(OnnxToolArgs):
    """The run, its checkpoint and the device: scored on its dataset's test split."""


def evaluate(payload: dict, args) -> dict:
    device = select_device(args.device)
    cfg = OmegaConf.create(payload["config"])
    if "export" in payload:  # an rlgen-export folder: ONNX Runtime classifies
        model = OnnxNetwork(payload["export"] / "classifier.onnx")
    else:
        model = load_weights(build_model(cfg).to(device), payload, "model").eval()
    data = load_images(cfg.data)
    acc = accuracy(model, to_model_input(data.test_images).to(device), data.test_labels.to(device))
    summary = {"experiment": payload["experiment"], "backend": args.backend, "dataset": data.name,
               "test_images": len(data.test_images), "test_accuracy": round(acc, 4)}
    print(json.dumps(summary), flush=True)
    return summary


def export(payload: dict) -> tuple[list[Network], dict]:
    """The classifier: images in, one logit per class out."""
    cfg = OmegaConf.create(payload["config"])
    model = load_weights(build_model(cfg), payload, "model").eval()
    data = load_images(cfg.data)
    images = to_model_input(data.test_images[:256])
    network = Network("classifier", model, {"images": images}, ["logits"],
                      about="class logits; the predicted class is the argmax")
    return [network], {"classes": data.classes, "dataset": data.name,
                       "image": "[batch, 1, 28, 28] float32: uint8 pixels / 127.5 - 1"}
