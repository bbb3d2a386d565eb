"""The playground's data: the built-in datasets, a CSV the page sends (within limits), or a user's own rows,
each as a :class:`Table` of two inputs and a target, with its task.

    >>> table = built_in("xor")
    >>> table.X, table.y, table.columns, table.task
    ([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0.0, 1.0, 1.0, 0.0], ['x1', 'x2', 'z'], 'classification')

A task is "classification" when the targets are two classes, 0 and 1 or -1 and +1, else "regression".
Nothing here scales or encodes: :class:`~microgd.playground.run.Run` does, for its loss and its pictures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import checks, data

__all__ = ["PlaygroundError", "Table", "built_in", "from_csv", "from_rows", "two_classes", "task_of", "shown", "TASKS",
           "CLASSIFICATION", "REGRESSION", "CSV_MAX_BYTES", "CSV_MAX_ROWS", "CSV_COLUMNS"]

CLASSIFICATION, REGRESSION = "classification", "regression"
TASKS = {"moons": CLASSIFICATION, "circles": CLASSIFICATION, "xor": CLASSIFICATION, "spiral": CLASSIFICATION,
         "tutorial2": REGRESSION, "csv": None}
"""The datasets the page offers and their tasks (a CSV's comes from its target column)."""
CSV_MAX_BYTES = 100_000  # of UTF-8 text
CSV_MAX_ROWS = 2000  # rows of data, below the header
CSV_COLUMNS = 3  # x1, x2, then the target
_GENERATED = {"moons": data.two_moons, "circles": data.circles, "spiral": data.spiral}
_CLASS_PAIRS = ({0.0, 1.0}, {-1.0, 1.0})


class PlaygroundError(ValueError):
    """A bad option from the page, or a bad model or data: one line naming the option and the value.

        >>> from_csv("x1,x2\\n1,2\\n")
        Traceback (most recent call last):
        ...
        microgd.playground.datasets.PlaygroundError: csv: 2 columns ('x1, x2'), expected 3: two inputs, then the target
    """


@dataclass(frozen=True)
class Table:
    """Rows ``X`` of two inputs, their targets ``y``, the names of the three ``columns`` and the ``task``."""

    X: list[list[float]]
    y: list[float]
    columns: list[str]
    task: str


def built_in(name: str, points: int = 200, noise: float = 0.1, seed: int = 0) -> Table:
    """A built-in dataset: "moons", "circles", "spiral" (``points`` of them, Gaussian ``noise``, drawn with
    ``seed``), "xor" (its four corners) or "tutorial2" (tutorial 2's table, a regression)."""
    if name in _GENERATED:
        X, y = _GENERATED[name](points, noise=noise, seed=seed)
    elif name == "xor":
        X, y = data.xor()
    elif name == "tutorial2":
        X, y = data.tutorial2_table()
    else:
        raise PlaygroundError(f"dataset: unknown {shown(name)} (choose from {', '.join(TASKS)})")
    return Table(X, y, ["x1", "x2", "z"], task_of(y))


def from_csv(text: Any) -> Table:
    """The table of CSV ``text``: a header line, then at most :data:`CSV_MAX_ROWS` rows of three numbers (x1, x2,
    the target), at most :data:`CSV_MAX_BYTES` of UTF-8 in all.

        >>> from_csv("a,b,label\\n0.5,1,0\\n2,3,1\\n").task
        'classification'
    """
    if not isinstance(text, str):
        raise PlaygroundError(f"csv: must be the text of a CSV file, got {shown(text)}")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > CSV_MAX_BYTES:
        raise PlaygroundError(f"csv: {size:,} bytes, more than the playground takes ({CSV_MAX_BYTES:,})")
    try:
        header, rows = data.read_csv(text, "csv")
    except ValueError as error:
        raise PlaygroundError(" ".join(str(error).split())) from None
    if len(header) != CSV_COLUMNS:
        raise PlaygroundError(f"csv: {len(header)} columns ({shown(', '.join(header))}), expected {CSV_COLUMNS}: "
                              "two inputs, then the target")
    if len(rows) > CSV_MAX_ROWS:
        raise PlaygroundError(f"csv: {len(rows):,} rows, more than the playground takes ({CSV_MAX_ROWS:,})")
    return Table([row[:2] for row in rows], [row[2] for row in rows], header, task_of([row[2] for row in rows]))


def from_rows(X: Any, y: Any) -> Table:
    """A user's own data: rows ``X`` of two numbers and their targets ``y`` (lists, or numpy arrays)."""
    if not _sized(X) or not _sized(y) or len(X) != len(y) or len(X) == 0:
        raise PlaygroundError("data: must be (X, y): rows of two inputs and as many targets, got "
                              f"{type(X).__name__} and {type(y).__name__}")
    try:
        rows = [[checks.number(v, f"data: X[{i}][{j}]") for j, v in enumerate(_pair(row, i))]
                for i, row in enumerate(X)]
        targets = [checks.number(t, f"data: y[{i}]") for i, t in enumerate(y)]
    except checks.ArgumentError as error:
        raise PlaygroundError(str(error)) from None
    return Table(rows, targets, ["x1", "x2", "z"], task_of(targets))


def two_classes(y: Sequence[float]) -> tuple[float, float] | None:
    """The two label values (smaller first) when ``y`` holds two classes, 0 and 1 or -1 and +1; else None.

        >>> two_classes([1.0, -1.0, 1.0]), two_classes([0.0, 0.5, 1.0])
        ((-1.0, 1.0), None)
    """
    values = set(y)
    return (min(values), max(values)) if values in _CLASS_PAIRS else None


def task_of(y: Sequence[float]) -> str:
    """"classification" for two classes of targets (:func:`two_classes`), else "regression"."""
    return CLASSIFICATION if two_classes(y) is not None else REGRESSION


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` for a one-line message, cut to about ``limit`` characters.

        >>> shown("x" * 50), shown(10**5000)
        ("'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…", '<int too large to print>')
    """
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int of more than 4300 digits, lists nested too deep
        return f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else text[:limit] + "…"


def _sized(value: Any) -> bool:
    return hasattr(value, "__len__") and not isinstance(value, (str, bytes, dict))


def _pair(row: Any, i: int) -> Any:
    if not _sized(row) or len(row) != 2:
        raise PlaygroundError(f"data: X[{i}] must be a row of two inputs, got {shown(row)}")
    return row
