"""Data: min-max scaling, the built-in datasets (tutorial 2's table, XOR, two moons, circles, a spiral) and CSV
loading.

    >>> from microgd.data import MinMaxScaler, tutorial2_table
    >>> X, y = tutorial2_table()
    >>> X[2], y[2]
    ([65.0, 67.0], 80.0)
    >>> [[round(v, 4) for v in row] for row in MinMaxScaler().fit_transform(X)]
    [[1.0, 1.0], [0.5556, 0.5806], [0.8889, 0.0], [0.0, 0.9032]]

Everything is pure Python: rows are lists of numbers, a target column is a flat list.
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
from collections.abc import Sequence
from typing import Union

from . import checks

__all__ = ["MinMaxScaler", "ConstantColumnError", "ScaleOverflowError", "tutorial2_table", "xor", "two_moons",
           "circles", "spiral", "load_csv", "read_csv", "read_text", "MAX_BYTES"]

Rows = list[list[float]]
PathLike = Union[str, "os.PathLike[str]"]
_STATE_KEYS = ("feature_range", "data_min_", "data_max_")
MAX_BYTES = 64 * 2**20  # what load_csv and model files read at most: an endless input stops here
_CHUNK = 2**20


class ConstantColumnError(ValueError):
    """``MinMaxScaler.fit`` met a constant column: ``column`` is its index, ``value`` its only value."""

    def __init__(self, message: str, column: int, value: float):
        super().__init__(message)
        self.column, self.value = column, value


class ScaleOverflowError(ValueError):
    """MinMaxScaler met numbers a float cannot hold once scaled: ``column`` is the column's index, ``row``
    the row's (None when ``fit`` finds the column's own span, max - min, beyond the float range) and
    ``reason`` says what overflowed, in words that need no index."""

    def __init__(self, message: str, column: int, row: int | None, reason: str):
        super().__init__(message)
        self.column, self.row, self.reason = column, row, reason


class MinMaxScaler:
    """Scale each column linearly so that its minimum maps to ``lo`` and its maximum to ``hi``.

    ``x' = lo + (x - min) / (max - min) * (hi - lo)``: tutorial 2's ``(x - min) / (max - min)`` for
    [0, 1] and that ``* 2 - 1`` for [-1, 1]. Takes a list of rows, or a flat list for one column
    (then gives back a flat list). A constant column or a ragged row is an error.

        >>> scaler = MinMaxScaler((-1, 1)).fit([25, 50, 65, 70])
        >>> [round(v, 4) for v in scaler.transform([25, 50, 65, 70])]
        [-1.0, 0.1111, 0.7778, 1.0]
        >>> scaler.inverse_transform([0.0])
        [47.5]

    ``state_dict()`` gives a fitted scaler as plain JSON-ready data and ``from_state`` rebuilds it,
    so a model file can carry the scaling of the data it was trained on:

        >>> MinMaxScaler.from_state(scaler.state_dict()).transform([47.5])
        [0.0]
    """

    def __init__(self, feature_range: tuple[float, float] = (0, 1)):
        if not isinstance(feature_range, (tuple, list)) or len(feature_range) != 2:
            raise ValueError(f"MinMaxScaler: feature_range must be a pair (lo, hi), got {feature_range!r}")
        lo, hi = (checks.number(v, "MinMaxScaler: feature_range bound") for v in feature_range)
        if not lo < hi:
            raise ValueError(f"MinMaxScaler: feature_range needs lo < hi, got {feature_range!r}")
        if not math.isfinite(hi - lo):
            raise ValueError(f"MinMaxScaler: feature_range {feature_range!r} is wider than a float holds")
        self.feature_range = (lo, hi)
        self.data_min_: list[float] | None = None
        self.data_max_: list[float] | None = None

    def fit(self, data: Sequence) -> MinMaxScaler:
        """Learn each column's minimum and maximum; returns the scaler. A constant column is a
        :class:`ConstantColumnError`, one spanning more than a float holds (-1e308 to 1e308) a
        :class:`ScaleOverflowError`."""
        rows, _ = self._rows(data, "fit", width=None)
        columns = list(zip(*rows))
        lows, highs = [min(c) for c in columns], [max(c) for c in columns]
        for j, (low, high) in enumerate(zip(lows, highs)):
            if low == high:
                raise ConstantColumnError(f"MinMaxScaler.fit: column {j} is constant (every value is {low!r}); "
                                          "min-max scaling would divide by zero", j, low)
            if not math.isfinite(high - low):
                reason = (f"it spans {low!r} to {high!r}, wider than a float holds (max - min overflows): "
                          "rescale it first")
                raise ScaleOverflowError(f"MinMaxScaler.fit: column {j}: {reason}", j, None, reason)
        self.data_min_, self.data_max_ = lows, highs
        return self

    def transform(self, data: Sequence) -> list:
        """``data`` scaled with the fitted minimums and maximums (values outside them extrapolate)."""
        lo, hi = self.feature_range
        return self._map(data, "transform", lambda x, a, b: lo + (x - a) / (b - a) * (hi - lo))

    def fit_transform(self, data: Sequence) -> list:
        """``fit(data)`` then ``transform(data)``."""
        return self.fit(data).transform(data)

    def inverse_transform(self, data: Sequence) -> list:
        """Undo ``transform``: scaled values back to the original units."""
        lo, hi = self.feature_range
        return self._map(data, "inverse_transform", lambda x, a, b: a + (x - lo) / (hi - lo) * (b - a))

    def state_dict(self) -> dict[str, list[float]]:
        """``{"feature_range": [lo, hi], "data_min_": [...], "data_max_": [...]}``, one min and max per column."""
        if self.data_min_ is None or self.data_max_ is None:
            raise RuntimeError("MinMaxScaler.state_dict: call fit() first")
        return {"feature_range": list(self.feature_range), "data_min_": list(self.data_min_),
                "data_max_": list(self.data_max_)}

    @classmethod
    def from_state(cls, state: dict) -> MinMaxScaler:
        """A fitted scaler from ``state_dict()``'s data.

        Checked whole: exactly the three keys, ``feature_range`` two finite numbers lo < hi,
        ``data_min_`` and ``data_max_`` equally long non-empty lists of finite numbers with each
        minimum below its maximum. Otherwise a ValueError naming the key (``data_max_[1] ...``).
        """
        if not isinstance(state, dict):
            raise ValueError(f"a scaler state should be an object with keys {', '.join(_STATE_KEYS)}, "
                             f"got {type(state).__name__}")
        missing = [k for k in _STATE_KEYS if k not in state]
        unknown = [k for k in state if k not in _STATE_KEYS]
        if missing or unknown:
            raise ValueError(f"{'missing' if missing else 'unexpected'} {', '.join(map(repr, missing or unknown))}")
        lows, highs = (_numbers(state[key], key, None) for key in ("data_min_", "data_max_"))
        if len(lows) != len(highs):
            raise ValueError(f"data_min_ has {len(lows)} numbers but data_max_ has {len(highs)}: one each per column")
        for j, (low, high) in enumerate(zip(lows, highs)):
            if not low < high:
                raise ValueError(f"data_max_[{j}] = {high!r} should be above data_min_[{j}] = {low!r}")
            if not math.isfinite(high - low):
                raise ValueError(f"data_min_[{j}] = {low!r} to data_max_[{j}] = {high!r} is wider than a float holds")
        lo, hi = _numbers(state["feature_range"], "feature_range", 2)
        if not lo < hi:
            raise ValueError(f"feature_range needs lo < hi, got {[lo, hi]!r}")
        if not math.isfinite(hi - lo):
            raise ValueError(f"feature_range {[lo, hi]!r} is wider than a float holds")
        scaler = cls((lo, hi))
        scaler.data_min_, scaler.data_max_ = lows, highs
        return scaler

    def _map(self, data: Sequence, method: str, f) -> list:
        lows, highs = self.data_min_, self.data_max_
        if lows is None or highs is None:
            raise RuntimeError(f"MinMaxScaler.{method}: call fit() first")
        rows, flat = self._rows(data, method, width=len(lows))
        out = [[f(x, a, b) for x, a, b in zip(row, lows, highs)] for row in rows]
        for i, row in enumerate(out):
            for j, y in enumerate(row):
                if not math.isfinite(y):  # far outside the fitted range: beyond the float range once scaled
                    reason = (f"{rows[i][j]!r} is {y!r} once scaled, beyond the float range (fitted on "
                              f"[{lows[j]!r}, {highs[j]!r}])")
                    raise ScaleOverflowError(f"MinMaxScaler.{method}: row {i} column {j}: {reason}", j, i, reason)
        return [row[0] for row in out] if flat else out

    def _rows(self, data: Sequence, method: str, width: int | None) -> tuple[Rows, bool]:
        """``data`` as checked rows of floats, and whether it came as a flat column."""
        where = f"MinMaxScaler.{method}"
        if isinstance(data, (str, bytes)) or not isinstance(data, Sequence) or not data:
            raise ValueError(f"{where}: expected a non-empty list of rows or of numbers, got {data!r}")
        flat = not isinstance(data[0], Sequence)
        rows = [[x] for x in data] if flat else data
        width = len(rows[0]) if width is None else width
        checked = []
        for i, row in enumerate(rows):
            if isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
                raise ValueError(f"{where}: row {i} is {row!r}, expected a list of {width} numbers")
            if len(row) != width:
                raise ValueError(f"{where}: row {i} has {len(row)} values, expected {width}")
            checked.append([checks.number(x, f"{where}: row {i} column {j}") for j, x in enumerate(row)])
        return checked, flat


def _numbers(values, key: str, length: int | None) -> list[float]:
    """``values`` as a list of finite floats (of ``length``, else non-empty), or ValueError naming ``key``."""
    if not isinstance(values, (list, tuple)) or not values or (length is not None and len(values) != length):
        what = f"{length} numbers" if length else "a non-empty list of numbers"
        raise ValueError(f"{key} should be {what}, got {values!r}")
    return [checks.number(x, f"{key}[{j}]") for j, x in enumerate(values)]


def tutorial2_table() -> tuple[Rows, list[float]]:
    """Tutorial 2's training table (inputs x1, x2 and target z; the tutorial's I0, I1 and Z0, and the columns of
    ``demos/tutorial2.csv``), as used for its normalisation.

    The tutorial lists another table first (70, 100, 90 / 50, 85, 80 / 65, 70, 80 / 30, 95, 70) but
    normalises and trains on this one.

        >>> tutorial2_table()
        ([[70.0, 98.0], [50.0, 85.0], [65.0, 67.0], [25.0, 95.0]], [91.0, 82.0, 80.0, 68.0])
    """
    return [[70.0, 98.0], [50.0, 85.0], [65.0, 67.0], [25.0, 95.0]], [91.0, 82.0, 80.0, 68.0]


def xor() -> tuple[Rows, list[float]]:
    """The four XOR points and their 0/1 labels."""
    return [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0.0, 1.0, 1.0, 0.0]


def two_moons(n: int = 100, noise: float = 0.1, seed: int | None = 0) -> tuple[Rows, list[float]]:
    """Two interleaving half circles: ``n`` points, labels 0 (upper moon) and 1 (lower moon).

    Angles are evenly spaced over each half circle; each coordinate gets Gaussian noise of
    standard deviation ``noise`` from ``random.Random(seed)``.

        >>> X, y = two_moons(6, noise=0.0)
        >>> [round(v, 3) for v in X[0]], y[0], [round(v, 3) for v in X[-1]], y[-1]
        ([1.0, 0.0], 0.0, [2.0, 0.5], 1.0)
    """
    checks.whole(n, "two_moons: n", 2)
    checks.number(noise, "two_moons: noise", at_least=0)
    rng = random.Random(checks.seed(seed, "two_moons: seed"))
    upper, lower = n // 2, n - n // 2
    X, y = [], []
    for count, label in ((upper, 0.0), (lower, 1.0)):
        for i in range(count):
            t = math.pi * i / (count - 1) if count > 1 else 0.0
            if label == 0.0:
                x1, x2 = math.cos(t), math.sin(t)
            else:
                x1, x2 = 1.0 - math.cos(t), 0.5 - math.sin(t)
            X.append([x1 + rng.gauss(0.0, noise), x2 + rng.gauss(0.0, noise)])
            y.append(label)
    return X, y


def circles(n: int = 100, noise: float = 0.1, seed: int | None = 0, factor: float = 0.5) -> tuple[Rows, list[float]]:
    """Two circles around the origin: ``n`` points, labels 0 (the outer circle, radius 1) and 1 (the inner one,
    radius ``factor``), evenly spaced angles, Gaussian noise of standard deviation ``noise`` on each coordinate.

        >>> X, y = circles(8, noise=0.0)
        >>> [round(v, 3) for v in X[0]], y[0], [round(v, 3) for v in X[4]], y[4]
        ([1.0, 0.0], 0.0, [0.5, 0.0], 1.0)
    """
    checks.whole(n, "circles: n", 2)
    checks.number(noise, "circles: noise", at_least=0)
    checks.number(factor, "circles: factor", above=0, below=1)
    rng = random.Random(checks.seed(seed, "circles: seed"))
    X, y = [], []
    for count, radius, label in ((n // 2, 1.0, 0.0), (n - n // 2, factor, 1.0)):
        for i in range(count):
            t = 2 * math.pi * i / count
            X.append([radius * math.cos(t) + rng.gauss(0.0, noise), radius * math.sin(t) + rng.gauss(0.0, noise)])
            y.append(label)
    return X, y


def spiral(n: int = 100, noise: float = 0.1, seed: int | None = 0, turns: float = 1.25) -> tuple[Rows, list[float]]:
    """Two interleaved spiral arms turning ``turns`` times out from the origin to radius 1: ``n`` points, labels 0
    and 1 (the second arm is the first turned by half a circle), Gaussian noise of standard deviation ``noise``
    on each coordinate.

        >>> X, y = spiral(6, noise=0.0)          # each arm ends at radius 1, a turn and a quarter out
        >>> [round(v, 3) for v in X[2]], y[2], [round(v, 3) for v in X[4]], y[4]
        ([0.0, 1.0], 0.0, [-0.333, 0.577], 1.0)
    """
    checks.whole(n, "spiral: n", 2)
    checks.number(noise, "spiral: noise", at_least=0)
    checks.number(turns, "spiral: turns", above=0)
    rng = random.Random(checks.seed(seed, "spiral: seed"))
    X, y = [], []
    for count, shift, label in ((n // 2, 0.0, 0.0), (n - n // 2, math.pi, 1.0)):
        for i in range(count):
            r = (i + 1) / count  # from near the centre out to 1
            t = 2 * math.pi * turns * r + shift
            X.append([r * math.cos(t) + rng.gauss(0.0, noise), r * math.sin(t) + rng.gauss(0.0, noise)])
            y.append(label)
    return X, y


def read_text(path: PathLike, max_bytes: int = MAX_BYTES, encoding: str = "utf-8") -> str:
    """The text of the file at ``path``, reading at most ``max_bytes`` (64 MiB by default): a larger file,
    or an endless one such as ``/dev/zero``, is a ValueError naming it, as is one that is not UTF-8 text."""
    source = os.fspath(path)
    data = bytearray()  # grown a chunk at a time: read(max_bytes + 1) would set aside max_bytes whatever the size
    with open(source, "rb") as f:
        while len(data) <= max_bytes and (chunk := f.read(min(_CHUNK, max_bytes + 1 - len(data)))):
            data += chunk
    if len(data) > max_bytes:
        raise ValueError(f"{source}: larger than {_size(max_bytes)}, more than microgd reads "
                         "(an endless input such as /dev/zero?)")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise ValueError(f"{source}: not a UTF-8 text file (byte {error.start})") from None


def _size(n: int) -> str:
    """A byte count for a message: MiB from one up."""
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def load_csv(path: PathLike, target: str | int | None = None, max_bytes: int = MAX_BYTES):
    """Read a CSV file of numbers with a header line.

    Without ``target``: ``(header, rows)``. With ``target`` (a column name or index):
    ``(X, y, names)`` where ``y`` is that column, ``X`` the other columns and ``names`` their
    headers. Blank lines are skipped and cells are stripped; anything else that is not a finite
    number, or a row of the wrong length, is a ValueError naming the file and line. At most
    ``max_bytes`` are read (:func:`read_text`).
    """
    source = os.fspath(path)
    header, rows = read_csv(read_text(source, max_bytes, "utf-8-sig"), source)
    if target is None:
        return header, rows
    if isinstance(target, str):
        if header.count(target) != 1:
            found = "is not a column" if target not in header else "names more than one column"
            raise ValueError(f"{source}: target {target!r} {found} (columns: {', '.join(header)})")
        k = header.index(target)
    elif checks.is_whole(target) and -len(header) <= target < len(header):
        k = target % len(header)
    else:
        raise ValueError(f"{source}: target must be a column name or an index below {len(header)}, got {target!r}")
    X = [row[:k] + row[k + 1:] for row in rows]
    y = [row[k] for row in rows]
    return X, y, header[:k] + header[k + 1:]


def read_csv(text: str, source: str = "CSV") -> tuple[list[str], Rows]:
    """The header and the rows of numbers of CSV ``text``, checked as :func:`load_csv` checks a file (its
    messages name ``source`` and the line); a leading byte order mark is skipped.

        >>> read_csv("x1,x2,z\\n0.5,1,2\\n\\n3,4,5\\n")
        (['x1', 'x2', 'z'], [[0.5, 1.0, 2.0], [3.0, 4.0, 5.0]])
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = None
    rows = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            cells = [c.strip() for c in cells]
            if header is None:
                header = cells
                continue
            if len(cells) != len(header):
                raise ValueError(f"{source} line {reader.line_num}: {len(cells)} values, "
                                 f"expected {len(header)} ({', '.join(header)})")
            rows.append([_cell(c, name, source, reader.line_num) for c, name in zip(cells, header)])
    except csv.Error as error:
        raise ValueError(f"{source}: malformed CSV: {error}") from None
    if header is None:
        raise ValueError(f"{source}: empty file (expected a header line, then rows of numbers)")
    if not rows:
        raise ValueError(f"{source}: has a header but no rows of data")
    return header, rows


def _cell(text: str, column: str, source: str, line: int) -> float:
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"{source} line {line}: column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{source} line {line}: column {column!r}: {text!r} is not a finite number")
    return x
