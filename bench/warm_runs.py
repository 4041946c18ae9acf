"""How long a search's short run takes, start to exit: `rlgen-train` as a new interpreter
(how a search started its runs before) against the same command forked from the warm
process (nn/tools/warm_runs.py, how it starts them now), rounds alternating, in one
command. Writes bench/results/warm_runs.json.

    python -m bench.warm_runs [--rounds 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common

# a search trial of the cart-pole preset that learns for under a second
RUN = ["hparams_search=cartpole_reinforce_fast", "algo.iterations=3",
       "algo.games_per_iteration=8", "threads=1"]


def cold(run_dir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("rlgen-train")), *RUN,
                    f"hydra.run.dir={run_dir}"], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - started


def warm(run_dir: Path) -> float:
    from nn.tools.warm_runs import start_run

    started = time.perf_counter()
    run = start_run([*RUN, f"hydra.run.dir={run_dir}"], run_dir.with_suffix(".err"))
    run.join()
    if run.exitcode != 0:
        raise SystemExit(run_dir.with_suffix(".err").read_text())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from nn.tools.warm_runs import warm_up

    started = time.perf_counter()
    warm_up()
    server_ready = time.perf_counter()
    warm(Path(tempfile.mkdtemp()) / "first")  # waits for the server's imports
    first = time.perf_counter() - server_ready
    seconds = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            seconds["cold"].append(round(cold(Path(tmp) / f"cold{i}"), 2))
            seconds["warm"].append(round(warm(Path(tmp) / f"warm{i}"), 2))
    medians = {k: statistics.median(v) for k, v in seconds.items()}
    results = {"run": " ".join(RUN), "rounds": args.rounds, "run_seconds": seconds,
               "median_seconds": medians, "first_warm_run_seconds": round(first, 2),
               "cold_over_warm": round(medians["cold"] / medians["warm"], 2),
               **common.stamp(time.perf_counter() - started)}
    print(markdown(results))
    common.write("warm_runs", results)


def markdown(results: dict) -> str:
    """docs/results.md's table, from a results file this bench wrote."""
    s = results["run_seconds"]
    return "\n".join([
        "| start | seconds per run, every round | median | cold / warm |",
        "| --- | --- | --- | --- |",
        f"| `rlgen-train`, a new interpreter | {', '.join(map(str, s['cold']))} | "
        f"{results['median_seconds']['cold']} | |",
        f"| forked from the warm process | {', '.join(map(str, s['warm']))} | "
        f"{results['median_seconds']['warm']} | {results['cold_over_warm']}x |",
        "",
        f"The first forked run waited {results['first_warm_run_seconds']} s for the server's "
        f"imports (once per search worker). {results['run']}; {results['machine']}, "
        f"{results['date']}, commit {results['commit']}: `{results['command']}`."])


if __name__ == "__main__":
    main()
