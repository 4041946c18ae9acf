"""A search with pruning against the same search without it: the cartpole_reinforce_fast
preset (its space, its budget of 20 trials, its objective, the area under the learning
curve), two worker processes of one trial each sharing the study's journal file, the
median pruner against none. Each round uses one TPE seed for both searches; the best
trial of each is re-run on the preset's fresh seeds, so a pruned search that saves time
by stopping a future winner would show it. Writes bench/results/search_pruning.json.

    python -m bench.search_pruning [--rounds 2] [--trials 20]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common

PRESET = "hparams_search=cartpole_reinforce_fast"


def one_search(where: Path, pruner: str, sampler_seed: int, trials: int) -> dict:
    args = [PRESET, "search.workers=2", "search.jobs=1", f"search.pruner={pruner}",
            f"search.sampler_seed={sampler_seed}", f"search.trials={trials}",
            f"search.dir={where}"]
    beside = Path(sys.executable).with_name("rlgen-search")
    began = time.perf_counter()
    subprocess.run([str(beside), *args], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    summary = json.loads((where / "search.json").read_text())
    return {"pruner": pruner, "sampler_seed": sampler_seed, "command": "rlgen-search " +
            " ".join(a for a in args if not a.startswith("search.dir=")),
            "wall_seconds": round(seconds, 1), "trials": len(summary["trials"]),
            "complete": summary["complete"], "pruned": summary["pruned"],
            "failed": summary["failed"], "best_value": summary["best"]["value"],
            "best_params": summary["best"]["params"],
            "best_rerun_mean": summary["best_rerun"]["mean"],
            "best_rerun_per_seed": summary["best_rerun"]["per_seed"],
            "default_rerun_mean": summary["default_rerun"]["mean"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="TPE seeds 0, 1, ...")
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rlgen-search-bench-"))
    rows = []
    try:
        for round_ in range(args.rounds):
            for pruner in ("median", "none"):
                row = one_search(folder / f"{pruner}_{round_}", pruner, round_, args.trials)
                rows.append({"round": round_, **row})
                print(f"round {round_}, pruner {pruner}: {row['wall_seconds']}s, "
                      f"{row['pruned']} pruned, best {row['best_value']:.1f}, re-run "
                      f"{row['best_rerun_mean']:.1f}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    common.table("search with and without pruning (cartpole_reinforce_fast, 2 workers)",
                 [{k: r[k] for k in ("round", "pruner", "wall_seconds", "complete", "pruned",
                                     "best_value", "best_rerun_mean")} for r in rows])
    common.write("search_pruning", {"command": "python -m bench.search_pruning "
                                    + " ".join(sys.argv[1:]), "rows": rows})


def markdown(results: dict) -> str:
    """docs/results.md's table, from a results file this bench wrote."""
    lines = ["| round (TPE seed) | pruner | wall time | trials complete / pruned | best trial "
             "| best re-run on 3 fresh seeds |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['round']} | {r['pruner']} | {r['wall_seconds']:.0f} s | {r['complete']} / "
              f"{r['pruned']} | {r['best_value']:.1f} | {r['best_rerun_mean']:.1f} |"
              for r in results["rows"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
