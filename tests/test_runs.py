"""rlgen-runs: the table of a 3-seed sweep."""

import json

from tests.conftest import TINY, run_cli


def test_runs_table_of_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("rlgen-train", "-m", *TINY, "seed=0,1,2", f"hydra.sweep.dir={sweep}")
    rows = json.loads(run_cli("rlgen-runs", str(sweep), "--json").stdout)
    assert [r["seed"] for r in rows] == [0, 1, 2]
    assert {r["experiment"] for r in rows} == {"cartpole_reinforce"}
    assert all(r["status"] == "finished" and r["metric"] == "mean_steps" for r in rows)
    assert all(r["overrides"] == [] for r in rows)  # all share the same overrides
    table = run_cli("rlgen-runs", str(sweep)).stdout.splitlines()
    assert table[0].split()[:4] == ["run", "experiment", "overrides", "seed"]
    assert len(table) == 4 and "mean_steps=" in table[1]


def test_runs_shows_differing_overrides_and_stopped_runs(tmp_path):
    run_cli("rlgen-train", *TINY, "algo.lr=0.01", f"hydra.run.dir={tmp_path / 'a'}")
    run_cli("rlgen-train", *TINY, "algo.lr=0.02", f"hydra.run.dir={tmp_path / 'b'}")
    (tmp_path / "b" / "metrics.json").unlink()  # as if it were stopped before the end
    rows = json.loads(run_cli("rlgen-runs", str(tmp_path), "--json").stdout)
    assert [r["overrides"] for r in rows] == [["algo.lr=0.01"], ["algo.lr=0.02"]]
    assert [r["status"] for r in rows] == ["finished", "stopped"]
    missing = run_cli("rlgen-runs", str(tmp_path / "nope"), check=False)
    assert missing.returncode == 2 and "no such folder" in missing.stderr
