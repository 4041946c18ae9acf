"""The book's Tables 12-1 and 12-2 on rlgen's MNIST and Fashion-MNIST convnets (each
trained here): test accuracy, file size and gzip ratio of the ONNX export of its last
epoch at 32, 16 and 8 bits; and ONNX Runtime's inference speed against PyTorch eager on
this CPU, both on the same number of threads, at batch 1 and a large batch, as ratios
measured in alternating rounds. Beyond the book's table, trained runs given with --runs
are exported at each precision and measured by their own figure through ONNX Runtime: a
Snake agent's greedy fruits over 100 games, an ACGAN's judged class accuracy and Frechet
ratio (the bench's MNIST convnet judges), a VAE's test reconstruction, a text model's
held-out loss and its sampling latency both ways. Writes bench/results/export.json.

    python -m bench.export [--experiments mnist_cnn fashion_cnn_strong] [--rounds 5]
        [--threads 1] [--runs snake=RUN_DIR acgan=RUN_DIR vae=RUN_DIR text=RUN_DIR]
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
from nn.checkpoint import load_checkpoint, load_weights
from nn.config import parse_key_values
from nn.export import OnnxNetwork, read_export
from nn.tools.export import ExportArgs, export_run

BOOK = {"mnist_cnn": "MNIST convnet 0.9952 / 0.9952 / 0.9952, gzip ratio 1.08 / 1.04 / 1.18",
        "fashion_cnn_strong": "Fashion-MNIST convnet 0.922 / 0.922 / 0.9211"}


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
    lines = []
    for name, table in results["tables"].items():
        lines += [f"`{name}` on `{table['dataset']}` ({table['test_images']:,} held-out images, "
                  f"{table['epochs']} epochs; the book: {BOOK.get(name, '-')})", "",
                  "| weights | runtime | test accuracy | file bytes | gzip ratio |",
                  "| --- | --- | --- | --- | --- |"]
        for row in table["rows"]:
            size = f"{row['bytes']:,}" if row["bytes"] else "-"
            lines.append(f"| {row['bits']} bits | {row['backend']} | {row['test_accuracy']:.4f} | "
                         f"{size} | {row['gzip_ratio'] or '-'} |")
        lines.append("")
    lines += [f"`{results['speed_of']}`, one call at each batch size:", "",
              "| batch | PyTorch eager ms / call (rounds) | ONNX Runtime ms / call (rounds) | "
              "ratio (medians) |", "| --- | --- | --- | --- |"]
    for batch, row in results["speed"].items():
        lines.append(f"| {batch.removeprefix('batch_')} | {', '.join(map(str, row['torch_ms']))} | "
                     f"{', '.join(map(str, row['onnxruntime_ms']))} | "
                     f"{row['ratio_torch_over_onnxruntime']}x |")
    latency = results.get("text_sampling")
    if latency:
        lines += ["", f"Text sampling, {latency['characters']} characters at temperature 0.8 "
                  f"after {latency['seed_characters']} of seed text:", "",
                  "| PyTorch ms / character (rounds) | ONNX Runtime ms / character (rounds) | "
                  "ratio (medians) |", "| --- | --- | --- |",
                  f"| {', '.join(map(str, latency['torch_ms_per_char']))} | "
                  f"{', '.join(map(str, latency['onnxruntime_ms_per_char']))} | "
                  f"{latency['ratio_torch_over_onnxruntime']}x |"]
    for measured in results.get("beyond_the_book", {}).values():
        rows = measured["rows"]
        heads = " | ".join(f"{r['bits']} bits, {r['backend']}" for r in rows)
        lines += ["", f"| `{measured['run']}` | {heads} |", "| --- |" + " --- |" * len(rows)]
        for figure in (k for k in rows[0] if k not in ("bits", "backend")):
            lines.append(f"| {figure} | " + " | ".join(str(r[figure]) for r in rows) + " |")
    return "\n".join(lines)


def readme_rows(results: dict) -> str:
    """The README's headline table of this bench."""
    command = results["command"]
    lines = ["| figure | value | command | results |", "| --- | --- | --- | --- |"]
    for name, table in results["tables"].items():
        quantized = [r for r in table["rows"] if r["backend"] == "onnxruntime"]
        lines.append(f"| `{name}` exported to ONNX, weights at 32 / 16 / 8 bits: held-out accuracy "
                     f"(the book: {BOOK.get(name, '-')}) | "
                     + " / ".join(f"{r['test_accuracy']:.4f}" for r in quantized)
                     + "; " + " / ".join(f"{r['bytes']:,}" for r in quantized) + " bytes; gzip "
                     + " / ".join(str(r["gzip_ratio"]) for r in quantized) + " | "
                     f"`{command}` | [export.json](bench/results/export.json) |")
    speed = " / ".join(f"{v['ratio_torch_over_onnxruntime']}x" for v in results["speed"].values())
    lines.append(f"| ONNX Runtime against PyTorch eager, one thread each, batch 1 / 1,000 (the "
                 f"book's graph conversion: at least 1.2x) | {speed} | `{command}` | "
                 "[export.json](bench/results/export.json) |")
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


def acgan_scores(run_dir: Path, judge_dir: Path) -> list[dict]:
    """rlgen-eval's own figures for an ACGAN (200 images a class): the judge's class
    accuracy and the Frechet ratio (distance to held-out images over the real-vs-real floor)."""
    from generative import acgan_tools

    def scored(payload: dict, backend: str) -> dict:
        args = parse_key_values(acgan_tools.EvalArgs, [
            f"run={payload.get('export', run_dir)}", f"judge={judge_dir}", "per_class=200",
            "seed=0", "device=cpu", f"backend={backend}"])
        summary = acgan_tools.evaluate(payload, args)
        return {"class_accuracy": summary["class_accuracy"],
                "frechet_ratio": summary["frechet_ratio"]}

    rows = [{"bits": 32, "backend": "torch",
             **scored(load_checkpoint(run_dir / "checkpoints" / "best.pt"), "torch")}]
    for bits, exported in precisions(run_dir, "best"):
        rows.append({"bits": bits, "backend": "onnxruntime", **scored(exported, "onnx")})
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


def text_loss(run_dir: Path, threads: int, rounds: int, characters: int = 3000):
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
        if bits == 32:
            step = OnnxNetwork(exported["export"] / "step.onnx", threads=threads)
    return rows, sampling_latency(model, step, ids[:200], rounds)


def sampling_latency(model, step: OnnxNetwork, seed_ids: list[int], rounds: int,
                     length: int = 500) -> dict:
    """Milliseconds a character when rlgen-generate samples at temperature 0.8: PyTorch's
    own sampler (the whole model, state carried) against the exported step in ONNX
    Runtime, from the same seed text, in alternating rounds."""
    from generative import text_tools

    def per_char(sampler) -> float:
        began = time.perf_counter()
        produced = list(sampler(torch.Generator().manual_seed(0)))
        return (time.perf_counter() - began) / len(produced) * 1e3

    eager, onnx = [], []
    for _ in range(rounds):
        eager.append(per_char(lambda g: text_tools.generate_ids(model, seed_ids, length, 0.8, g, None)))
        onnx.append(per_char(lambda g: text_tools.sample_export(step, seed_ids, length, 0.8, g)))
    return {"characters": length, "seed_characters": len(seed_ids),
            "torch_ms_per_char": [round(v, 4) for v in eager],
            "onnxruntime_ms_per_char": [round(v, 4) for v in onnx],
            "ratio_torch_over_onnxruntime": round(float(np.median(eager) / np.median(onnx)), 3)}


def convnet_table(experiment: str, tmp: Path, threads: int) -> dict:
    """Train the convnet, export its last epoch (no epoch picked on the test split) at 32,
    16 and 8 bits, and score each file on the test split."""
    run_dir = tmp / experiment
    cfg = common.compose(f"experiment={experiment}", "device=cpu")
    classifier.train(cfg, run_dir)
    data = load_images(cfg.data)
    images, labels = classifier.to_model_input(data.test_images), data.test_labels
    payload = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    torch_model = load_weights(classifier.build_model(cfg), payload, "model").eval()
    rows = [{"bits": 32, "backend": "torch", "test_accuracy": round(
        accuracy(torch_model, images, labels), 4), "bytes": None, "gzip_ratio": None}]
    files = {}
    for bits, exported in precisions(run_dir, "last"):
        about = json.loads((exported["export"] / "manifest.json").read_text())["networks"][0]
        files[bits] = OnnxNetwork(exported["export"] / about["file"], threads=threads)
        rows.append({"bits": bits, "backend": "onnxruntime",
                     "test_accuracy": round(accuracy(files[bits], images, labels), 4),
                     "bytes": about["bytes"], "gzip_ratio": about["gzip_ratio"]})
    common.table(f"{experiment} on {data.name} ({len(labels)} held-out images, "
                 f"{payload['meta']['epoch']} epochs); the book: {BOOK.get(experiment, '-')}", rows)
    return {"dataset": data.name, "epochs": payload["meta"]["epoch"], "test_images": len(labels),
            "rows": rows, "torch_model": torch_model, "onnx_32": files[32], "images": images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=["mnist_cnn", "fashion_cnn_strong"],
                        help="convnets for the book's table; the first is also timed")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", nargs="*", default=[], metavar="KIND=RUN_DIR",
                        help="trained runs to measure at each precision: snake, acgan, vae, text")
    parser.add_argument("--markdown", action="store_true",
                        help="print docs/results.md's tables from bench/results/export.json")
    args = parser.parse_args()
    if args.markdown:
        results = json.loads((common.RESULTS / "export.json").read_text())
        print(f"{markdown(results)}\n\nREADME rows:\n\n{readme_rows(results)}")
        return
    torch.set_num_threads(args.threads)
    beyond, latency = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        tables = {name: convnet_table(name, Path(tmp), args.threads) for name in args.experiments}
        timed_one = tables[args.experiments[0]]
        for kind, folder in (spec.split("=", 1) for spec in args.runs):
            folder = Path(folder)
            if kind == "text":
                rows, latency = text_loss(folder, args.threads, args.rounds)
            else:
                rows = (snake_fruits(folder) if kind == "snake" else vae_reconstruction(folder)
                        if kind == "vae" else acgan_scores(folder, Path(tmp) / "mnist_cnn"))
            beyond[kind] = {"run": folder.name, "rows": rows}
            common.table(f"{kind} ({folder.name}) at each precision", rows)
        speed = {}
        for batch_size, calls in ((1, 500), (1000, 10)):
            batch = timed_one["images"][:batch_size]
            eager, onnx = [], []
            for _ in range(args.rounds):  # alternating, so a machine that slows hits both
                eager.append(timed(timed_one["torch_model"], batch, calls))
                onnx.append(timed(timed_one["onnx_32"], batch, calls))
            speed[f"batch_{batch_size}"] = {
                "torch_ms": [round(s * 1e3, 4) for s in eager],
                "onnxruntime_ms": [round(s * 1e3, 4) for s in onnx],
                "ratio_torch_over_onnxruntime": round(float(np.median(eager) / np.median(onnx)),
                                                      3)}
    common.table("inference, PyTorch eager time / ONNX Runtime time (median of rounds)",
                 [{"batch": k, "ratio": v["ratio_torch_over_onnxruntime"]} for k, v in speed.items()])
    if latency:
        common.table("text sampling, ms a character", [{
            k: latency[k] for k in ("characters", "ratio_torch_over_onnxruntime")}])
    common.write("export", {
        "command": "python -m bench.export " + " ".join(sys.argv[1:]), "threads": args.threads,
        "tables": {name: {k: v for k, v in t.items() if k in ("dataset", "epochs", "test_images",
                                                             "rows")}
                   for name, t in tables.items()},
        "speed": speed, "speed_of": args.experiments[0], "text_sampling": latency,
        "beyond_the_book": beyond})


if __name__ == "__main__":
    main()
