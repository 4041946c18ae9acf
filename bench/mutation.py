"""Mutation testing of the core modules with cosmic-ray: how many small wrong edits of the
code (an operator swapped, a constant changed, a condition negated) make its tests fail.

Each target module is mutated in a scratch checkout of a commit and its own tests run
against every mutant of a fixed random sample (the same sample at every commit while the
module's code is the same, so a score before and after new tests compares like with
like). A mutant is killed when a test fails or it runs past the timeout; it survives when
every test passes. Survivors are listed with their line and edit, for a reader to judge
(some are equivalent: they change nothing a test could see). Writes
bench/results/mutation.json, one row per commit and module; rows of other commits
already in the file are kept, each with its own command and date.

    python -m bench.mutation --revs BEFORE HEAD [--sample 40] [--seed 0]
"""

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common

ROOT = Path(__file__).resolve().parent.parent
# module -> the tests that exercise it (fast ones: every mutant runs them)
TARGETS = {
    "rl/replay.py": "tests/test_replay.py",
    "envs/snake_rules.py": "tests/test_snake_env.py -k 'not boards_that_cannot'",
    "envs/cartpole.py": "tests/test_cartpole_env.py",
    "nn/checkpoint.py": "tests/test_nn.py tests/test_faults.py -k 'checkpoint and not disk'",
}


def spec_key(item) -> tuple:
    """A mutant's place and kind, independent of cosmic-ray's random job ids."""
    spec = item.mutations[0]
    return (str(spec.module_path), spec.operator_name, spec.occurrence, tuple(spec.start_pos))


def mutate_one(checkout: Path, module: str, tests: str, sample: int, seed: int,
               timeout: float) -> dict:
    """Sample `sample` mutants of `module` and run `tests` against each in `checkout`."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    config, db = checkout / "cosmic-ray.toml", checkout / "mutants.sqlite"
    db.unlink(missing_ok=True)
    test_command = f"{sys.executable} -m pytest -x -q -p no:cacheprovider {tests}"
    config.write_text(f'[cosmic-ray]\nmodule-path = "{module}"\ntimeout = {timeout}\n'
                      f'excluded-modules = []\ntest-command = "{test_command}"\n'
                      '[cosmic-ray.distributor]\nname = "local"\n')
    cosmic_ray = str(Path(sys.executable).with_name("cosmic-ray"))
    # the checkout's packages ahead of the installed (editable) ones, in every subprocess
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1",
           "SDL_VIDEODRIVER": "dummy"}
    baseline = subprocess.run(shlex.split(test_command), cwd=checkout, env=env, capture_output=True,
                              text=True)
    if baseline.returncode != 0:
        raise SystemExit(f"{tests} fail on the unmutated code: {baseline.stdout[-500:]}")
    subprocess.run([cosmic_ray, "init", str(config), str(db)], cwd=checkout, env=env, check=True)
    with use_db(str(db), WorkDB.Mode.open) as work:
        items = sorted(work.work_items, key=spec_key)
        chosen = {i.job_id for i in random.Random(seed).sample(items, min(sample, len(items)))}
        work.set_multiple_results([i.job_id for i in items if i.job_id not in chosen],
                                  WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    began = time.perf_counter()
    subprocess.run([cosmic_ray, "exec", str(config), str(db)], cwd=checkout, env=env,
                   check=True, capture_output=True)
    seconds = time.perf_counter() - began
    with use_db(str(db), WorkDB.Mode.open) as work:
        by_id = {i.job_id: i for i in work.work_items}
        results = [(by_id[job_id], r) for job_id, r in work.results if job_id in chosen]
    killed = sum(r.test_outcome == TestOutcome.KILLED for _, r in results)
    survivors = [{"line": item.mutations[0].start_pos[0], "operator": item.mutations[0].operator_name,
                  "edit": changed_lines(r.diff)}
                 for item, r in sorted(results, key=lambda p: spec_key(p[0]))
                 if r.test_outcome == TestOutcome.SURVIVED]
    incompetent = sum(r.test_outcome == TestOutcome.INCOMPETENT for _, r in results)
    scored = killed + len(survivors)
    return {"module": module, "tests": tests, "mutants_in_module": len(items),
            "sampled": len(chosen), "killed": killed, "survived": len(survivors),
            "incompetent": incompetent, "score": round(killed / scored, 3) if scored else None,
            "seconds": round(seconds), "survivors": survivors}


def changed_lines(diff: str | None) -> str:
    """The mutant's edit in one line: the removed and the added source line."""
    lines = [line for line in (diff or "").splitlines()
             if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return " => ".join(line[1:].strip() for line in lines)


def checkout_of(rev: str, folder: Path) -> tuple[Path, str]:
    """A detached worktree of `rev` and the commit it names."""
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    path = folder / commit
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(path), commit], cwd=ROOT,
                   check=True)
    return path, commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revs", nargs="+", default=["HEAD"], help="commits to score")
    parser.add_argument("--modules", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--sample", type=int, default=30, help="mutants per module")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant")
    args = parser.parse_args()
    command = "python -m bench.mutation " + " ".join(sys.argv[1:])
    rows, folder = [], Path(tempfile.mkdtemp(prefix="rlgen-mutants-"))
    try:
        for rev in args.revs:
            checkout, commit = checkout_of(rev, folder)
            for module in args.modules:
                scores = mutate_one(checkout, module, TARGETS[module], args.sample, args.seed,
                                    args.timeout)
                row = {"commit": commit, "date": common.date.today().isoformat(),
                       "command": command, "sample_seed": args.seed, **scores}
                rows.append(row)
                print(f"{commit} {module}: {row['killed']} of {row['killed'] + row['survived']}"
                      f" killed ({row['score']}), {row['seconds']}s", flush=True)
            subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT,
                           check=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)
    redone = {(r["commit"], r["module"]) for r in rows}
    path = common.RESULTS / "mutation.json"
    kept = [r for r in (json.loads(path.read_text())["rows"] if path.exists() else [])
            if (r["commit"], r["module"]) not in redone]
    rows = kept + rows
    common.table("mutation score (killed / killed + survived)",
                 [{k: r[k] for k in ("commit", "module", "sampled", "killed", "survived",
                                     "score")} for r in rows])
    common.write("mutation", {"command": command, "tool": "cosmic-ray " + cosmic_ray_version(),
                              "sample_seed": args.seed, "rows": rows})


def cosmic_ray_version() -> str:
    from importlib.metadata import version

    return version("cosmic-ray")


def markdown(results: dict) -> str:
    """docs/results.md's table, from a results file this bench wrote."""
    lines = ["| commit | module | mutants (sampled of all) | killed | survived | score |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['commit']} | `{r['module']}` | {r['sampled']} of {r['mutants_in_module']} "
              f"| {r['killed']} | {r['survived']} | {r['score']} |" for r in results["rows"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
