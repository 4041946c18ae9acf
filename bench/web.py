"""The book's demos in the browser, measured: for each trained run given, its page
(rlgen-export web=true) at 32 and 8 bits: download size (every file, and gzipped as a
static host would send it), and the time from navigation to the page's first inference in
headless chromium with the cache off (rounds); then speed in the browser against ONNX
Runtime in Python on this machine, one thread each, in one run: Snake agent moves a
second, text characters a second, ACGAN images a second, as ratios. A screenshot of each
page at 32 bits goes to bench/results/web_<kind>.png. Writes bench/results/web.json.

    python -m bench.web --runs cartpole=RUN snake=RUN text=RUN vae=RUN acgan=RUN
        classifier=RUN [--rounds 3]
"""

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench import common
from bench.browser import chromium, open_page, page_call
from nn.config import parse_key_values
from nn.export import OnnxNetwork
from nn.tools.export import ExportArgs, export_run

PRECISIONS = (("none", 32), ("int8", 8))


def export_site(run_dir: Path, precision: str, out: Path) -> Path:
    checkpoint = "best_eval" if (run_dir / "checkpoints" / "best_eval.pt").is_file() else "best"
    return export_run(parse_key_values(ExportArgs, [
        f"run={run_dir}", f"checkpoint={checkpoint}", f"quantize={precision}", "web=true",
        f"out={out}"]))


def download_size(site: Path) -> dict:
    files = [f for f in site.rglob("*") if f.is_file()]
    models = [f for f in files if f.suffix == ".onnx"]
    return {"bytes": sum(f.stat().st_size for f in files),
            "gzip_bytes": sum(len(gzip.compress(f.read_bytes(), 9)) for f in files),
            "model_bytes": sum(f.stat().st_size for f in models)}


def first_inference_ms(driver, site: Path, rounds: int) -> list[float]:
    """Navigation to the first model call's answer, each round a fresh load without cache."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    times = []
    for _ in range(rounds):
        server = open_page(driver, site)
        if server.error or not server.started:
            raise SystemExit(f"bench.web: the page of {site} failed: {server.error}")
        times.append(round(driver.execute_script("return window.rlgen.firstInferenceMs"), 1))
        server.shutdown()
    return times


def snake_speed(driver, site: Path, moves: int) -> dict:
    """Greedy moves a second: observation, Q-network, move, a new game at each end."""
    page_call(driver, "document.getElementById('pause').click()")
    browser_ms = page_call(driver, """(async () => {
        const env = page.env, began = performance.now();
        for (let i = 0; i < args[0]; i++) {
            if (env.done) env.reset();
            const q = await page.qValues();
            env.step(q.indexOf(Math.max(...q)));
        }
        return performance.now() - began; })()""", moves)
    from envs.snake import SnakeEnv

    manifest = json.loads((site / "manifest.json").read_text())
    env = SnakeEnv(**{k: v for k, v in manifest["env"].items() if k != "_target_"})
    q_network = OnnxNetwork(site / "q_network.onnx", threads=1).session
    obs, _ = env.reset(seed=0)
    began = time.perf_counter()
    for _ in range(moves):
        q = q_network.run(None, {"x": obs[None]})[0][0]
        obs, _, terminated, truncated, _ = env.step(int(q.argmax()))
        if terminated or truncated:
            obs, _ = env.reset()
    python_s = time.perf_counter() - began
    return {"what": "Snake agent moves / s", "browser": round(moves / browser_ms * 1e3, 1),
            "python": round(moves / python_s, 1)}


def text_speed(driver, site: Path, characters: int) -> dict:
    from generative.text_tools import sample_export

    manifest = json.loads((site / "manifest.json").read_text())
    seed = manifest["seed_text"]
    browser_ms = page_call(driver, """(async () => {
        const began = performance.now();
        await page.generate(args[0], args[1], 0.8);
        return performance.now() - began; })()""", seed, characters)
    ids = [manifest["vocabulary"].index(ch) for ch in seed]
    step = OnnxNetwork(site / "step.onnx", threads=1)
    began = time.perf_counter()
    list(sample_export(step, ids, characters, 0.8, torch.Generator().manual_seed(0)))
    python_s = time.perf_counter() - began
    return {"what": f"text characters / s (after a {len(seed)}-character seed)",
            "browser": round(characters / browser_ms * 1e3, 1),
            "python": round(characters / python_s, 1)}


def acgan_speed(driver, site: Path, calls: int, batch: int = 16) -> dict:
    manifest = json.loads((site / "manifest.json").read_text())
    z = np.random.default_rng(0).uniform(-1, 1, (batch, manifest["latent_size"]))
    z = z.astype(np.float32)
    browser_ms = page_call(driver, """(async () => {
        const began = performance.now();
        for (let i = 0; i < args[1]; i++) await page.images("generator", args[0], i % 10);
        return performance.now() - began; })()""", z.flatten().tolist(), calls)
    generator = OnnxNetwork(site / "generator.onnx", threads=1).session
    began = time.perf_counter()
    for i in range(calls):
        generator.run(None, {"z": z, "classes": np.full(batch, i % 10, dtype=np.int64)})
    python_s = time.perf_counter() - began
    return {"what": f"ACGAN images / s (batches of {batch})",
            "browser": round(calls * batch / browser_ms * 1e3, 1),
            "python": round(calls * batch / python_s, 1)}


def screenshot(driver, kind: str, site: Path) -> str:
    """The page with its trained model at work, as a reader would first see it."""
    server = open_page(driver, site)
    if kind == "classifier":  # a held-out image drawn on the pad
        from omegaconf import OmegaConf

        from generative.datasets import load_images

        manifest = json.loads((site / "manifest.json").read_text())
        data = load_images(OmegaConf.create(manifest["config"]["data"]))
        page_call(driver, "page.show(args[0])", data.test_images[0].flatten().tolist())
    elif kind == "text":
        page_call(driver, "(async () => { document.getElementById('generate').click(); "
                          "await new Promise((r) => setTimeout(r, 3000)); })()")
    elif kind == "vae":
        page_call(driver, "page.showPoint(1.0, -0.5)")
    else:
        time.sleep(3)  # the games play a while
    name = f"web_{kind}.png"
    driver.save_screenshot(str(common.RESULTS / name))
    server.shutdown()
    return name


def markdown(results: dict) -> str:
    """docs/results.md's tables, from a results file this bench wrote."""
    lines = ["| page (run) | weights | download, bytes | gzipped | of which models | "
             "navigation to first inference, ms (rounds) |", "| --- | --- | --- | --- | --- | --- |"]
    for kind, page in results["pages"].items():
        for row in page["rows"]:
            lines.append(f"| {kind} (`{page['run']}`) | {row['bits']} bits | {row['bytes']:,} | "
                         f"{row['gzip_bytes']:,} | {row['model_bytes']:,} | "
                         f"{', '.join(map(str, row['first_inference_ms']))} |")
    lines += ["", "| what | in the browser | ONNX Runtime in Python | browser / Python |",
              "| --- | --- | --- | --- |"]
    for row in results["speed"]:
        lines.append(f"| {row['what']} | {row['browser']} | {row['python']} | "
                     f"{row['ratio_browser_over_python']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", metavar="KIND=RUN_DIR",
                        help="cartpole, snake, text, vae, acgan, classifier")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--markdown", action="store_true",
                        help="print docs/results.md's tables from bench/results/web.json")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads((common.RESULTS / "web.json").read_text())))
        return
    if not args.runs:
        parser.error("give --runs KIND=RUN_DIR ...")
    runs = dict(spec.split("=", 1) for spec in args.runs)
    driver = chromium()
    pages, speed, shots = {}, [], {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for kind, run_dir in runs.items():
                rows = []
                for precision, bits in PRECISIONS:
                    site = export_site(Path(run_dir), precision, Path(tmp) / f"{kind}-{precision}")
                    rows.append({"bits": bits, **download_size(site),
                                 "first_inference_ms": first_inference_ms(driver, site,
                                                                          args.rounds)})
                    if bits != 32:
                        continue
                    shots[kind] = screenshot(driver, kind, site)
                    measure = {"snake": lambda s: snake_speed(driver, s, 500),
                               "text": lambda s: text_speed(driver, s, 500),
                               "acgan": lambda s: acgan_speed(driver, s, 30)}.get(kind)
                    if measure:
                        server = open_page(driver, site)
                        row = measure(site)
                        server.shutdown()
                        row["ratio_browser_over_python"] = round(row["browser"] / row["python"], 3)
                        speed.append({"kind": kind, **row})
                pages[kind] = {"run": Path(run_dir).name, "rows": rows}
                common.table(f"{kind} ({Path(run_dir).name}): page size and first inference",
                             rows)
    finally:
        driver.quit()
    common.table("in the browser against ONNX Runtime in Python, one thread each", speed)
    browser_version = driver.capabilities.get("browserVersion")
    common.write("web", {"command": "python -m bench.web " + " ".join(sys.argv[1:]),
                         "browser": f"chromium {browser_version} headless",
                         "pages": pages, "speed": speed, "screenshots": shots})


if __name__ == "__main__":
    main()
