"""Plots of training (the ``plot`` extra: matplotlib): loss per epoch, any series per iteration.

    >>> from microgd.plot import plot_history, plot_series
    >>> figure = plot_history([0.25, 0.12, 0.07, 0.05], "loss.png")
    >>> figure = plot_series({"prediction": [0.52, 0.41, 0.33], "target": [0.3] * 3},
    ...                      "prediction.svg", ylabel="prediction")

Figures are drawn with matplotlib's Agg canvas directly, never through pyplot, so plotting
changes no global matplotlib state (your notebook's backend stays as it is).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Mapping, Sequence, Union

from .viz import _write_atomic

__all__ = ["plot_history", "plot_series"]

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
    """Plot named series against their 1-based index to a PNG or SVG: e.g. the first seed's
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


def _draw(series: dict, path: PathLike, xlabel: str, ylabel: str, title: str, log_scale: bool, caller: str):
    path = Path(path)
    format = FORMATS.get(path.suffix.lower())
    if format is None:
        raise ValueError(f"{caller}: cannot tell the format of {os.fspath(path)!r} from its suffix "
                         f"{path.suffix or '(none)'!r}; use .png or .svg")
    try:
        from matplotlib import rc_context
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as error:
        raise ModuleNotFoundError(f'{caller} needs matplotlib: pip install "microgd[plot]"') from error
    with rc_context({"svg.fonttype": "none", "font.size": 11}):  # svg text stays text: smaller, searchable
        figure = Figure(figsize=(7, 4.2), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        for name, values in series.items():
            marker = "o" if len(values) <= 40 else None
            axes.plot(range(1, len(values) + 1), values, label=name, marker=marker, markersize=4, linewidth=1.8)
        if log_scale:
            axes.set_yscale("log")
        axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
        if len(series) > 1:
            axes.legend()
        buffer = io.BytesIO()
        figure.savefig(buffer, format=format)
    _write_atomic(path, buffer.getvalue())
    return figure
