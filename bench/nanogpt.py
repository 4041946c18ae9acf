"""rlgen's text model beside nanoGPT itself, on tiny Shakespeare with nanoGPT's split,
in one bench run on this machine: nanoGPT's unchanged train.py (from a copy of the
peer's folder: the repository holds none of its code) at its Shakespeare config and at
its README's CPU settings, and rlgen's `lstm_text_small`, all three training at once,
one thread each, each for the same wall-clock budget. nanoGPT's `max_iters` comes from
its pace timed at the start (as rlgen's planner sizes its epochs); its warm-up is cut to
a tenth of the iterations where its config's 100 would not fit, and its cosine decay
ends at the last iteration (lr_decay_iters = max_iters, as its configs do).

Each model is scored twice on the validation tenth: nanoGPT's way (`estimate_loss`:
random windows of its block size; nanoGPT's own printout, and rlgen-eval window=256 for
the LSTM) and rlgen's way (every character once, with as much context as the model
takes: the LSTM's whole past; the transformer's block, windows overlapping by half).
Writes bench/results/nanogpt.json.

    python -m bench.nanogpt --peer ../shared/peers/nanoGPT --corpus ../shared/data/tinyshakespeare.txt
        [--minutes 30] [--work DIR]
"""

import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench import common
from generative.download import file_digest

SETTINGS = {  # nanoGPT's configurations, as its README and config give them
    "nanoGPT shakespeare_char config": ["config/train_shakespeare_char.py"],
    "nanoGPT README CPU settings": [
        "config/train_shakespeare_char.py", "--block_size=64", "--batch_size=12",
        "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0"],
}
ON_CPU = ["--device=cpu", "--compile=False", "--dtype=float32"]
EVAL_ITERS = 20  # the README's CPU value: the config's 200 would take longer than training


def prepare(peer: Path, corpus: Path, work: Path) -> Path:
    """A scratch copy of nanoGPT with the corpus written as its prepare.py writes it:
    sorted characters, first 90% train, last 10% validation, uint16 ids."""
    copy = work / "nanoGPT"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(peer, copy)
    text = corpus.read_text()
    chars = sorted(set(text))
    ids = {ch: i for i, ch in enumerate(chars)}
    split = int(len(text) * 0.9)
    folder = copy / "data" / "shakespeare_char"
    for name, part in (("train", text[:split]), ("val", text[split:])):
        np.array([ids[ch] for ch in part], dtype=np.uint16).tofile(folder / f"{name}.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": ids}
    (folder / "meta.pkl").write_bytes(pickle.dumps(meta))
    return copy


def nanogpt(args: list[str], out: str) -> list[str]:
    return [sys.executable, "train.py", *args, *ON_CPU, f"--out_dir={out}"]


def paces(copy: Path, work: Path, corpus: Path) -> dict[str, float]:
    """Seconds an iteration of each nanoGPT setting, timed as the real runs will go: all
    at once beside an rlgen run, one thread each (the first iteration, warm-up, left out)."""
    timing = {name: subprocess.Popen(
        nanogpt(settings, f"out-pace-{i}") + ["--max_iters=4", "--eval_iters=1",
                                                    "--log_interval=1",
                                                    "--always_save_checkpoint=False"],
        cwd=copy, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=one_thread())
        for i, (name, settings) in enumerate(SETTINGS.items())}
    load = subprocess.Popen([str(Path(sys.executable).parent / "rlgen-train"),
                             "experiment=lstm_text_small", f"data.path={corpus.resolve()}",
                             "algo.max_seconds=600", "threads=1",
                             f"hydra.run.dir={work.resolve() / 'pace-load'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=one_thread())
    found = {}
    for name, process in timing.items():
        out, _ = process.communicate()
        times = [float(t) for t in re.findall(r"^iter \d+: .*time ([\d.]+)ms", out, re.M)]
        found[name] = float(np.median(times[1:])) / 1e3
    load.kill()
    load.wait()
    shutil.rmtree(work / "pace-load", ignore_errors=True)
    return found


def one_thread() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@torch.no_grad()
def full_context_loss(copy: Path, out: str) -> dict:
    """Every validation character scored once by a nanoGPT checkpoint: windows of its
    block size that overlap by half, each scoring the characters the last one did not
    (the first window scores all of its own)."""
    sys.path.insert(0, str(copy))
    try:
        from model import GPT, GPTConfig
    finally:
        sys.path.pop(0)
    checkpoint = torch.load(copy / out / "ckpt.pt", map_location="cpu", weights_only=False)
    model = GPT(GPTConfig(**checkpoint["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v
                           for k, v in checkpoint["model"].items()})
    model.eval()
    val = torch.from_numpy(np.fromfile(copy / "data" / "shakespeare_char" / "val.bin",
                                       dtype=np.uint16).astype(np.int64))
    block, total, scored = model.config.block_size, 0.0, 0
    stride = block // 2
    for start in range(0, len(val) - 1, stride):
        end = min(start + block, len(val) - 1)
        x, y = val[start:end][None], val[start + 1:end + 1]
        logits = forward_all(model, x)
        first = 0 if start == 0 else block - stride
        losses = torch.nn.functional.cross_entropy(logits[first:], y[first:], reduction="sum")
        total, scored = total + float(losses), scored + len(y) - first
        if end == len(val) - 1:
            break
    return {"loss": round(total / scored, 4), "scored": scored, "context": block,
            "iter": checkpoint["iter_num"]}


def forward_all(model, x: torch.Tensor) -> torch.Tensor:
    """Logits at every position (nanoGPT's forward gives all positions when given
    targets; with none it keeps the last only)."""
    logits, _ = model(x, torch.zeros_like(x))
    return logits[0]


def markdown(results: dict) -> str:
    """docs/results.md's table, from a results file this bench wrote."""
    lines = ["| model | plan | wall seconds | checkpoint kept by | validation loss, nanoGPT's "
             "estimate | validation loss, every character (context) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in results["rows"]:
        plan = (f"{row['max_iters']:,} iterations at {row['seconds_per_iter']} s (timed), warm-up "
                f"{row['warmup_iters']}" if "max_iters" in row else
                f"{row['epochs']} epochs, {row['train_seconds']:.0f} s of training")
        context = row["context"] if isinstance(row["context"], str) else f"{row['context']} characters"
        # nanoGPT keeps its checkpoint by its own validation estimate (its train.py)
        kept = row.get("kept_by", "validation text")
        if row.get("best_selection_loss") is not None:
            kept += f" ({row['best_selection_loss']:.4f})"
        lines.append(f"| {row['model']} | {plan} | {row['wall_seconds']:,} | {kept} | "
                     f"{row['val_loss_nanogpt_estimate']} | {row['val_loss_full_context']} "
                     f"({context}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", type=Path, required=True, help="nanoGPT's folder")
    parser.add_argument("--corpus", type=Path, required=True, help="tiny Shakespeare")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_nanogpt"))
    parser.add_argument("--score-only", action="store_true",
                        help="score the runs a finished bench left in --work, train nothing")
    args = parser.parse_args()
    budget = args.minutes * 60
    args.work.mkdir(parents=True, exist_ok=True)
    rlgen_dir = (args.work / "lstm_text_small").resolve()
    rlgen_command = ["rlgen-train", "experiment=lstm_text_small",
                     f"data.path={args.corpus.resolve()}", f"algo.max_seconds={budget}",
                     "threads=1", f"hydra.run.dir={rlgen_dir}"]
    if args.score_only:
        copy = args.work / "nanoGPT"
        plans, finished = json.loads((args.work / "plans.json").read_text())
    else:
        copy = prepare(args.peer, args.corpus, args.work)
        plans, finished = train_all(copy, args, budget, rlgen_dir, rlgen_command)
        (args.work / "plans.json").write_text(json.dumps([plans, finished]))
    score(copy, args, plans, finished, rlgen_dir, rlgen_command)


def train_all(copy: Path, args, budget: float, rlgen_dir: Path, rlgen_command: list[str]):
    """All three at once, one thread each; (plans, wall seconds of each)."""
    plans, running = {}, {}
    for name, seconds in paces(copy, args.work, args.corpus).items():
        iters = max(1, int(budget / seconds))
        plans[name] = {"seconds_per_iter": round(seconds, 3), "max_iters": iters,
                       "warmup_iters": min(100, iters // 10)}
    shutil.rmtree(rlgen_dir, ignore_errors=True)
    began = time.time()
    for i, (name, settings) in enumerate(SETTINGS.items()):
        plan = plans[name]
        command = nanogpt(settings, f"out-{i}") + [
            f"--max_iters={plan['max_iters']}", f"--lr_decay_iters={plan['max_iters']}",
            f"--warmup_iters={plan['warmup_iters']}", f"--eval_interval={plan['max_iters']}",
            f"--eval_iters={EVAL_ITERS}", "--log_interval=50", "--always_save_checkpoint=True"]
        plan["command"] = "python " + " ".join(command[1:])
        log = (args.work / f"nanogpt-{i}.log").open("w")
        running[name] = subprocess.Popen(command, cwd=copy, stdout=log, stderr=subprocess.STDOUT,
                                         env=one_thread())
    rlgen = subprocess.Popen([str(Path(sys.executable).parent / rlgen_command[0]),
                              *rlgen_command[1:]], stdout=subprocess.DEVNULL,
                             stderr=(args.work / "lstm_text_small.log").open("w"),
                             env=one_thread())
    finished = {}
    while len(finished) < len(running) + 1:
        for name, process in [*running.items(), ("rlgen lstm_text_small", rlgen)]:
            if name not in finished and process.poll() is not None:
                if process.returncode != 0:
                    raise SystemExit(f"bench.nanogpt: {name} failed; see {args.work}")
                finished[name] = round(time.time() - began)
        time.sleep(5)
    return plans, finished


def score(copy: Path, args, plans: dict, finished: dict, rlgen_dir: Path,
          rlgen_command: list[str]) -> None:
    rows = []
    for i, name in enumerate(SETTINGS):
        printed = (args.work / f"nanogpt-{i}.log").read_text()
        last = re.findall(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)", printed, re.M)[-1]
        full = full_context_loss(copy, f"out-{i}")
        rows.append({"model": name, **plans[name],
                     "wall_seconds": finished[name],
                     "val_loss_nanogpt_estimate": float(last[2]),
                     "val_loss_full_context": full["loss"], "context": full["context"],
                     "trained_iters": full["iter"]})
    from generative import text_tools
    from nn.checkpoint import checkpoint_path, load_checkpoint

    payload = load_checkpoint(checkpoint_path(rlgen_dir, "best"))
    full = text_tools.evaluate(payload, text_tools.EvalArgs(run=str(rlgen_dir), device="cpu"))
    windows = text_tools.evaluate(payload, text_tools.EvalArgs(
        run=str(rlgen_dir), device="cpu", window=256, windows=EVAL_ITERS * 64))
    metrics = json.loads((rlgen_dir / "metrics.json").read_text())
    rows.append({"model": "rlgen lstm_text_small", "command": " ".join(rlgen_command),
                 "train_seconds": metrics["train_seconds"], "epochs": metrics["epochs"],
                 "wall_seconds": finished["rlgen lstm_text_small"],
                 "val_loss_nanogpt_estimate": windows["loss"],
                 "val_loss_full_context": full["loss"], "context": "all before",
                 # the epoch kept was chosen on the selection text (algo.selection_share),
                 # not on the validation text scored here
                 "kept_by": ("selection text" if metrics.get("best_selection_loss") is not None
                             else "validation text"),
                 "best_selection_loss": metrics.get("best_selection_loss")})
    common.table(f"tiny Shakespeare, {args.minutes:g} minutes each, all at once on one thread "
                 "each: validation loss (nats/char)",
                 [{k: r.get(k) for k in ("model", "val_loss_nanogpt_estimate",
                                         "val_loss_full_context")} for r in rows])
    common.write("nanogpt", {
        "command": "python -m bench.nanogpt " + " ".join(sys.argv[1:]),
        "corpus_sha256": file_digest(args.corpus), "minutes": args.minutes,
        "threads": 1, "rows": rows})


if __name__ == "__main__":
    main()
