"""The tables of the README and docs/results.md that are written from results files, by
code: each sits between `<!-- results:NAME -->` and `<!-- /results:NAME -->`, and NAME
says which bench's function writes it from which file. `python -m bench.docs_tables`
rewrites them all; `--check` changes nothing and exits 1 naming every table that differs
from its file, and every figure of a hand-written row that is in none of the results
files the row links (tests/test_docs_tables.py runs it).

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
    dqn_speed,
    export,
    headlines,
    mutation,
    nanogpt,
    ngram,
    ppo_sac_sb3,
    reviewer_mutations,
    search_pruning,
    show,
    snake,
    text,
    warm_runs,
    web,
    zoo,
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
    "reviewer-mutations": ("docs/results.md", "reviewer_mutations.json",
                           reviewer_mutations.markdown),
    "dqn-sb3": ("docs/results.md", "dqn_sb3.json", dqn_sb3.markdown),
    "dqn-speed": ("docs/results.md", "dqn_speed.json", dqn_speed.markdown),
    "ppo-sac-sb3": ("docs/results.md", "ppo_sac_sb3.json", ppo_sac_sb3.markdown),
    "zoo": ("docs/results.md", "zoo.json", zoo.markdown),
    "zoo-tuning": ("docs/results.md", "zoo_tuning.json", zoo.markdown),
    "text-tiny-selection": ("docs/results.md", "text.json", text.tiny_selection_markdown),
    "dqn-profile": ("docs/results.md", "dqn_profile.json", dqn_profile.markdown),
    "search-pruning": ("docs/results.md", "search_pruning.json", search_pruning.markdown),
    "warm-runs": ("docs/results.md", "warm_runs.json", warm_runs.markdown),
    "cartpole-v1-misses": ("docs/results.md", "cartpole_v1_misses.json",
                           cartpole_v1_misses.markdown),
    "lunarlander-final-models": ("docs/results.md", "lunarlander_final_models.json",
                                 cartpole_v1_misses.markdown),
    "snake-seeds": ("docs/results.md", "snake.json", snake.markdown),
    "show": ("docs/results.md", "show.json", show.markdown),
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


# a figure in a docs row: 1,234 or -0.5 or 38.7 or 1.44x or 916k (not part of a name such as bf16 or v3)
FIGURE = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?=[xkM%]?(?!\w))")
# quoted figures that are not measured here: the book's, a target or stretch, RL Zoo's, the
# original's, a value before a change ("was ...", "before: ..."), up to the next ; or )
QUOTED = re.compile(r"\b(?:[Bb]ook|target|stretch|RL Zoo|[Tt]he original|was|before)\b[^;)]*")
RESULTS_LINK = re.compile(r"\]\(\.\./bench/results/([\w.]+\.json)\)|\]\(bench/results/([\w.]+\.json)\)")


def numbers_in(value, found: list[float]) -> list[float]:
    """Every number a results file holds, in its values and inside its strings."""
    if isinstance(value, bool):
        return found
    if isinstance(value, (int, float)):
        found.append(float(value))
    elif isinstance(value, str):
        found.extend(float(x.replace(",", "")) for x in FIGURE.findall(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            numbers_in(key, found)
            numbers_in(item, found)
    elif isinstance(value, list):
        for item in value:
            numbers_in(item, found)
    return found


def backed(figure: str, numbers: list[float]) -> bool:
    """The figure as printed is some number of the file rounded to the figure's digits,
    read as it is, as a percentage, or in thousands or millions ("916k", "1.13M")."""
    x = abs(float(figure.replace(",", "")))
    tolerance = 0.5 * 10 ** -len(figure.partition(".")[2]) + 1e-9
    return any(abs(abs(n) * scale - x) <= tolerance
               for n in numbers for scale in (1, 100, 1e-3, 1e-6))


def unbacked(root: Path = ROOT, results_dir: Path = common.RESULTS) -> list[str]:
    """Hand-written table rows that link a results file: every figure in the row's value
    cell (the second) must be in a linked file, except figures quoted from elsewhere
    (the book's, a target, RL Zoo's, values before a change)."""
    found = []
    for document in ("README.md", "docs/results.md"):
        text = (root / document).read_text()
        for name in TABLES:  # generated tables are checked against their files above
            text = block(name).sub("", text)
        for number, line in enumerate(text.splitlines(), 1):
            files = [a or b for a, b in RESULTS_LINK.findall(line)]
            cells = line.strip().strip("|").split("|")
            if not line.startswith("|") or not files or len(cells) < 3:
                continue
            numbers = []
            for file in files:
                numbers_in(json.loads((results_dir / file).read_text()), numbers)
            missing = [f for f in FIGURE.findall(QUOTED.sub("", cells[1]))
                       if not backed(f, numbers)]
            if missing:
                found.append(f"{document} line {number}: {', '.join(missing)} in no figure of "
                             f"{', '.join(files)}")
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
        found = stale() + unbacked()
        print("\n".join(found) or "every generated table matches its results file and "
              "every hand-written figure is in its results file")
        sys.exit(1 if found else 0)
    rewrite()


if __name__ == "__main__":
    main()
