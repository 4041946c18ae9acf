"""`rlgen-plot DIR ... [metric=TAG] [x=step|time] [out=curves.png]`: learning
curves from run dirs or sweep dirs, as a PNG and an SVG.

Runs that share every override but the seed form one group, drawn as one line: the
mean over its seeds, with a band from the lowest to the highest seed (or +- one
standard deviation). The curves are the TensorBoard scalars each run logged, so any
tag can be plotted; the default is the experiment's headline (its trainer's
`CURVES`, the first one the runs logged).
"""

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nn.config import import_trainer
from nn.errors import UserError
from nn.schema import between, one_of
from nn.tools.checks import fail, folders_and_keys
from nn.tools.runs import differing, read_runs

POINTS = 200  # the common x grid each group's seeds are interpolated onto
# overrides that change how a run ran, not what it learnt: runs differing only in these
# are seeds of one group
OPERATIONAL = ("threads=", "device=", "resume=", "render=")


def read_scalars(run: Path) -> dict[str, np.ndarray]:
    """Every scalar tag of a run's event files: tag -> rows of (step, seconds since the
    run's first scalar, value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0}).Reload()
    curves = {}
    for tag in events.Tags()["scalars"]:
        rows = np.array([(e.step, e.wall_time, e.value) for e in events.Scalars(tag)])
        if len(rows) > 1:  # a lone value (a final summary figure) is no curve
            curves[tag] = rows[np.argsort(rows[:, 0], kind="stable")]
    start = min((rows[:, 1].min() for rows in curves.values()), default=0.0)
    for rows in curves.values():
        rows[:, 1] -= start
    return curves


def headline(trainer: str, tags: set[str]) -> str | None:
    """The first of the trainer's headline curves that the runs logged."""
    return next((t for t in getattr(import_trainer(trainer), "CURVES", ()) if t in tags), None)


def group_runs(runs: list[dict]) -> dict[str, list[dict]]:
    """Runs keyed by a label of the overrides that tell the groups apart (seed aside)."""
    for run in runs:
        run["overrides"] = [o for o in run["overrides"] if not o.startswith(OPERATIONAL)]
    differing(runs)
    groups: dict[str, list[dict]] = {}
    for run in runs:
        label = " ".join(run["overrides"]) or run["experiment"]
        # a searched float's 17 digits say no more than its first 4
        label = re.sub(r"\d+\.\d{5,}(e-?\d+)?", lambda m: f"{float(m.group()):.4g}", label)
        groups.setdefault(label, []).append(run)
    return groups


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's exponential moving average (weight 0: the raw values)."""
    out, last = np.empty_like(values), values[0]
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * v
        out[i] = last
    return out


def group_curve(curves: list[np.ndarray], x_column: int, weight: float):
    """The seeds of one group on a common x grid, up to where the shortest one ends (so
    every point is a mean over all seeds): x, mean, low, high, std."""
    start = max(c[0, x_column] for c in curves)
    end = min(c[-1, x_column] for c in curves)
    x = np.linspace(start, end, POINTS) if end > start else np.array([start])
    ys = np.stack([np.interp(x, c[:, x_column], smooth(c[:, 2], weight)) for c in curves])
    return x, ys.mean(0), ys.min(0), ys.max(0), ys.std(0)


def plot_runs(dirs: list[Path], metric: str | None = None, x: str = "step",
              band: str = "minmax", smoothing: float = 0.0, mixed: bool = False,
              title: str | None = None):
    """The figure for these run dirs (see the module docstring) and what it shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in read_runs(dirs) if r["experiment"] is not None]
    if not runs:
        raise UserError(f"no run dirs under {', '.join(map(str, dirs))}")
    experiments = sorted({str(r["experiment"]) for r in runs})
    if len(experiments) > 1 and not mixed:
        raise UserError(f"these runs are of {len(experiments)} experiments "
                        f"({', '.join(experiments)}); plot one, or pass mixed=true to compare them")
    for run in runs:
        run["curves"] = read_scalars(Path(run["run"]))
    logged = sorted(set().union(*(r["curves"] for r in runs)))
    if metric is None:
        trainers = {r["trainer"] for r in runs}
        metric = next((m for m in (headline(t, set(logged)) for t in sorted(trainers)) if m), None)
        if metric is None:
            raise UserError(f"no headline curve in these runs; pick one with metric=TAG (they "
                            f"have: {', '.join(logged) or 'none: nothing logged yet'})")
    having = [r for r in runs if metric in r["curves"]]
    if not having:
        raise UserError(f"metric={metric}: not logged by {'these runs' if len(runs) > 1 else 'this run'}"
                        f"; {'they have' if len(runs) > 1 else 'it has'}: "
                        f"{', '.join(logged) or 'none: nothing logged yet'}")
    # a run that has not logged this curve yet (just started) is left out, and said so
    left_out, runs = [r["run"] for r in runs if metric not in r["curves"]], having
    x_column, x_label = (0, "step") if x == "step" else (1, "wall time (s)")

    groups = group_runs(runs)
    many = len(groups) > 6  # then the legend goes beside the axes, not over the curves
    figure, axes = plt.subplots(figsize=(12 if many else 7.5, 4.5), dpi=120, layout="constrained")
    if len(groups) <= 20:  # distinct colours while a qualitative palette lasts
        palette = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
        colours = [palette(i) for i in range(len(groups))]
    else:
        colours = [plt.get_cmap("turbo")(i / (len(groups) - 1)) for i in range(len(groups))]
    for index, (label, members) in enumerate(groups.items()):
        xs, mean, low, high, std = group_curve(
            [r["curves"][metric] for r in members], x_column, smoothing)
        seeds = sorted(r["seed"] for r in members)
        line, = axes.plot(xs, mean, label=f"{label} ({len(seeds)} seed{'s' * (len(seeds) > 1)})",
                          linewidth=1.6, color=colours[index])
        if len(members) > 1:
            lower, upper = (low, high) if band == "minmax" else (mean - std, mean + std)
            axes.fill_between(xs, lower, upper, color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set_xlabel(x_label)
    axes.set_ylabel(metric)
    axes.set_title(title or " vs ".join(experiments))
    axes.grid(alpha=0.3)
    if many:
        axes.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        axes.legend(fontsize=7, loc="best")
    return figure, {"metric": metric, "groups": {k: len(v) for k, v in groups.items()},
                    "left_out": left_out}


@dataclass
class PlotArgs:
    # the TensorBoard tag to plot (default: the experiment's headline, e.g. mean_steps,
    # cumulativeReward100, val_loss)
    metric: str | None = None
    x: str = one_of("step", "time", default="step")  # the logged step (iteration, frame, epoch) or wall time
    band: str = one_of("minmax", "std", default="minmax")  # lowest to highest seed, or +- 1 std
    smooth: float = between(0, 1, default=0.0, upper_open=True)  # TensorBoard's smoothing weight
    out: str = "curves.png"  # the PNG to write; an SVG is written beside it
    title: str | None = None  # the plot's title (default: the experiment)
    mixed: bool = False  # allow runs of different experiments in one plot


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parsed = folders_and_keys("rlgen-plot", PlotArgs, argv, __doc__.strip())
        if parsed is None:
            return
        dirs, args = parsed
        out = Path(args.out)
        if out.suffix.lower() != ".png":
            raise UserError(f"out={out}: name a .png (the .svg is written beside it)")
        figure, shown = plot_runs(dirs, args.metric, args.x,
                                  args.band, args.smooth, args.mixed, args.title)
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out)
        figure.savefig(out.with_suffix(".svg"))
    except UserError as err:
        fail("rlgen-plot", str(err))
    groups = ", ".join(f"{label} ({n})" for label, n in shown["groups"].items())
    print(f"wrote {out} and {out.with_suffix('.svg')}: {shown['metric']} of "
          f"{len(shown['groups'])} group(s): {groups}")
    if shown["left_out"]:
        print(f"left out (no {shown['metric']} yet): {', '.join(shown['left_out'])}")
