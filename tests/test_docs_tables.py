"""The tables that bench code writes from results files are what the files say: a table
edited by hand, or a results file re-measured without rewriting the docs, fails here."""

import shutil

from bench import common, docs_tables


def test_every_generated_table_matches_its_results_file():
    assert docs_tables.stale() == [], "run python -m bench.docs_tables"


def test_a_figure_changed_in_a_results_file_is_caught(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(common.RESULTS, results)
    text = (results / "export.json").read_text()
    first = docs_tables.generated("export")
    changed = text.replace('"test_accuracy": 0.9', '"test_accuracy": 0.8')
    assert changed != text
    (results / "export.json").write_text(changed)
    assert docs_tables.generated("export", results) != first
    stale = docs_tables.stale(results_dir=results)
    assert any("results:export " in line for line in stale)
    assert any("results:export-readme" in line for line in stale)


def test_a_table_edited_by_hand_is_caught(tmp_path):
    for document in ("README.md", "docs/results.md"):
        (tmp_path / document).parent.mkdir(exist_ok=True)
        shutil.copy(docs_tables.ROOT / document, tmp_path / document)
    readme = (tmp_path / "README.md").read_text()
    block = docs_tables.block("export-readme").search(readme).group(2)
    edited = block.replace("x /", "x  /", 1) if "x /" in block else block + "| extra |\n"
    (tmp_path / "README.md").write_text(readme.replace(block, edited))
    assert docs_tables.stale(root=tmp_path) == [
        "README.md: the table results:export-readme differs from bench/results"]


def test_a_headline_read_from_one_of_several_files_is_caught(tmp_path):
    """The README's headlines come from five files: a Snake seed re-measured in snake.json
    alone makes them stale (and the seeds' table, which reads the same file)."""
    import json

    results = tmp_path / "results"
    shutil.copytree(common.RESULTS, results)
    snake = json.loads((results / "snake.json").read_text())
    row = next(r for r in snake["trained"] if r["experiment"] == "snake_dqn_strong"
               and not r["overrides"])
    before = docs_tables.generated("headlines", results)
    assert f"{row['fresh_greedy_mean_fruits']:g}" in before
    row["fresh_greedy_mean_fruits"] = 99.25
    (results / "snake.json").write_text(json.dumps(snake))
    assert "99.25" in docs_tables.generated("headlines", results)
    assert docs_tables.stale(results_dir=results) == [  # and the seeds' own table
        "README.md: the table results:headlines differs from bench/results",
        "docs/results.md: the table results:snake-seeds differs from bench/results"]


def test_every_hand_written_figure_is_in_the_results_file_its_row_links():
    assert docs_tables.unbacked() == []


def test_a_hand_written_figure_that_no_results_file_holds_is_caught(tmp_path):
    for document in ("README.md", "docs/results.md"):
        (tmp_path / document).parent.mkdir(exist_ok=True)
        shutil.copy(docs_tables.ROOT / document, tmp_path / document)
    results = (tmp_path / "docs/results.md").read_text()
    row = next(line for line in results.splitlines() if line.startswith("| `vae_mnist5k`"))
    assert "40.26" in row
    (tmp_path / "docs/results.md").write_text(results.replace(row, row.replace("40.26", "41.26")))
    before = docs_tables.unbacked()
    found = [line for line in docs_tables.unbacked(root=tmp_path) if line not in before]
    assert len(found) == 1 and "41.26 in no figure of generative.json" in found[0]
    # a figure quoted from the book is not a measurement, and is not looked for
    quoted = row.replace("(book: 40-50)", "(book: 40-55)")
    assert quoted != row
    (tmp_path / "docs/results.md").write_text(results.replace(row, quoted))
    assert docs_tables.unbacked(root=tmp_path) == before
