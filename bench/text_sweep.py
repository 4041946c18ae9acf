"""Which LSTM for a small corpus in 30 minutes of a 2-core CPU? A sweep that answers on
a GPU, fairly: each candidate trains for the characters this CPU reads in the budget at
that candidate's own pace (slower, wider models read fewer), through the real trainer
in float32, and is ranked by its loss on the selection text (the first 5% of the training
text, `algo.selection_share` of lstm_text_small): the validation text, scored both ways
for the record (every character with full context, and nanoGPT's random 256-character
windows), chooses nothing. (The sweep that chose today's recipe, before the selection
text existed, ranked on the validation windows; its figures are in text_sweep.json.)

    python -m bench.text_sweep --rates --data PATH       # here: each candidate's CPU pace
    python -m bench.text_sweep --sweep 1 --data PATH     # on a GPU: train and score a round

Writes bench/results/text_sweep.json (--rates keeps the machine it timed them on).
"""

import argparse
import json
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import date
from pathlib import Path

from bench import common

BUDGET_SECONDS = 1600  # of training steps in a 30-minute run (planning and evaluation aside)
ARCHS = {"256": [256], "384": [384], "512": [512], "640": [640],
         "384x2": [384, 384], "512x2": [512, 512]}
# Each round: (architecture, extra overrides). Round 1: dropout for every size, then
# the training settings around 512 with dropout 0.25; round 2: around round 1's best
# (a short budget favours more updates: a higher rate, smaller batches, less dropout).
ROUNDS = {1: [
    ("256", ["model.dropout=0.0"]), ("256", ["model.dropout=0.1"]),
    ("384", ["model.dropout=0.1"]), ("384", ["model.dropout=0.25"]),
    ("512", ["model.dropout=0.1"]), ("512", ["model.dropout=0.25"]),
    ("512", ["model.dropout=0.4"]),
    ("640", ["model.dropout=0.25"]), ("640", ["model.dropout=0.4"]),
    ("384x2", ["model.dropout=0.25"]), ("512x2", ["model.dropout=0.25"]),
    ("512", ["model.dropout=0.25", "algo.lr=0.002"]),
    ("512", ["model.dropout=0.25", "algo.lr=0.008"]),
    ("512", ["model.dropout=0.25", "algo.optimizer.weight_decay=0.0"]),
    ("512", ["model.dropout=0.25", "algo.batch_size=32", "algo.examples_per_epoch=7808"]),
    ("512", ["model.dropout=0.25", "algo.sample_len=256", "algo.examples_per_epoch=3904"]),
], 2: [
    ("512", ["model.dropout=0.1", "algo.lr=0.008", "algo.batch_size=32"]),
    ("512", ["model.dropout=0.1", "algo.lr=0.012", "algo.batch_size=32"]),
    ("512", ["model.dropout=0.15", "algo.lr=0.008", "algo.batch_size=32"]),
    ("512", ["model.dropout=0.0", "algo.lr=0.008", "algo.batch_size=32"]),
    ("512", ["model.dropout=0.1", "algo.lr=0.008", "algo.batch_size=32", "algo.sample_len=64",
             "algo.examples_per_epoch=15616"]),
    ("512", ["model.dropout=0.1", "algo.lr=0.008"]),
    ("512", ["model.dropout=0.1", "algo.lr=0.008", "algo.batch_size=16"]),
    ("512", ["model.dropout=0.1", "algo.lr=0.008", "algo.batch_size=32",
             "algo.optimizer.weight_decay=0.3"]),
    ("384", ["model.dropout=0.1", "algo.lr=0.008", "algo.batch_size=32"]),
    ("384", ["model.dropout=0.05", "algo.lr=0.012", "algo.batch_size=32"]),
    ("640", ["model.dropout=0.1", "algo.lr=0.008", "algo.batch_size=32"]),
    ("512", ["model.dropout=0.1", "algo.lr=0.008", "algo.batch_size=32",
             "algo.final_lr_fraction=0.0", "algo.warmup_steps=50"]),
]}
# characters/s relative to batches of 64 on the CPU (more optimizer steps per character)
BATCH_PACE = {64: 1.0, 32: 0.9, 16: 0.8}


def base(data: str, arch: str) -> list[str]:
    return ["experiment=lstm_text_small", f"data.path={data}", "bf16=false",
            f"model.hidden_sizes=[{','.join(map(str, ARCHS[arch]))}]"]


def rates(data: str) -> dict:
    """Characters per second of training on this machine, from the trainer's own plan."""
    from generative import lstm_text

    out = {}
    for arch in ARCHS:
        m = common.train_quiet(lstm_text.train, *base(data, arch), "algo.max_seconds=20")
        out[arch] = m["plan"]["chars_per_second"]
        print(arch, out[arch], flush=True)
    return out


def trial(data: str, arch: str, extra: list[str], chars: float) -> dict:
    """Train one candidate on the GPU for `chars` characters; score its best checkpoint."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(1)
    import logging

    logging.getLogger("rlgen").setLevel(logging.WARNING)
    from generative import lstm_text, text_tools
    from nn.checkpoint import checkpoint_path, load_checkpoint

    cfg = common.compose(*base(data, arch), *extra, "device=cuda")
    per_epoch = cfg.algo.examples_per_epoch // cfg.algo.batch_size * cfg.algo.batch_size \
        * cfg.algo.sample_len
    epochs = max(1, round(chars / per_epoch))
    cfg = common.compose(*base(data, arch), *extra, "device=cuda", f"algo.epochs={epochs}",
                         "algo.max_seconds=null")
    with tempfile.TemporaryDirectory() as tmp:
        m = lstm_text.train(cfg, Path(tmp))
        payload = load_checkpoint(checkpoint_path(tmp, "best"))
        args = text_tools.EvalArgs(run=tmp, device="cuda", window=256)
        windows = text_tools.evaluate(payload, args)["loss"]
    history = m["history"]
    return {"arch": arch, "overrides": extra, "epochs": epochs,
            "chars": epochs * per_epoch,
            # what the candidates are ranked by: the selection text, carved from training
            "best_selection_loss": round(m["best_selection_loss"], 4),
            "best_val_loss": round(m["best_val_loss"], 4),
            "val_loss_windows_256": windows,
            "curve": [round(h["val_loss"], 4) for h in history],
            "gpu_seconds": m["train_seconds"]}


def batch_size(extra: list[str]) -> int:
    sizes = [int(o.split("=")[1]) for o in extra if o.startswith("algo.batch_size=")]
    return sizes[-1] if sizes else 64


def sweep(data: str, cpu_rates: dict, candidates: list, workers: int, keep) -> list[dict]:
    """Every candidate, `workers` at a time on the one GPU; `keep(rows)` after each."""
    rows = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(trial, data, arch, extra, cpu_rates[arch] * BUDGET_SECONDS
                               * BATCH_PACE[batch_size(extra)])
                   for arch, extra in candidates]
        for future in as_completed(futures):
            rows.append(future.result())
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "curve"}), flush=True)
            keep(rows)
    return sorted(rows, key=lambda r: r["best_selection_loss"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="a copy of tiny Shakespeare "
                        "(char-rnn's input.txt)")
    parser.add_argument("--rates", action="store_true")
    parser.add_argument("--sweep", type=int, choices=sorted(ROUNDS), help="the round to run")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--out", default=str(common.RESULTS / "text_sweep.json"))
    args = parser.parse_args()
    path = common.RESULTS / "text_sweep.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if args.rates:
        results["cpu"] = {"machine": common.machine(), "date": date.today().isoformat(),
                          "chars_per_second": rates(args.data),
                          "budget_seconds": BUDGET_SECONDS}
    if args.sweep:
        import torch

        key = "sweep" if args.sweep == 1 else f"sweep_round_{args.sweep}"
        results[key] = {"machine": f"{common.machine()}, {torch.cuda.get_device_name()}",
                        "date": date.today().isoformat(), "rows": []}

        def keep(rows):
            results[key]["rows"] = rows
            Path(args.out).write_text(json.dumps(results, indent=1) + "\n")

        keep(sweep(args.data, results["cpu"]["chars_per_second"], ROUNDS[args.sweep],
                   args.workers, keep))
        common.table(f"GPU sweep at CPU budgets, round {args.sweep}",
                     [{k: v for k, v in r.items() if k != "curve"} for r in results[key]["rows"]])
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    os.sync()


if __name__ == "__main__":
    main()
