"""Text benchmarks: training throughput of the book's recipe (`lstm_text`) and rlgen's
(`lstm_text_fast`) in one process; (with --summarize) the validation-loss curves of
finished runs at fixed wall-time budgets; (with --tiny) nanoGPT's yardstick, tiny
Shakespeare, trained for 30 minutes and scored both ways. Writes bench/results/text.json.

    python -m bench.text                            # throughput, about 2 minutes
    python -m bench.text --summarize RUN_DIR ...    # loss at 5 and 20 minutes, curve
    python -m bench.text --tiny FILE    # FILE: char-rnn's input.txt; 30 minutes

The 20-minute quality runs are plain training commands:
    rlgen-train experiment=lstm_text_fast
    rlgen-train experiment=lstm_text algo.max_seconds=1200
"""

import argparse
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

from bench import common
from generative import lstm_text, text_tools
from generative.download import file_digest
from nn.checkpoint import checkpoint_path, load_checkpoint

# Published figures on tiny Shakespeare with nanoGPT's split (last 10% validation),
# nats/char: nanoGPT's shakespeare_char recipe and its CPU variant, each its validation
# estimate over random 256-character windows.
REFERENCES = {"nanoGPT shakespeare_char (10.65 M parameters, about 3 min on one A100)": 1.4697,
              "nanoGPT CPU recipe (4 layers of 128)": 1.88}  # n-grams: python -m bench.ngram
TEMPERATURES = (0.25, 0.5, 0.75)


def throughput(seconds: float) -> list[dict]:
    rows = []
    for experiment in ("lstm_text", "lstm_text_fast"):
        m = common.train_quiet(lstm_text.train, f"experiment={experiment}",
                               f"algo.max_seconds={seconds}", "algo.epochs=1000")
        # the first epoch of each includes warm-up; a partial last epoch is as good a sample
        epochs = m["history"][1:] or m["history"]
        chars = sum(h["chars_per_second"] for h in epochs) / len(epochs)
        examples = sum(h["examples_per_second"] for h in epochs) / len(epochs)
        per_example = 1 if experiment == "lstm_text" else None
        rows.append({"experiment": experiment, "chars_per_second": round(chars),
                     "examples_per_second": round(examples, 1),
                     # characters that carry a loss term: one per window for the book's recipe
                     "targets_per_second": round(examples * per_example if per_example else chars),
                     "val_loss_after_budget": round(m["best_val_loss"], 4)})
    return rows


def at_budget(history: list[dict], seconds: float, clock: str = "train_seconds") -> float | None:
    """Best validation loss logged by `seconds` on `clock`: train_seconds (wall time with
    evaluation) or step_seconds (training steps only)."""
    within = [h["val_loss"] for h in history if h.get(clock, h["train_seconds"]) <= seconds]
    return round(min(within), 4) if within else None


def summarize(run_dirs: list[str]) -> list[dict]:
    rows = []
    for run in run_dirs:
        m = json.loads((Path(run) / "metrics.json").read_text())
        rows.append({"experiment": m["experiment"], "seed": m["seed"],
                     "date": date.today().isoformat(), "machine": common.machine(),
                     "commit": common.commit(), "command": common.command(),
                     "planned_epochs": m.get("planned_epochs"),
                     "chars_per_second": round(sum(h["chars_per_second"] for h in m["history"])
                                               / len(m["history"])),
                     "val_loss_5_min": at_budget(m["history"], 300),
                     "val_loss_5_min_of_steps": at_budget(m["history"], 300, "step_seconds"),
                     "val_loss_20_min": at_budget(m["history"], 1200),
                     "best_val_loss": round(m["best_val_loss"], 4),
                     "best_val_bpc": round(m["best_val_bpc"], 4),
                     # with a selection text: the epoch was kept by it, and the curve is it
                     **selection(m),
                     "train_seconds": m["train_seconds"], "epochs": m["epochs"],
                     # (wall seconds with evaluation, seconds of training steps, val loss)
                     "curve": [(round(h["train_seconds"]), round(h.get("step_seconds", 0)),
                                round(h["val_loss"], 4)) for h in m["history"]],
                     "run": run})
    return rows


def selection(m: dict) -> dict:
    """How a run kept its epoch: by its own selection text (then its validation loss was
    measured once, at the end) or by the validation text."""
    if m.get("best_selection_loss") is None:
        return {"kept_by": "validation text"}
    return {"kept_by": "selection text", "best_selection_loss": round(m["best_selection_loss"], 4),
            "selection_chars": m["selection_chars"]}


def tiny_markdown(row: dict) -> str:
    """A table of one --tiny row: how its epoch was kept and what it scored."""
    selection = (f"selection text, {row['best_selection_loss']}" if row.get("kept_by") ==
                 "selection text" else "validation text")
    return "\n".join([
        "| kept by (its loss) | epochs (planned), training seconds | validation, nanoGPT's "
        "estimate | validation, every character | date, commit |",
        "| --- | --- | --- | --- | --- |",
        f"| {selection} | {row['epochs']} ({row['planned_epochs']}), {row['train_seconds']:.0f} | "
        f"{row['val_loss_windows_256']} | {row['val_loss_full_context']} | "
        f"{row['date']}, {row.get('commit', '')} |"])


def tiny_selection_markdown(results: dict) -> str:
    """docs/results.md's table of the tiny-Shakespeare run that kept its epoch by the
    selection text."""
    return tiny_markdown(results["tiny_shakespeare_selection"])


def tiny_shakespeare(data: str, run_dir: Path) -> dict:
    """Train `lstm_text_small` on a local copy of tiny Shakespeare (unless `run_dir` holds
    a finished run), then score its best checkpoint on the validation tenth: every
    character with full context, and nanoGPT's 12,800 random 256-character windows."""
    def command(path: str) -> list[str]:
        return ["rlgen-train", "experiment=lstm_text_small", f"data.path={path}",
                f"hydra.run.dir={run_dir}"]

    if not (run_dir / "metrics.json").exists():
        train = command(data)
        subprocess.run([str(Path(sys.executable).parent / train[0]), *train[1:]], check=True)
    m = json.loads((run_dir / "metrics.json").read_text())
    payload = load_checkpoint(checkpoint_path(run_dir, "best"))
    full = text_tools.evaluate(payload, text_tools.EvalArgs(run=str(run_dir), device="cpu"))
    windows = text_tools.evaluate(payload, text_tools.EvalArgs(run=str(run_dir), device="cpu",
                                                              window=256, windows=12800))
    seed_text = payload["meta"]["seed_text"]
    samples = {}
    for t in TEMPERATURES:
        args = text_tools.GenerateArgs(run=str(run_dir), length=400, temperature=t, seed=0)
        samples[str(t)] = text_tools.generate(payload, args)
    history = m["history"]
    return {"date": date.today().isoformat(), "machine": common.machine(),
            "commit": common.commit(),
            "command": " ".join(command("FILE")), "corpus_sha256": file_digest(Path(data)),
            "train_chars": m["train_chars"], "val_chars": m["val_chars"],
            "planned_epochs": m["planned_epochs"], "plan": m["plan"], "epochs": m["epochs"],
            "train_seconds": m["train_seconds"], "best_epoch": payload["meta"]["epoch"],
            **selection(m),
            "val_loss_windows_256": windows["loss"], "val_bpc_windows_256": windows["bpc"],
            "val_loss_full_context": full["loss"], "val_bpc_full_context": full["bpc"],
            "val_loss_5_min_full_context": at_budget(history, 300),
            "parameters": sum(t.numel() for t in payload["state"]["model"].values()),
            "references": REFERENCES, "seed_text": seed_text, "samples": samples,
            "sample_settings": "rlgen-generate run=RUN_DIR length=400 seed=0 temperature=T",
            "curve": [(round(h["train_seconds"]), round(h["val_loss"], 4)) for h in history]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--summarize", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--tiny", metavar="FILE", help="a copy of tiny Shakespeare (char-rnn's "
                        "input.txt); its SHA-256 is recorded beside the figures")
    parser.add_argument("--run-dir", default="runs/bench_tiny_shakespeare",
                        help="--tiny: where the run goes (a finished run there is scored)")
    parser.add_argument("--key", default="tiny_shakespeare",
                        help="--tiny: the key of text.json the row goes under")
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    path = common.RESULTS / "text.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = common.machine()
    if args.tiny:
        results[args.key] = tiny_shakespeare(args.tiny, Path(args.run_dir))
        row = results[args.key]
        common.table("tiny Shakespeare, validation loss (nats/char)", [
            {"what": "rlgen lstm_text_small, nanoGPT's estimate (256-character windows)",
             "nats/char": row["val_loss_windows_256"]},
            {"what": "rlgen lstm_text_small, full context", "nats/char": row["val_loss_full_context"]},
            {"what": "rlgen lstm_text_small at 5 minutes, full context",
             "nats/char": row["val_loss_5_min_full_context"]},
            *({"what": k, "nats/char": v} for k, v in REFERENCES.items())])
    elif args.summarize:
        rows = summarize(args.summarize)
        # a run summarized again replaces its old row; rows of other runs stay
        fresh = {r["run"] for r in rows}
        results["quality"] = rows + [r for r in results.get("quality", [])
                                     if r["run"] not in fresh]
        common.table("validation loss (nats/char) at wall-time budgets",
                     [{k: v for k, v in r.items() if k != "curve"} for r in results["quality"]])
    else:
        results["throughput"] = throughput(args.seconds)
        common.table(f"training throughput, {args.seconds:.0f} s each", results["throughput"])
    common.write("text", results)


if __name__ == "__main__":
    main()
