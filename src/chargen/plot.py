"""`chargen plot`: training and validation loss of one or more runs, in bits per character,
against steps and against training time, written as a PNG (or returned as a figure, which a
notebook shows inline); a run's metrics as records; its short HTML summary for notebooks."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

from .checkpoint import RunDir
from .errors import ChargenError
from .files import atomic_file

DEFAULT_NAME = "loss.png"


@dataclass
class Curves:
    name: str
    unit: str  # char or byte
    train: list[tuple[int, float, float]]  # (step, seconds, bits)
    val: list[tuple[int, float, float]]


def load_curves(path: str) -> Curves:
    run = RunDir(path).check_exists()
    by_step: dict[tuple[str, int], tuple[int, float, float]] = {}
    for record in run.read_metrics():
        for key, kind in (("train_loss", "train"), ("val_loss", "val")):
            if key in record:
                # After a rollback, steps are trained again: the later record wins.
                by_step[kind, record["step"]] = (record["step"], record["time"],
                                                 record[key] / math.log(2))
    if not by_step:
        raise ChargenError(f"{run.path} has no metrics yet (metrics.jsonl is empty or missing); "
                           "train it first")
    curves = {kind: sorted(v for (k, _), v in by_step.items() if k == kind)
              for kind in ("train", "val")}
    unit = run.read_config().data.tokenizer
    return Curves(str(path).rstrip("/") or str(path), unit, curves["train"], curves["val"])


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ChargenError("chargen plot needs matplotlib: pip install 'chargen[plot]'") from None

    class InlineFigure(Figure):
        """A Figure that a notebook shows as an image: without pyplot's inline backend
        switched on, a bare Figure shows as its text repr."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png")
            return buffer.getvalue()

    return InlineFigure


def _time_unit(seconds: float) -> tuple[str, float]:
    if seconds <= 180:
        return "seconds", 1.0
    return ("minutes", 60.0) if seconds <= 3 * 3600 else ("hours", 3600.0)


def _y_label(runs: list[Curves]) -> str:
    units = {run.unit for run in runs}
    return {frozenset({"char"}): "bits per character",
            frozenset({"byte"}): "bits per byte"}.get(frozenset(units), "bits per token")


def _draw(axes, runs: list[Curves], column: int, scale: float) -> None:
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"
        for points, style in ((run.train, "--"), (run.val, "-")):
            if points:
                xs = [p[column] / scale for p in points]
                axes.plot(xs, [p[2] for p in points], style, color=colour,
                          linewidth=1.0 if style == "--" else 1.8, alpha=0.75 if style == "--" else 1,
                          marker="o" if len(points) == 1 else None)  # a lone point shows too
        if run.val:
            best = min(run.val, key=lambda p: p[2])
            axes.plot(best[column] / scale, best[2], "*", color=colour, markersize=13,
                      markeredgecolor="black", zorder=5)
    axes.grid(True, alpha=0.3)


def _legend(axes, runs: list[Curves]) -> None:
    from matplotlib.lines import Line2D

    handles = []
    for i, run in enumerate(runs):
        best = min(run.val, key=lambda p: p[2]) if run.val else None
        label = run.name + (f"  (best {best[2]:.3f} at step {best[0]:,})" if best else "")
        handles.append(Line2D([], [], color=f"C{i % 10}", linewidth=2, label=label))
    handles += [Line2D([], [], color="grey", linestyle="--", label="training"),
                Line2D([], [], color="grey", linestyle="-", linewidth=1.8, label="validation"),
                Line2D([], [], color="grey", marker="*", linestyle="", markersize=11,
                       markeredgecolor="black", label="best validation")]
    axes.legend(handles=handles, loc="best", fontsize="small")


def _y_limits(runs: list[Curves]) -> tuple[float, float]:
    """Low enough for every point; high enough for validation and the training loss after its
    first tenth, so that the first steps' (near-uniform) losses do not flatten the rest."""
    values = [p[2] for run in runs for p in run.train + run.val]
    tops = [p[2] for run in runs for p in run.val]
    tops += [p[2] for run in runs for p in run.train[len(run.train) // 10 :]]
    low, high = min(values), max(tops or values)
    margin = 0.05 * (high - low or 1.0)
    return max(0.0, low - margin), high + margin


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_replaceable(target: Path) -> None:
    """An existing PNG (an earlier plot) is replaced; any other file is the user's: refused."""
    if not target.exists():
        return
    if target.is_file():
        with open(target, "rb") as handle:
            if handle.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE:
                return
    raise ChargenError(f"{target} exists and is not a PNG image; choose another --out, or "
                       "remove it first")


def plot_runs(paths: list[str], out: str | None = None) -> Path:
    """Draw the runs' loss curves (several overlaid) into a PNG; -> its path. The default
    path is loss.png inside the first run's directory."""
    target = Path(out) if out is not None else Path(paths[0]) / DEFAULT_NAME
    if target.parent and not target.parent.is_dir():
        raise ChargenError(f"cannot write {target}: {target.parent} is not a directory")
    _check_replaceable(target)
    figure = loss_figure(paths)
    with atomic_file(target) as handle:
        figure.savefig(handle, format="png", dpi=110)
    return target


def loss_figure(paths: list[str]):
    """The runs' loss curves as a matplotlib Figure (a notebook displays it inline)."""
    figure_class = _figure_class()
    runs = [load_curves(path) for path in paths]
    figure = figure_class(figsize=(13, 5), layout="constrained")
    by_step, by_time = figure.subplots(1, 2, sharey=True)
    unit, scale = _time_unit(max(p[1] for run in runs for p in run.train + run.val))
    _draw(by_step, runs, 0, 1.0)
    _draw(by_time, runs, 1, scale)
    by_step.set_xlabel("step")
    by_time.set_xlabel(f"training time ({unit})")
    by_step.set_ylabel(_y_label(runs))
    by_step.set_ylim(*_y_limits(runs))
    by_step.set_title("loss against steps")
    by_time.set_title("loss against training time")
    _legend(by_step, runs)
    return figure


def history(path: str | Path) -> list[dict]:
    """The run's metrics, one record per line of metrics.jsonl (Keras users' `history`)."""
    return RunDir(path).check_exists().read_metrics()


def history_frame(path: str | Path):
    """history() as a pandas DataFrame (pandas is not a dependency: installed by the user)."""
    try:
        import pandas
    except ImportError:
        raise ChargenError("a DataFrame needs pandas: pip install pandas (or use .history, "
                           "a list of records)") from None
    return pandas.DataFrame.from_records(history(path))


def summary_html(title: str, rows: list[tuple[str, str]], path: str | Path) -> str:
    """A short HTML table (a notebook's rich display of a run or a model) with a small
    validation curve when the run has one."""
    cells = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td style='text-align:left'>"
                    f"{escape(v)}</td></tr>" for k, v in rows)
    values = [r["val_loss"] for r in history(path) if "val_loss" in r]
    curve = _sparkline(values) if len(values) > 1 else ""
    return f"<div><b>{escape(title)}</b>{curve}<table>{cells}</table></div>"


def _sparkline(values: list[float], width: int = 240, height: int = 48) -> str:
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    points = " ".join(f"{i * width / (len(values) - 1):.1f},{(high - v) * height / span:.1f}"
                      for i, v in enumerate(values))
    return (f"<div><svg width='{width}' height='{height + 4}'><polyline points='{points}' "
            "fill='none' stroke='steelblue' stroke-width='2'/></svg> validation loss</div>")
