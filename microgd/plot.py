"""Plots of training (the ``plot`` extra: matplotlib): loss per epoch, any series per iteration,
a classifier's decision boundary.

    >>> from microgd.plot import plot_history, plot_series
    >>> figure = plot_history([0.25, 0.12, 0.07, 0.05], "loss.png")
    >>> figure = plot_series({"prediction": [0.52, 0.41, 0.33], "target": [0.3] * 3},
    ...                      "prediction.svg", ylabel="prediction")

Figures are drawn with matplotlib's Agg canvas directly, never through pyplot, so plotting
changes no global matplotlib state (your notebook's backend stays as it is). Titles, axis labels and
series names are drawn as they are given: text between two ``$`` is not read as mathematics (a file or
column name such as ``$\\frac$`` would be a matplotlib error after training).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

from . import checks
from .engine import no_grad
from .files import write_atomic

__all__ = ["plot_history", "plot_series", "plot_decision_boundary"]

PathLike = Union[str, os.PathLike]
FORMATS = {".png": "png", ".svg": "svg"}


def plot_history(history: Sequence[float], path: PathLike, title: str = "Training loss", log_scale: bool = False):
    """Plot the mean loss of each epoch (``fit()``'s History, or any list of numbers) to a PNG or SVG.

    Returns the matplotlib ``Figure`` (epochs are numbered from 1).
    """
    losses = _numbers(history, "plot_history", "loss at epoch", first=1)
    if log_scale and min(losses) <= 0:
        raise ValueError("plot_history: log_scale needs every loss > 0")
    return _draw({"loss": losses}, path, "epoch", "mean loss", title, log_scale, "plot_history")


def plot_series(series: Mapping[str, Sequence[float]], path: PathLike, xlabel: str = "iteration",
                ylabel: str = "value", title: str = ""):
    """Plot named series against their 1-based index to a PNG or SVG: e.g. tutorial 1's
    prediction per iteration (with the target as a second series) and error per iteration.

    Returns the matplotlib ``Figure``.
    """
    if not isinstance(series, Mapping) or not series:
        raise ValueError("plot_series: series must be a non-empty dict of name -> list of numbers")
    checked = {name: _numbers(values, "plot_series", f"{name!r} at iteration", first=1)
               for name, values in series.items()}
    return _draw(checked, path, xlabel, ylabel, title, False, "plot_series")


def _numbers(values, caller: str, what: str, first: int) -> list:
    """``values`` as a non-empty list of finite floats, or a clear error naming the bad entry."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{caller}: expected a list of numbers, got {type(values).__name__}")
    numbers = []
    for position, value in enumerate(values, first):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{caller}: {what} {position} is not a number: {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{caller}: {what} {position} is {number!r}: training diverged there; "
                             f"plot the entries before it (values[:{position - first}])")
        numbers.append(number)
    if not numbers:
        raise ValueError(f"{caller}: nothing to plot (an empty list)")
    return numbers


def _format(path: PathLike, caller: str) -> str:
    format = FORMATS.get(Path(path).suffix.lower())
    if format is None:
        raise ValueError(f"{caller}: cannot tell the format of {os.fspath(path)!r} from its suffix "
                         f"{Path(path).suffix or '(none)'!r}; use .png or .svg")
    return format


def _figure(caller: str, size: tuple[float, float]):
    """A matplotlib Figure on its own Agg canvas (no pyplot), or a clear error naming the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ModuleNotFoundError(f'{caller} needs matplotlib: pip install "microgd[plot]"') from error
    figure = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: PathLike, format: str) -> None:
    from matplotlib import rc_context

    with rc_context({"svg.fonttype": "none"}):  # svg text stays text: smaller, searchable
        buffer = io.BytesIO()
        figure.savefig(buffer, format=format)
    write_atomic(Path(path), buffer.getvalue())


def _words(axes, xlabel: str, ylabel: str, title: str) -> None:
    """The axis labels and the title, drawn as given (never read as mathematics between two ``$``)."""
    axes.set_xlabel(xlabel, parse_math=False)
    axes.set_ylabel(ylabel, parse_math=False)
    axes.set_title(title, parse_math=False)


def _draw(series: dict, path: PathLike, xlabel: str, ylabel: str, title: str, log_scale: bool, caller: str):
    format = _format(path, caller)
    figure = _figure(caller, (7, 4.2))
    from matplotlib.ticker import MaxNLocator

    axes = figure.add_subplot()
    for name, values in series.items():
        marker = "o" if len(values) <= 40 else None
        axes.plot(range(1, len(values) + 1), values, label=name, marker=marker, markersize=4, linewidth=1.8)
    if log_scale:
        axes.set_yscale("log")
    _words(axes, xlabel, ylabel, title)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    if len(series) > 1:
        for text in axes.legend().get_texts():
            text.set_parse_math(False)
    _save(figure, path, format)
    return figure


def plot_decision_boundary(model, X: Sequence[Sequence[float]], y: Sequence[float], path: PathLike,
                           title: str = "", resolution: int = 80):
    """Shade a 2-input classifier's probability of class 1 over the plane, draw its 0.5 contour (the
    decision boundary) and the points ``X`` coloured by their label ``y`` (0 or 1); PNG or SVG. The axes are
    the inputs x1 (``X[i][0]``) and x2 (``X[i][1]``), as a network's pictures name them.

    The model is evaluated on a ``resolution`` x ``resolution`` grid (``resolution`` >= 2) under ``no_grad()``.
    Returns the matplotlib ``Figure``.
    """
    format = _format(path, "plot_decision_boundary")
    checks.whole(resolution, "plot_decision_boundary: resolution", 2)
    if not X or any(len(row) != 2 for row in X) or len(X) != len(y):
        raise ValueError("plot_decision_boundary: X must be rows of 2 inputs, one label in y per row")
    figure = _figure("plot_decision_boundary", (7, 4.8))
    from matplotlib.lines import Line2D

    xs, ys = [p[0] for p in X], [p[1] for p in X]
    margin = 0.5
    gx = [min(xs) - margin + (max(xs) - min(xs) + 2 * margin) * i / (resolution - 1) for i in range(resolution)]
    gy = [min(ys) - margin + (max(ys) - min(ys) + 2 * margin) * i / (resolution - 1) for i in range(resolution)]
    with no_grad():
        probability = [[model([a, b]).data for a in gx] for b in gy]

    axes = figure.add_subplot()
    shading = axes.contourf(gx, gy, probability, levels=[i / 10 for i in range(11)], cmap="RdBu_r", alpha=0.45)
    axes.contour(gx, gy, probability, levels=[0.5], colors="black", linewidths=1.6)
    for label, (colour, marker) in enumerate(zip(("#2166ac", "#b2182b"), ("o", "s"))):
        points = [p for p, t in zip(X, y) if t == label]
        axes.scatter([p[0] for p in points], [p[1] for p in points], c=colour, marker=marker, s=30,
                     edgecolors="white", linewidths=0.8, label=f"class {label} ({len(points)} points)")
    figure.colorbar(shading, ax=axes, label="model's probability of class 1")
    _words(axes, "x1", "x2", title)
    axes.set_aspect("equal")
    boundary = Line2D([], [], color="black", linewidth=1.6, label="decision boundary (p = 0.5)")
    axes.legend(handles=[*axes.get_legend_handles_labels()[0], boundary], loc="upper right", framealpha=0.9)
    _save(figure, path, format)
    return figure
