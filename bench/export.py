"""The book's Tables 12-1 and 12-2 on rlgen's MNIST convnet: test accuracy, file size and
gzip ratio of its ONNX export at 32, 16 and 8 bits; and ONNX Runtime's inference speed
against PyTorch eager on this CPU, both on the same number of threads, at batch 1 and a
large batch, as ratios measured in alternating rounds. Beyond the book's table, trained
runs given with --runs are exported at each precision and measured by their own figure
through ONNX Runtime: a Snake agent's greedy fruits over 100 games, an ACGAN's judged
class accuracy (the bench's convnet judges), a VAE's test reconstruction, a text model's
held-out loss. Writes bench/results/export.json.

    python -m bench.export [--experiment mnist_cnn] [--rounds 5] [--threads 1]
        [--runs snake=RUN_DIR acgan=RUN_DIR vae=RUN_DIR text=RUN_DIR]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench import common
from generative import classifier
from generative.datasets import load_images
from nn.checkpoint import load_checkpoint
from nn.config import parse_key_values
from nn.export import OnnxNetwork, read_export
from nn.tools.export import ExportArgs, export_run

BOOK = {"mnist_cnn": "MNIST convnet: 0.9952 / 0.9952 / 0.9952; gzip 1.08 / 1.04 / 1.18"}


def accuracy(network, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        logits = torch.cat([network(batch) for batch in images.split(500)])
    return float((logits.argmax(1) == labels).float().mean())


def timed(network, batch: torch.Tensor, calls: int) -> float:
    """Seconds per call."""
    with torch.no_grad():
        network(batch)  # warm-up
        began = time.perf_counter()
        for _ in range(calls):
            network(batch)
    return (time.perf_counter() - began) / calls


def markdown(results: dict) -> str:
    """docs/results.md's tables, from a results file this bench wrote."""
    lines = ["| weights | runtime | test accuracy | file bytes | gzip ratio |",
             "| --- | --- | --- | --- | --- |"]
    for row in results["quantization"]:
        size = f"{row['bytes']:,}" if row["bytes"] else "-"
        lines.append(f"| {row['bits']} bits | {row['backend']} | {row['test_accuracy']:.4f} | "
                     f"{size} | {row['gzip_ratio'] or '-'} |")
    lines += ["", "| batch | PyTorch eager ms / call (rounds) | ONNX Runtime ms / call (rounds) | "
              "ratio (medians) |", "| --- | --- | --- | --- |"]
    for batch, row in results["speed"].items():
        lines.append(f"| {batch.removeprefix('batch_')} | {', '.join(map(str, row['torch_ms']))} | "
                     f"{', '.join(map(str, row['onnxruntime_ms']))} | "
                     f"{row['ratio_torch_over_onnxruntime']}x |")
    for measured in results.get("beyond_the_book", {}).values():
        rows = measured["rows"]
        figure = next(k for k in rows[0] if k not in ("bits", "backend"))
        heads = " | ".join(f"{r['bits']} bits, {r['backend']}" for r in rows)
        values = " | ".join(str(r[figure]) for r in rows)
        lines += ["", f"| `{measured['run']}` | {heads} |", "| --- |" + " --- |" * len(rows),
                  f"| {figure} | {values} |"]
    return "\n".join(lines)


def precisions(run_dir: Path, checkpoint: str):
    """The run exported at each precision: (bits, export folder as a payload)."""
    for precision, bits in (("none", 32), ("fp16", 16), ("int8", 8)):
        out = export_run(parse_key_values(ExportArgs, [f"run={run_dir}", f"checkpoint={checkpoint}",
                                                       f"quantize={precision}"]))
        yield bits, read_export(out)


def snake_fruits(run_dir: Path) -> list[dict]:
    from rl import dqn

    checkpoint = "best_eval" if (run_dir / "checkpoints" / "best_eval.pt").is_file() else "best"
    common_args = ["episodes=100", "seed=0", "device=cpu"]
    torch_args = parse_key_values(dqn.EvalArgs, [f"run={run_dir}", f"checkpoint={checkpoint}",
                                                 *common_args])
    rows = [{"bits": 32, "backend": "torch", "mean_fruits": dqn.evaluate(
        load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt"), torch_args)["mean_fruits"]}]
    for bits, payload in precisions(run_dir, checkpoint):
        args = parse_key_values(dqn.EvalArgs, [f"run={payload['export']}", "backend=onnx",
                                               *common_args])
        rows.append({"bits": bits, "backend": "onnxruntime",
                     "mean_fruits": dqn.evaluate(payload, args)["mean_fruits"]})
    return rows


def acgan_accuracy(run_dir: Path, judge_dir: Path) -> list[dict]:
    from generative.acgan_nets import generate_per_class
    from generative.acgan_tools import judge_images, load_generator

    judge = classifier.load_judge(str(judge_dir), torch.device("cpu"))
    payload = load_checkpoint(run_dir / "checkpoints" / "best.pt")

    def judged(gen) -> float:
        with torch.no_grad():
            images, classes = generate_per_class(gen, 100, torch.Generator().manual_seed(0), "cpu")
            return round(judge_images(judge, images, classes)["class_accuracy"], 4)

    rows = [{"bits": 32, "backend": "torch",
             "class_accuracy": judged(load_generator(payload, torch.device("cpu"))[1])}]
    for bits, exported in precisions(run_dir, "best"):
        rows.append({"bits": bits, "backend": "onnxruntime",
                     "class_accuracy": judged(load_generator(exported, "cpu")[1])})
    return rows


def vae_reconstruction(run_dir: Path) -> list[dict]:
    """Test reconstruction, 784 x the mean squared error of decode(mean of encode(x))."""
    from generative import vae

    payload = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    cfg, model = vae.load_model(payload, torch.device("cpu"))
    images = vae.as_float(load_images(cfg.data).test_images)

    def error(encoder, decoder) -> float:
        with torch.no_grad():
            mean, _ = encoder(images)
            return round(float(((decoder(mean) - images) ** 2).sum(1).mean()), 3)

    rows = [{"bits": 32, "backend": "torch",
             "reconstruction": error(vae.Encoder(model), vae.Decoder(model))}]
    for bits, exported in precisions(run_dir, "best"):
        rows.append({"bits": bits, "backend": "onnxruntime", "reconstruction": error(
            OnnxNetwork(exported["export"] / "encoder.onnx"),
            OnnxNetwork(exported["export"] / "decoder.onnx"))})
    return rows


def text_loss(run_dir: Path, characters: int = 3000) -> list[dict]:
    """Held-out loss (nats a character) of the first `characters` of the validation text,
    read one character at a time from a fresh state, as an exported step runs."""
    from generative import text_tools
    from generative.corpus import load_corpus

    payload = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    cfg, chars, model = text_tools.load_model(payload, torch.device("cpu"))
    ids = text_tools.encode(load_corpus(cfg.data).val_text[:characters + 1], chars)

    def loss(step) -> float:
        width = sum(lstm.hidden_size for lstm in model.lstms)
        h = c = torch.zeros(1, width)
        total = 0.0
        with torch.no_grad():
            for token, target in zip(ids[:-1], ids[1:], strict=True):
                logits, h, c = step(torch.tensor([token]), h, c)
                total -= float(torch.log_softmax(logits[0], 0)[target])
        return round(total / (len(ids) - 1), 4)

    rows = [{"bits": 32, "backend": "torch", "held_out_loss": loss(text_tools.Step(model).eval())}]
    for bits, exported in precisions(run_dir, "best"):
        rows.append({"bits": bits, "backend": "onnxruntime",
                     "held_out_loss": loss(OnnxNetwork(exported["export"] / "step.onnx"))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="mnist_cnn")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", nargs="*", default=[], metavar="KIND=RUN_DIR",
                        help="trained runs to measure at each precision: snake, acgan, vae, text")
    parser.add_argument("--markdown", action="store_true",
                        help="print docs/results.md's tables from bench/results/export.json")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads((common.RESULTS / "export.json").read_text())))
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cfg = common.compose(f"experiment={args.experiment}", "device=cpu")
        classifier.train(cfg, run_dir)
        data = load_images(cfg.data)
        images = classifier.to_model_input(data.test_images)
        labels = data.test_labels
        torch_model = classifier.load_judge(str(run_dir), torch.device("cpu"))
        rows = [{"bits": 32, "backend": "torch",
                 "test_accuracy": round(accuracy(torch_model, images, labels), 4),
                 "bytes": None, "gzip_ratio": None}]
        files = {}
        for precision, bits in (("none", 32), ("fp16", 16), ("int8", 8)):
            out = export_run(parse_key_values(ExportArgs, [f"run={run_dir}",
                                                           f"quantize={precision}"]))
            about = json.loads((out / "manifest.json").read_text())["networks"][0]
            files[bits] = OnnxNetwork(out / about["file"], threads=args.threads)
            rows.append({"bits": bits, "backend": "onnxruntime",
                         "test_accuracy": round(accuracy(files[bits], images, labels), 4),
                         "bytes": about["bytes"], "gzip_ratio": about["gzip_ratio"]})
        epochs = load_checkpoint(run_dir / "checkpoints" / "best.pt")["meta"]["epoch"]
        beyond = {}
        for kind, folder in (spec.split("=", 1) for spec in args.runs):
            folder = Path(folder)
            beyond[kind] = {"run": folder.name, "rows": (
                snake_fruits(folder) if kind == "snake" else acgan_accuracy(folder, run_dir)
                if kind == "acgan" else vae_reconstruction(folder) if kind == "vae"
                else text_loss(folder))}
            common.table(f"{kind} ({folder.name}) at each precision", beyond[kind]["rows"])
    speed = {}
    for batch_size, calls in ((1, 500), (1000, 10)):
        batch = images[:batch_size]
        eager, onnx = [], []
        for _ in range(args.rounds):  # alternating, so a machine that slows hits both
            eager.append(timed(torch_model, batch, calls))
            onnx.append(timed(files[32], batch, calls))
        speed[f"batch_{batch_size}"] = {
            "torch_ms": [round(s * 1e3, 4) for s in eager],
            "onnxruntime_ms": [round(s * 1e3, 4) for s in onnx],
            "ratio_torch_over_onnxruntime": round(float(np.median(eager) / np.median(onnx)), 3)}
    common.table(f"{args.experiment} on {cfg.data.name} ({len(labels)} held-out images, "
                 f"{epochs} epochs); the book: {BOOK.get(args.experiment, '-')}", rows)
    common.table("inference, PyTorch eager time / ONNX Runtime time (median of rounds)",
                 [{"batch": k, "ratio": v["ratio_torch_over_onnxruntime"]} for k, v in speed.items()])
    common.write("export", {"command": "python -m bench.export " + " ".join(sys.argv[1:]),
                            "threads": args.threads, "experiment": args.experiment,
                            "dataset": cfg.data.name, "epochs": epochs,
                            "quantization": rows, "speed": speed, "beyond_the_book": beyond})


if __name__ == "__main__":
    main()
