"""The tables of the README and docs/results.md that are written from results files, by
code: each sits between `<!-- results:NAME -->` and `<!-- /results:NAME -->`, and NAME
says which bench's function writes it from which file. `python -m bench.docs_tables`
rewrites them all; `--check` changes nothing and exits 1 naming every table that differs
from its file (tests/test_docs_tables.py runs it).

    python -m bench.docs_tables [--check]
"""

import argparse
import json
import re
import sys
from pathlib import Path

from bench import (
    cartpole_v1_misses,
    common,
    dqn_profile,
    dqn_sb3,
    export,
    headlines,
    mutation,
    nanogpt,
    ngram,
    search_pruning,
    snake,
    web,
)

ROOT = Path(__file__).resolve().parents[1]
# NAME: (document, results file (or files: the function gets them by name), the function
# that writes the table from it)
TABLES = {
    "headlines": ("README.md", ("same_figures.json", "snake.json", "zoo.json", "nanogpt.json",
                                "generative.json"), headlines.readme_rows),
    "export": ("docs/results.md", "export.json", export.markdown),
    "export-readme": ("README.md", "export.json", export.readme_rows),
    "web": ("docs/results.md", "web.json", web.markdown),
    "nanogpt": ("docs/results.md", "nanogpt.json", nanogpt.markdown),
    "ngram": ("docs/results.md", "ngram.json", ngram.markdown),
    "mutation": ("docs/results.md", "mutation.json", mutation.markdown),
    "dqn-sb3": ("docs/results.md", "dqn_sb3.json", dqn_sb3.markdown),
    "dqn-profile": ("docs/results.md", "dqn_profile.json", dqn_profile.markdown),
    "search-pruning": ("docs/results.md", "search_pruning.json", search_pruning.markdown),
    "cartpole-v1-misses": ("docs/results.md", "cartpole_v1_misses.json",
                           cartpole_v1_misses.markdown),
    "snake-seeds": ("docs/results.md", "snake.json", snake.markdown),
}


def block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- results:{re.escape(name)} -->\n)(.*?)(<!-- /results:{re.escape(name)} -->)",
                      re.S)


def generated(name: str, results_dir: Path = common.RESULTS) -> str:
    _, file, write = TABLES[name]

    def read(file_name: str) -> dict:
        return json.loads((results_dir / file_name).read_text())

    results = {each: read(each) for each in file} if isinstance(file, tuple) else read(file)
    return write(results).strip() + "\n"


def stale(root: Path = ROOT, results_dir: Path = common.RESULTS) -> list[str]:
    """The tables whose text differs from what their results file gives (or are missing)."""
    found = []
    for name, (document, _, _) in TABLES.items():
        match = block(name).search((root / document).read_text())
        if match is None or match.group(2) != generated(name, results_dir):
            found.append(f"{document}: the table results:{name} "
                         f"{'is missing' if match is None else 'differs from bench/results'}")
    return found


def rewrite(root: Path = ROOT) -> None:
    for name, (document, _, _) in TABLES.items():
        path = root / document
        table = generated(name)
        text, count = block(name).subn(lambda m, table=table: m.group(1) + table + m.group(3),
                                       path.read_text())
        if count != 1:
            raise SystemExit(f"bench.docs_tables: {document} needs one <!-- results:{name} --> "
                             f"... <!-- /results:{name} --> block (found {count})")
        path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale tables, change nothing")
    if parser.parse_args().check:
        found = stale()
        print("\n".join(found) or "every generated table matches its results file")
        sys.exit(1 if found else 0)
    rewrite()


if __name__ == "__main__":
    main()
