"""`rlgen-runs [DIR ...] [json=true]`: a table of the run dirs under DIR (default runs/),
so a sweep can be compared at a glance: experiment, the overrides that differ between
the listed runs, seed, status, best metric and training time."""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from nn.errors import UserError
from nn.tools.checks import fail, folders_and_keys


class UnknownMetric(UserError):
    """The same in every run of a sweep: a search stops at the first one."""


def find_runs(roots: list[Path]) -> list[Path]:
    """Every run dir under the roots, sorted by path: a folder holding `.hydra/config.yaml`
    (made by rlgen-train) or `checkpoints/last.pt` (a run a script started in-process)."""
    found = set()
    for root in roots:
        for marker in (".hydra/config.yaml", "checkpoints/last.pt"):
            if (root / marker).is_file():
                found.add(root)
            found.update(p.parent.parent for p in root.glob(f"**/{marker}"))
    return sorted(found)


def config_and_overrides(run: Path) -> tuple[dict, list[str]]:
    """The run's config and the overrides it was started with. A run started in-process
    has no record of its overrides: every config value stands in for them (the ones all
    listed runs share are dropped from the table)."""
    hydra_dir = run / ".hydra"
    if (hydra_dir / "config.yaml").is_file():
        config = yaml.safe_load((hydra_dir / "config.yaml").read_text()) or {}
        overrides_file = hydra_dir / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        return config, overrides or []
    from omegaconf import OmegaConf

    from nn.checkpoint import load_checkpoint
    from nn.logger import flat_hparams

    config = load_checkpoint(run / "checkpoints" / "last.pt", mmap=True).get("config") or {}
    return config, [f"{k}={v}" for k, v in flat_hparams(OmegaConf.create(config)).items()]


def best_metric(metrics: dict) -> tuple[str | None, float | None]:
    """The run's headline: the first `best_*` figure its trainer reported."""
    for key, value in metrics.items():
        if key.startswith("best_") and isinstance(value, (int, float)):
            return key[len("best_"):], value
    return None, None


def optimized_value(metrics: dict, name: str | None) -> float:
    """The figure a sweep optimises: metrics[name], or the headline `best_*` when None."""
    numeric = sorted(k for k, v in metrics.items() if isinstance(v, (int, float))
                     and not isinstance(v, bool))
    if name is None:
        name, value = best_metric(metrics)
        if name is None:
            raise UserError(f"this run reports no best_* figure; set optimized_metric to "
                            f"one of: {', '.join(numeric)}")
        return float(value)
    if name not in metrics:
        raise UnknownMetric(f"optimized_metric={name} is not in the run's metrics.json; it "
                            f"has: {', '.join(numeric)}")
    if metrics[name] is None:
        raise UserError(f"{name} is null in this run (e.g. a target it never reached)")
    return float(metrics[name])


def describe(run: Path) -> dict:
    config, overrides = config_and_overrides(run)
    metrics_file = run / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    metric, value = best_metric(metrics)
    if metrics:
        status = metrics.get("status", "finished")  # "stopped" after a signal
    elif (run / "checkpoints" / "last.pt").is_file():
        status = "stopped"  # saved at least once, no final metrics (yet)
    else:
        status = "no checkpoint"
    return {"run": str(run), "experiment": config.get("name"), "trainer": config.get("trainer"),
            "seed": config.get("seed"),
            "overrides": [o for o in overrides if not o.startswith(("seed=", "hydra"))],
            "status": status, "metric": metric, "best": value,
            "train_seconds": metrics.get("train_seconds")}


def read_runs(roots: list[Path]) -> list[dict]:
    """`describe` of every run dir under the roots; an unreadable one says so in `status`."""
    rows = []
    for run in find_runs(roots):
        try:
            rows.append(describe(run))
        except (OSError, ValueError, yaml.YAMLError, UserError) as err:
            rows.append({"run": str(run), "experiment": None, "trainer": None, "seed": None,
                         "overrides": [], "status": f"unreadable ({type(err).__name__})",
                         "metric": None, "best": None, "train_seconds": None})
    return rows


def differing(rows: list[dict]) -> None:
    """Keep in each row only the overrides not shared by every listed run."""
    if not rows:
        return
    common = set.intersection(*(set(r["overrides"]) for r in rows)) if len(rows) > 1 else set()
    for row in rows:
        row["overrides"] = [o for o in row["overrides"] if o not in common]


def format_table(rows: list[dict]) -> str:
    header = ["run", "experiment", "overrides", "seed", "status", "best", "time"]
    lines = [[r["run"], str(r["experiment"]), " ".join(r["overrides"]) or "-", str(r["seed"]),
              r["status"],
              f"{r['metric']}={r['best']:.4g}" if r["best"] is not None else "-",
              f"{r['train_seconds']:.0f}s" if r["train_seconds"] is not None else "-"]
             for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


@dataclass
class RunsArgs:
    json: bool = False  # one JSON list instead of a table


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parsed = folders_and_keys("rlgen-runs", RunsArgs, argv, __doc__.strip())
        if parsed is None:
            return
        roots, args = parsed
    except UserError as err:
        fail("rlgen-runs", str(err))
    rows = read_runs(roots)
    differing(rows)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(format_table(rows))
    else:
        print(f"no run dirs under {', '.join(map(str, roots))}")
