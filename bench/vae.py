"""VAE benchmark: images/s of rlgen's training loop (per-batch TensorBoard loss, RNG
handling, progress bar) against a minimal hand-written PyTorch loop of the same model,
loss and batch size, interleaved in one process. Writes bench/results/vae.json.

    python -m bench.vae [--epochs 10] [--rounds 3] [--experiment vae_mnist5k]
"""

import argparse
import statistics
import time

import torch

from bench import common
from generative import vae
from generative.datasets import load_images


def hand_written(cfg, epochs: int) -> float:
    """The loop a person would write: no logging, no checkpoints. Returns images/s."""
    torch.manual_seed(0)
    images = vae.as_float(load_images(cfg.data).train_images)
    model = vae.MLPVAE(cfg.model.intermediate_dim, cfg.model.latent_dim, cfg.model.init)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.algo.lr, eps=1e-7)
    rates = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for index in torch.randperm(len(images)).split(cfg.algo.batch_size):
            x = images[index]
            mean, log_var = model.encode(x)
            z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
            decoded = torch.sigmoid(model.decode_logits(z))
            reconstruction = ((decoded - x) ** 2).sum(1)
            kl = -0.5 * (1 + log_var - mean ** 2 - log_var.exp()).sum(1)
            loss = (reconstruction + kl).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        rates.append(len(images) / (time.perf_counter() - t0))
    return statistics.median(rates[1:] or rates)


def rlgen_loop(experiment: str, epochs: int) -> float:
    m = common.train_quiet(vae.train, f"experiment={experiment}", f"algo.epochs={epochs}")
    rates = [h["images_per_second"] for h in m["history"]]
    return statistics.median(rates[1:] or rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiment", default="vae_mnist5k")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cfg = common.compose(f"experiment={args.experiment}")
    ours, theirs = [], []
    for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
        ours.append(rlgen_loop(args.experiment, args.epochs))
        theirs.append(hand_written(cfg, args.epochs))
    rlgen_rate, hand_rate = statistics.median(ours), statistics.median(theirs)
    row = {"experiment": args.experiment, "batch_size": cfg.algo.batch_size,
           "rlgen_images_per_second": round(rlgen_rate), "hand_images_per_second": round(hand_rate),
           "overhead_percent": round(100 * (hand_rate / rlgen_rate - 1), 2),
           "rounds": args.rounds, "epochs_per_round": args.epochs}
    common.table("VAE training loop: rlgen vs a minimal hand-written loop", [row])
    common.write("vae", {"machine": common.machine(), "loop_speed": row})


if __name__ == "__main__":
    main()
