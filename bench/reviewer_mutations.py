"""The mutation a reviewer tries first, for each recent feature: its key line disabled,
inverted or loosened, applied alone to a scratch checkout of a commit, and the tests
that claim the feature run against it. A mutation is caught when a test fails (the
first failing test is recorded); it survives when they all pass, which needs a line of
explanation in docs/results.md. Unlike bench.mutation's random sample of cosmic-ray's
operators, these are chosen edits, kept here as data so that a later commit repeats
them. Writes bench/results/reviewer_mutations.json.

    python -m bench.reviewer_mutations [--rev HEAD] [--only NAME ...]   (--only keeps
    the other rows of the last results file)
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from bench.mutation import checkout_of

ROOT = Path(__file__).resolve().parent.parent
# name: (feature, file, the text replaced (once), its replacement, the tests that claim it)
MUTATIONS = {
    "quantizer-skipped": (
        "export: 16- and 8-bit weights", "nn/export.py",
        'if precision == "none":\n        return\n    model = onnx.load',
        'if True:\n        return\n    model = onnx.load',
        "tests/test_export.py -k 'stay_within or quantized_export_through'"),
    "float32-tolerance-loosened": (
        "export: the check against PyTorch", "nn/export.py",
        'TOLERANCE = {"none": 1e-5,', 'TOLERANCE = {"none": 1.0,',
        "tests/test_export.py -k just_past"),
    "export-folder-private": (
        "export: a folder a static host can read", "nn/tools/export.py",
        "building.chmod(0o777 & ~umask)", "pass",
        "tests/test_export.py -k other_precisions"),
    "vae-page-downloads-encoder": (
        "pages: no unused download", "nn/tools/web/pages/vae.js",
        'export const UNUSED = ["encoder"];', "export const UNUSED = [];",
        "tests/test_browser.py -k 'every_page and vae'"),
    "snake-page-no-hunger-cap": (
        "pages: Snake's step caps", "nn/tools/web/pages/snake.js",
        "if (!env.done && sinceFruit >= hungry) env.done = true;", "",
        "tests/test_browser.py -k refuse_what"),
    "ci-skips-silently": (
        "tests: no silent skip under CI=true", "tests/conftest.py",
        'if os.environ.get("CI", "").lower() in ("true", "1"):', "if False:",
        "tests/test_faults.py -k 'missing_tool or without_chromium'"),
    "save-every-always": (
        "run: last.pt once per interval", "nn/run.py",
        "if now - self._saved_at.get(name, -math.inf) >= seconds:", "if True:",
        "tests/test_nn.py -k save_every"),
    "env-state-not-restored": (
        "envs: a saved batched env restores its games", "envs/cartpole.py",
        'self.generator.set_state(state["generator"])', "pass",
        "tests/test_contracts.py -k batched_env"),
    "async-env-seeded-apart": (
        "envs: async workers play the sync games", "envs/gymnasium_env.py",
        "return TorchVectorEnv(vector, torch.device(device), seed)",
        'return TorchVectorEnv(vector, torch.device(device), seed + (self.vectorization_mode == "async"))',
        "tests/test_ppo.py -k async"),
    "ppo-entropy-constant-dropped": (
        "PPO: Gaussian log-probabilities and entropies", "rl/ppo.py",
        "(0.5 + LOG_SQRT_2PI + log_std).sum(-1)", "(0.5 + log_std).sum(-1)",
        "tests/test_ppo.py -k log_probabilities"),
    "ppo-clip-inverted": (
        "PPO: the clipped surrogate", "rl/ppo.py",
        "return torch.max(-advantage * ratio, -advantage * ratio.clamp(1 - clip, 1 + clip)).mean()",
        "return torch.min(-advantage * ratio, -advantage * ratio.clamp(1 - clip, 1 + clip)).mean()",
        "tests/test_ppo.py -k clipped_objective"),
    "ppo-truncation-not-bootstrapped": (
        "PPO: a game cut by its step limit bootstraps", "rl/ppo.py",
        "cut = truncated & ~terminated", "cut = truncated & terminated",
        "tests/test_ppo.py -k step_limit"),
    "sac-lr-schedule-pinned": (
        "SAC: lin_ learning rate", "rl/sac.py",
        "lr = lr_at(1.0 - loop.steps / algo.total_steps)", "lr = lr_at(1.0)",
        "tests/test_sac.py -k stopped"),
    "sac-polyak-off": (
        "SAC: Polyak-averaged targets", "rl/sac.py",
        "torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)",
        "pass", "tests/test_sac.py -k polyak"),
    "run-lock-not-taken": (
        "run lock: one writer per run folder", "nn/run_lock.py",
        "        lock.acquire()\n", "",
        "tests/test_run_lock.py -k 'two_trainings or resume_of_a_running'"),
    "warm-run-drops-its-command-line": (
        "search: runs forked from a warm process", "nn/tools/warm_runs.py",
        "sys.argv = [command, *args]", "sys.argv = [command, *args[1:]]",
        "tests/test_search_workers.py -k forked"),
    "warm-run-outlives-its-worker": (
        "search: a killed worker leaves no run training", "nn/tools/warm_runs.py",
        'threading.Thread(target=watch, name="stop-with-requester", daemon=True).start()',
        "pass", "tests/test_search_workers.py -k stops_when"),
}


def run_one(checkout: Path, name: str, timeout: float) -> dict:
    feature, file, find, replace, tests = MUTATIONS[name]
    path = checkout / file
    original = path.read_text()
    if original.count(find) != 1:
        raise SystemExit(f"{name}: {file} holds {original.count(find)} copies of the text to "
                         "mutate (must be 1): update MUTATIONS")
    path.write_text(original.replace(find, replace))
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1",
           "SDL_VIDEODRIVER": "dummy"}
    command = f"{sys.executable} -m pytest -x -q -p no:cacheprovider -n 0 -rf {tests}"
    began = time.perf_counter()
    try:
        done = subprocess.run(command, shell=True, cwd=checkout, env=env, capture_output=True,
                              text=True, timeout=timeout)
        failed = [line.split()[1] for line in done.stdout.splitlines()
                  if line.startswith("FAILED ")]
        outcome = "caught" if done.returncode == 1 else (
            "survived" if done.returncode == 0 else f"pytest exit {done.returncode}")
    except subprocess.TimeoutExpired:
        failed, outcome = [], "caught (timed out)"
    finally:
        path.write_text(original)
    return {"name": name, "feature": feature, "file": file, "find": find, "replace": replace,
            "tests": tests, "outcome": outcome, "caught_by": failed[:1],
            "seconds": round(time.perf_counter() - began, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--only", nargs="+", choices=list(MUTATIONS), default=list(MUTATIONS))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutation")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rlgen-reviewer-"))
    rows = []
    try:
        checkout, commit = checkout_of(args.rev, folder)
        web = ROOT / "nn/tools/web/node_modules"  # npm's, not in git: the page tests need it
        if web.exists():
            (checkout / "nn/tools/web/node_modules").symlink_to(web)
        for name in args.only:
            row = {"commit": commit, **run_one(checkout, name, args.timeout)}
            rows.append(row)
            print(f"{name}: {row['outcome']} {' '.join(row['caught_by'])} ({row['seconds']}s)",
                  flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder / rows[0]["commit"])]
                       if rows else ["true"], cwd=ROOT, check=False)
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)
    # a mutation run alone (--only) replaces its own row; the others keep theirs, each
    # with the commit it was tried on
    done = {row["name"] for row in rows}
    kept = [row for row in common.read("reviewer_mutations").get("rows", [])
            if row["name"] not in done and row["name"] in MUTATIONS]
    order = list(MUTATIONS)
    common.write("reviewer_mutations",
                 {"rows": sorted(kept + rows, key=lambda row: order.index(row["name"]))})


def markdown(results: dict) -> str:
    """docs/results.md's table, from a results file this bench wrote."""
    lines = ["| feature | file | mutation | outcome | first test that failed |",
             "| --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        first = (r["replace"].splitlines() or ["(removed)"])[0]
        edit = f"`{r['find'].splitlines()[0]}` -> `{first}`"
        caught = ", ".join(f"`{t.split('::')[-1]}`" for t in r["caught_by"]) or "-"
        lines.append(f"| {r['feature']} | `{r['file']}` | {edit} | {r['outcome']} "
                     f"({r['commit']}) | {caught} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
