"""ACGAN benchmark: training steps/s (one discriminator and one generator step) of
rlgen's loop (per-batch TensorBoard losses, RNG handling, progress bar) against a
minimal hand-written PyTorch loop of the same networks and batch size, interleaved in
one process. Writes bench/results/acgan.json.

    python -m bench.acgan [--batches 20] [--rounds 3]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bench import common
from generative import acgan, acgan_nets
from generative.classifier import to_model_input
from generative.datasets import mnist_5k


def hand_written(batches: int, batch_size: int) -> float:
    """The loop a person would write from docs/recipes.md, part 5. Returns steps/s."""
    torch.manual_seed(0)
    data = mnist_5k()
    images = to_model_input(data.train_images)[:batches * batch_size]
    labels = data.train_labels[:batches * batch_size]
    gen, disc = acgan_nets.Generator(100), acgan_nets.Discriminator(0.3)
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    t0 = time.perf_counter()
    for real, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
        n = len(real)
        z, c = torch.rand(n, 100) * 2 - 1, torch.randint(0, 10, (n,))
        gen.eval()
        with torch.no_grad():
            fake = gen(z, c)
        gen.train()
        realness, aux = disc(torch.cat([real, fake]))
        target = torch.cat([torch.full((n,), 0.95), torch.zeros(n)])
        d_loss = F.binary_cross_entropy_with_logits(realness, target) + F.cross_entropy(
            aux, torch.cat([y, c]))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        z, c = torch.rand(2 * n, 100) * 2 - 1, torch.randint(0, 10, (2 * n,))
        disc.requires_grad_(False)
        realness, aux = disc(gen(z, c))
        g_loss = F.binary_cross_entropy_with_logits(realness, torch.full((2 * n,), 0.95)) + \
            F.cross_entropy(aux, c)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        disc.requires_grad_(True)
    return batches / (time.perf_counter() - t0)


def rlgen_loop(batches: int, batch_size: int) -> float:
    m = common.train_quiet(acgan.train, "experiment=acgan_mnist5k", "algo.epochs=1",
                           f"algo.batch_size={batch_size}", "algo.shuffle=false")
    # one epoch of 4,000 images; steps_per_second is measured over the training loop only
    return m["history"][0]["steps_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    batches = 4000 // args.batch_size  # rlgen's epoch on mnist_5k
    ours, theirs = [], []
    for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
        ours.append(rlgen_loop(batches, args.batch_size))
        theirs.append(hand_written(batches, args.batch_size))
    rlgen_rate, hand_rate = statistics.median(ours), statistics.median(theirs)
    row = {"batch_size": args.batch_size, "steps_per_round": batches,
           "rlgen_steps_per_second": round(rlgen_rate, 3),
           "hand_steps_per_second": round(hand_rate, 3),
           "overhead_percent": round(100 * (hand_rate / rlgen_rate - 1), 2), "rounds": args.rounds}
    common.table("ACGAN training steps: rlgen vs a minimal hand-written loop", [row])
    common.write("acgan", {"machine": common.machine(), "loop_speed": row})


if __name__ == "__main__":
    main()
