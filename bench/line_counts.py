"""Module sizes and function lengths: the largest modules, the longest functions of each
file, and each trainer's `train()`
with its loop body, counted from the `def` line to the function's last line (nested
functions, comments and docstrings included). The loop body is the longest `for` or
`while` statement directly inside `train()`, from its header to its last line.

    python -m bench.line_counts                 # this checkout
    python -m bench.line_counts --root OTHER    # another checkout (e.g. before a change)
    python -m bench.line_counts --write         # also bench/results/line_counts.json
"""

import argparse
import ast
import json
import sys
from pathlib import Path

from bench import common

TRAINERS = ["rl/reinforce.py", "rl/dqn.py", "generative/acgan.py", "generative/classifier.py",
            "generative/lstm_text.py", "generative/vae.py"]
PACKAGES = ["nn", "rl", "envs", "generative", "conf"]


def span(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1


def functions(tree: ast.AST) -> list[ast.FunctionDef]:
    """Top-level functions and methods (nested functions count inside their parent)."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found.append(node)
        elif isinstance(node, ast.ClassDef):
            found.extend(n for n in node.body if isinstance(n, ast.FunctionDef))
    return found


def train_lengths(tree: ast.AST) -> dict | None:
    train = next((f for f in functions(tree) if f.name == "train"), None)
    if train is None:
        return None
    loops = [n for n in train.body if isinstance(n, (ast.For, ast.While))]
    return {"train": span(train), "loop_body": max((span(n) for n in loops), default=0)}


def count(root: Path, top: int) -> dict:
    report = {"files": {}, "trainers": {}, "module_lines": {}}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text()
            tree = ast.parse(text)
            lengths = sorted(((span(f), f.name) for f in functions(tree)), reverse=True)
            rel = str(path.relative_to(root))
            report["module_lines"][rel] = len(text.splitlines())
            report["files"][rel] = [{"function": name, "lines": n} for n, name in lengths[:top]]
            if rel in TRAINERS:
                report["trainers"][rel] = train_lengths(tree)
    return report


def markdown(results: dict) -> str:
    """docs/results.md's tables, from a results file this bench wrote."""
    after, before = results["after"], results["before"]
    lines = ["| trainer | `train()` before / after | loop body before / after |",
             "| --- | --- | --- |"]
    for rel, now in after["trainers"].items():
        old = before["trainers"].get(rel) or {"train": "-", "loop_body": "-"}
        lines.append(f"| `{rel}` | {old['train']} / {now['train']} | "
                     f"{old['loop_body']} / {now['loop_body']} |")
    lines += ["", "| largest modules before | lines | largest modules after | lines |",
              "| --- | --- | --- | --- |"]
    largest = [sorted(r["module_lines"].items(), key=lambda item: -item[1])[:6]
               for r in (before, after)]
    lines += [f"| `{a}` | {m} | `{b}` | {n} |" for (a, m), (b, n) in zip(*largest, strict=True)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--top", type=int, default=3, help="longest functions shown per file")
    parser.add_argument("--before", type=Path, help="another checkout to set beside this one")
    parser.add_argument("--write", action="store_true", help="write bench/results/line_counts.json")
    parser.add_argument("--markdown", action="store_true",
                        help="print docs/results.md's tables from bench/results/line_counts.json")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads((common.RESULTS / "line_counts.json").read_text())))
        return
    after = count(args.root, args.top)
    before = count(args.before, args.top) if args.before else None
    print("| trainer | train() | loop body |" + (" before: train() | loop body |" if before else ""))
    print("|---|---|---|" + ("---|---|" if before else ""))
    for rel, now in after["trainers"].items():
        row = f"| {rel} | {now['train']} | {now['loop_body']} |"
        if before and before["trainers"].get(rel):
            row += f" {before['trainers'][rel]['train']} | {before['trainers'][rel]['loop_body']} |"
        print(row)
    for label, report in (("after", after), ("before", before)):
        if report is None:
            continue
        largest = sorted(report["module_lines"].items(), key=lambda item: -item[1])[:5]
        longest = max(((rows[0]["lines"], rows[0]["function"], rel)
                       for rel, rows in report["files"].items() if rows), default=None)
        print(f"\n{label}: largest modules " + ", ".join(f"{rel} {n}" for rel, n in largest)
              + (f"; longest function {longest[2]}:{longest[1]} {longest[0]}" if longest else ""))
    print("\nlongest functions per file:")
    for rel, rows in after["files"].items():
        if rows:
            print(f"  {rel}: " + ", ".join(f"{r['function']} {r['lines']}" for r in rows))
    if args.write:
        common.write("line_counts", {"command": "python -m bench.line_counts " + " ".join(
            sys.argv[1:]), "after": after, "before": before})


if __name__ == "__main__":
    main()
