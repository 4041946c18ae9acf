"""Text benchmarks: training throughput of the book's recipe (`lstm_text`) and rlgen's
(`lstm_text_fast`) in one process, and (with --summarize) the validation-loss curves
of finished runs at fixed wall-time budgets. Writes bench/results/text.json.

    python -m bench.text                            # throughput, about 2 minutes
    python -m bench.text --summarize RUN_DIR ...    # loss at 5 and 20 minutes, curve

The 20-minute quality runs are plain training commands:
    rlgen-train experiment=lstm_text_fast
    rlgen-train experiment=lstm_text algo.max_seconds=1200
"""

import argparse
import json
from pathlib import Path

from bench import common
from generative import lstm_text


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
                     "val_loss_5_min": at_budget(m["history"], 300),
                     "val_loss_5_min_of_steps": at_budget(m["history"], 300, "step_seconds"),
                     "val_loss_20_min": at_budget(m["history"], 1200),
                     "best_val_loss": round(m["best_val_loss"], 4),
                     "best_val_bpc": round(m["best_val_bpc"], 4),
                     "train_seconds": m["train_seconds"], "epochs": m["epochs"],
                     # (wall seconds with evaluation, seconds of training steps, val loss)
                     "curve": [(round(h["train_seconds"]), round(h.get("step_seconds", 0)),
                                round(h["val_loss"], 4)) for h in m["history"]],
                     "run": run})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--summarize", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    path = common.RESULTS / "text.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = common.machine()
    if args.summarize:
        results["quality"] = summarize(args.summarize)
        common.table("validation loss (nats/char) at wall-time budgets",
                     [{k: v for k, v in r.items() if k != "curve"} for r in results["quality"]])
    else:
        results["throughput"] = throughput(args.seconds)
        common.table(f"training throughput, {args.seconds:.0f} s each", results["throughput"])
    common.write("text", results)


if __name__ == "__main__":
    main()
