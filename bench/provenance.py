"""Where a results file came from, for the files written before every bench stamped its
commit: each gets the commit that last wrote it, read from git history, and the command
that made it, so that a figure nobody can re-measure here (the GPU files) still says
which code measured it. A file that already names its commit is left alone.

    python -m bench.provenance FILE=COMMAND [FILE=COMMAND ...]
    python -m bench.provenance --check      # exit 1 naming every results file with no commit
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench import common

ROOT = common.RESULTS.parent.parent


def last_commit(path: Path) -> str:
    """The commit that last changed `path`, from git history (short hash)."""
    found = subprocess.run(["git", "log", "-1", "--format=%h", "--", str(path.relative_to(ROOT))],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if not found:
        raise SystemExit(f"bench.provenance: git history has no commit of {path}")
    return found


def stamp(path: Path, command: str) -> bool:
    """Add commit (from git history) and command to one results file; whether it changed."""
    results = json.loads(path.read_text())
    if "commit" in results:
        return False
    results["commit"] = last_commit(path)
    results["commit_source"] = ("git history: the commit that last wrote this file, stamped by "
                                "bench.provenance; its figures were not measured again since")
    results.setdefault("command", command)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return True


def unstamped(results_dir: Path = common.RESULTS) -> list[str]:
    return sorted(p.name for p in results_dir.glob("*.json")
                  if "commit" not in json.loads(p.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="FILE=COMMAND: a results file and its command")
    parser.add_argument("--check", action="store_true", help="name the files with no commit")
    args = parser.parse_args()
    if args.check:
        missing = unstamped()
        print("\n".join(missing) or "every results file names its commit")
        sys.exit(1 if missing else 0)
    for item in args.files:
        file, _, command = item.partition("=")
        path = (ROOT / file).resolve()
        print(f"{file}: {'stamped' if stamp(path, command) else 'already names its commit'}")


if __name__ == "__main__":
    main()
