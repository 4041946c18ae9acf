"""Showing the work, measured: learning-curve plots, the Optuna search on
cartpole_reinforce_fast (20 trials within 5 minutes on a 2-core CPU), agent videos (mp4
and in TensorBoard, photographed in headless Chromium), and which TensorBoard tab each
trainer fills. Writes bench/results/show.json and the PNGs beside it.

    python -m bench.show                       # everything, about 15 minutes on 2 cores
    python -m bench.show --only search curves  # some parts
    python -m bench.show --snake-runs runs/bench_snake   # also plot these Snake runs

Every run goes through the console scripts a user types, into runs/bench_show/.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench import common

OUT = Path("runs/bench_show")
BIN = Path(sys.executable).parent
PARTS = ("search", "search_two_seeds", "curves", "videos", "mp4", "tabs", "plots")


def cli(command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
    done = subprocess.run([str(BIN / command), *args], capture_output=True, text=True, env=env)
    if check and done.returncode != 0:
        raise SystemExit(f"{command} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def search(name: str = "search", *extra: str) -> dict:
    """The preset as a user runs it; wall time of the whole command, re-runs included."""
    where = fresh(OUT / name)
    began = time.perf_counter()
    done = cli("rlgen-search", "hparams_search=cartpole_reinforce_fast", *extra,
               f"search.dir={where}")
    seconds = time.perf_counter() - began
    print(done.stdout)
    summary = json.loads((where / "search.json").read_text())
    shutil.copy(where / "search.png", common.RESULTS / f"{name}_cartpole_reinforce_fast.png")
    return {"search_command": " ".join(["rlgen-search hparams_search=cartpole_reinforce_fast", *extra]),
            "wall_seconds": round(seconds, 1), "within_5_minutes": seconds <= 300,
            "trials": len(summary["trials"]), "failed": summary["failed"],
            "metric": summary["metric"], "direction": summary["direction"],
            "best": summary["best"], "best_rerun": summary.get("best_rerun"),
            "default_rerun": summary.get("default_rerun"),
            "values": [t["value"] for t in summary["trials"]]}


def search_two_seeds() -> dict:
    """The same search with each trial judged on the mean of two seeds."""
    return search("search_two_seeds", "search.trial_seeds=[0,1]")


def curves() -> dict:
    """The book's REINFORCE against rlgen's, three seeds each, through a Hydra sweep."""
    where = fresh(OUT / "curves")
    began = time.perf_counter()
    cli("rlgen-train", "-m", "experiment=cartpole_reinforce,cartpole_reinforce_fast",
        "seed=0,1,2", "threads=1", f"hydra.sweep.dir={where}")
    return {"sweep_seconds": round(time.perf_counter() - began, 1)}


def plots(snake_runs: str | None) -> dict:
    """Every curve PNG (and SVG) from the run dirs the other parts left."""
    wanted = {
        "curves_cartpole_steps": [str(OUT / "curves"), "mixed=true",
                                  "title=REINFORCE on cart-pole: the book's recipe and rlgen's, "
                                  "3 seeds"],
        "curves_cartpole_time": [str(OUT / "curves"), "mixed=true", "x=time",
                                 "title=REINFORCE on cart-pole: the book's recipe and rlgen's, "
                                 "3 seeds"],
        "search_curves": [str(OUT / "search"),
                          "title=cartpole_reinforce_fast: 20 search trials (seed 0), best and "
                          "default re-run on seeds 100-102"],
    }
    if snake_runs:
        wanted["curves_snake"] = [snake_runs, "mixed=true", "metric=eval/mean_fruits", "x=time",
                                  "title=Snake: greedy fruits a game over training"]
    made = {}
    for name, args in wanted.items():
        if Path(args[0]).is_dir():
            out = common.RESULTS / f"{name}.png"
            made[name] = cli("rlgen-plot", *args, f"out={out}").stdout.strip()
    return made


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def screenshot_tensorboard(logdir: Path, out: Path, page: str = "images") -> None:
    """TensorBoard on 127.0.0.1 and Debian's Chromium, headless, photographing one tab."""
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("the TensorBoard picture needs Debian's chromium (apt install chromium)")
    port = free_port()
    server = subprocess.Popen([str(BIN / "tensorboard"), "--logdir", str(logdir), "--host",
                               "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(60):  # until it answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        time.sleep(3)  # its first scan of the event files
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--window-size=1280,1000",
                        "--virtual-time-budget=20000", f"--screenshot={out}",
                        f"http://127.0.0.1:{port}/#{page}"],
                       capture_output=True, check=True, timeout=120)
    finally:
        server.terminate()
        server.wait()


def videos() -> dict:
    """Greedy games in TensorBoard while training (cart-pole and Snake), a game as mp4."""
    where = fresh(OUT / "videos")
    cli("rlgen-train", "experiment=cartpole_reinforce_fast", "algo.video_every=10",
        f"hydra.run.dir={where / 'cartpole_reinforce_fast'}")
    cli("rlgen-train", "experiment=snake_dqn_fast", "algo.max_frames=60000",
        "algo.video_every_frames=20000", f"hydra.run.dir={where / 'snake_dqn_fast'}")
    screenshot_tensorboard(where, common.RESULTS / "tensorboard_game_videos.png")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = {run: [i.step for i in EventAccumulator(str(where / run)).Reload().Images("game")]
              for run in ("cartpole_reinforce_fast", "snake_dqn_fast")}
    return {"tensorboard_video_steps": logged}


def mp4() -> dict:
    """Two games of the trained cart-pole agent (the videos part's run) as an mp4."""
    import imageio_ffmpeg

    out = OUT / "videos" / "cartpole_games.mp4"
    watched = cli("rlgen-watch", f"run={OUT / 'videos' / 'cartpole_reinforce_fast'}",
                  f"record={out}", "games=2", "max_steps=500").stdout.strip()
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(out))
    return {"watch": watched, "mp4_frames": frames, "mp4_seconds": seconds,
            "mp4_bytes": out.stat().st_size}


TAB_RUNS = {  # the smallest run of each trainer with every option that adds a tab
    "rl.reinforce": ["experiment=cartpole_reinforce", "algo.iterations=2", "algo.video_every=1"],
    "rl.dqn": ["experiment=snake_dqn", "algo.max_frames=400", "algo.replay_warmup=100",
               "algo.eval_every_frames=200", "algo.eval_games=2", "algo.eval_max_steps=30",
               "algo.video_every_frames=200"],
    "generative.lstm_text": ["experiment=lstm_text", "algo.epochs=1",
                             "algo.examples_per_epoch=64", "algo.val_positions=64",
                             "algo.display_length=20"],
    "generative.vae": ["experiment=vae_mnist5k", "algo.epochs=1"],
    "generative.classifier": ["experiment=mnist_cnn", "algo.epochs=1"],
    "generative.acgan": ["experiment=acgan_mnist5k", "algo.epochs=1", "algo.epoch_images=256"],
}


def tabs() -> dict:
    """Which TensorBoard tab holds what, read back from a real tiny run of each trainer."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        judge = Path(tmp) / "judge"
        for trainer, overrides in TAB_RUNS.items():
            run = Path(tmp) / trainer
            extra = [f"algo.judge={judge}", "algo.judge_per_class=20"] \
                if trainer == "generative.acgan" else []
            cli("rlgen-train", *overrides, *extra, f"hydra.run.dir={run}")
            if trainer == "generative.classifier":
                shutil.copytree(run, judge)
            events = EventAccumulator(str(run)).Reload()
            tags = events.Tags()
            found[trainer] = {"overrides": overrides + extra,
                              "scalars": sorted(tags["scalars"]), "images": sorted(tags["images"]),
                              "text": sorted(t.removesuffix("/text_summary")
                                             for t in tags["tensors"] if t.endswith("text_summary")),
                              "hparams": bool(events.PluginTagToContent("hparams"))}
    return found


def markdown(results: dict) -> str:
    """docs/results.md's table of the searches and the other parts, from show.json."""
    def scores(rerun: dict) -> str:
        each = ", ".join(f"{v:.1f}" for v in rerun["per_seed"].values())
        return f"{each} (mean {rerun['mean']:.1f})"

    lines = ["| part | what ran | figures | seconds | commit, date |", "| --- | --- | --- | --- | --- |"]
    for part in ("search", "search_two_seeds"):
        if part not in results:
            continue
        r = results[part]
        params = r["best"]["params"]
        best = (f"trial {r['best']['number']}: lr {params['algo.lr']:.3g}, gamma "
                f"{params['algo.gamma']:.3f}, width {params['model.hidden_sizes']}")
        lines.append(
            f"| {part} | `{r['search_command']}` | {r['trials']} trials ({r['failed']} failed); "
            f"best {best}, {r['best']['value']:.1f} on its own seeds; fresh seeds "
            f"{', '.join(r['best_rerun']['per_seed'])}: best {scores(r['best_rerun'])}, the "
            f"experiment's own settings {scores(r['default_rerun'])} | {r['wall_seconds']} "
            f"(within 300: {'yes' if r['within_5_minutes'] else 'no'}) | {r['commit']}, {r['date']} |")
    if "curves" in results:
        r = results["curves"]
        lines.append(f"| curves | the two REINFORCE recipes, seeds 0-2, one Hydra sweep | "
                     f"6 runs | {r['sweep_seconds']} | {r['commit']}, {r['date']} |")
    if "videos" in results:
        r = results["videos"]
        steps = "; ".join(f"{run}: {', '.join(map(str, at))}"
                          for run, at in r["tensorboard_video_steps"].items())
        lines.append(f"| videos | greedy games logged to TensorBoard while training | at {steps} "
                     f"| {r['seconds']} | {r['commit']}, {r['date']} |")
    if "mp4" in results:
        r = results["mp4"]
        lines.append(f"| mp4 | `rlgen-watch ... record=cartpole_games.mp4 games=2` | "
                     f"{r['mp4_frames']} frames, {r['mp4_seconds']} s, {r['mp4_bytes']:,} bytes | "
                     f"{r['seconds']} | {r['commit']}, {r['date']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--snake-runs", help="a folder of Snake runs to plot as well")
    args = parser.parse_args()
    path = common.RESULTS / "show.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results["started"] = datetime.now().isoformat(timespec="seconds")
    common.RESULTS.mkdir(exist_ok=True)
    for part in args.only:
        print(f"\n# {part}", flush=True)
        began = time.perf_counter()
        measured = plots(args.snake_runs) if part == "plots" else globals()[part]()
        results[part] = {**measured, **common.stamp(time.perf_counter() - began)}
        common.write("show", {k: v for k, v in results.items() if k not in ("date", "machine")})


if __name__ == "__main__":
    main()
