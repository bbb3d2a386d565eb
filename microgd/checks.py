"""The input checks every public function shares: a finite number (in an interval), a whole number, a seed.

Each check returns the value it accepted and otherwise raises one :class:`ArgumentError` whose one-line
message names what was checked (the caller and the option) and the value it got:

    >>> number(0.5, "SGD lr", above=0.0), whole(3, "fit: epochs", 0)
    (0.5, 3)
    >>> number(1.0, "SGD momentum", at_least=0.0, below=1.0)
    Traceback (most recent call last):
    ...
    microgd.checks.ArgumentError: SGD momentum must be a finite number in [0.0, 1.0), got 1.0

A bool is not a number here (``True`` is 1 to Python, but never what was meant); an int is.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, TypeGuard

__all__ = ["ArgumentError", "is_real", "is_whole", "number", "whole", "seed"]


class ArgumentError(ValueError, TypeError):
    """An argument of the wrong kind or out of range; the message names the option and the value given.

    Both a ValueError and a TypeError, so code that caught either before the checks were shared still does."""


def is_real(x: Any) -> TypeGuard[float]:
    """Is ``x`` a real number: an int or a float (numpy's too, any ``numbers.Real``), not a bool? (A type
    checker reads it as ``float``, which stands for every real number in Python's typing.)"""
    return type(x) in (float, int) or (isinstance(x, numbers.Real) and not isinstance(x, bool))


def is_whole(n: Any) -> TypeGuard[int]:
    """Is ``n`` a whole number: an int (numpy's too, any ``numbers.Integral``), not a bool?"""
    return type(n) is int or (isinstance(n, numbers.Integral) and not isinstance(n, bool))


def number(x: Any, what: str, *, above: float | None = None, at_least: float | None = None,
           below: float | None = None, at_most: float | None = None, note: str = "") -> float:
    """``x`` as a float: a finite real number, inside the bounds given (``above``/``below`` exclude the bound,
    ``at_least``/``at_most`` include it). ``note`` says why the bounds are what they are.

        >>> number(2, "two_moons: noise", at_least=0)
        2.0
        >>> number(True, "run_tutorial2: lr", above=0)
        Traceback (most recent call last):
        ...
        microgd.checks.ArgumentError: run_tutorial2: lr must be a finite number > 0, got True
    """
    try:
        value = float(x) if is_real(x) else math.nan
    except OverflowError:  # an int beyond the float range
        value = math.inf
    if not (math.isfinite(value) and (above is None or value > above) and (at_least is None or value >= at_least)
            and (below is None or value < below) and (at_most is None or value <= at_most)):
        low, high = (above if above is not None else at_least), (below if below is not None else at_most)
        bounds = _bounds(low, above is not None, high, below is not None)
        why = f" ({note})" if note else ""
        raise ArgumentError(f"{what} must be a finite number{bounds}{why}, got {_shown(x)}")
    return value


def whole(n: Any, what: str, least: int | None = None) -> int:
    """``n`` as an int: a whole number, at least ``least`` when given.

        >>> whole(-1, "explain: inline", 0)
        Traceback (most recent call last):
        ...
        microgd.checks.ArgumentError: explain: inline must be a whole number >= 0, got -1
    """
    if not is_whole(n) or (least is not None and n < least):
        bound = "" if least is None else f" >= {least}"
        raise ArgumentError(f"{what} must be a whole number{bound}, got {_shown(n)}")
    return int(n)


def seed(x: Any, what: str) -> int | None:
    """A seed for ``random.Random``: a whole number, or None (Python's global ``random``)."""
    if x is not None and not is_whole(x):
        raise ArgumentError(f"{what} must be a whole number or None, got {_shown(x)}")
    return None if x is None else int(x)


def _bounds(low: float | None, open_low: bool, high: float | None, open_high: bool) -> str:
    """`` > 0``, `` <= 1``, `` in [0, 1)``: the bounds as a message states them ('' for none)."""
    if low is not None and high is not None:
        return f" in {'(' if open_low else '['}{low!r}, {high!r}{')' if open_high else ']'}"
    if low is not None:
        return f" {'>' if open_low else '>='} {low!r}"
    if high is not None:
        return f" {'<' if open_high else '<='} {high!r}"
    return ""


def _shown(x: Any) -> str:
    """``repr(x)`` for a message; an integer beyond the float range by its number of digits (its repr may be
    too long for Python to print)."""
    if not isinstance(x, int) or abs(x).bit_length() <= 1024:
        return repr(x)
    digits = math.floor(math.log10(abs(x))) + 1
    if 10 ** (digits - 1) > abs(x):  # log10 rounded up: log10(10 ** 400 - 1) is 400.0
        digits -= 1
    return f"{'a negative' if x < 0 else 'an'} integer of {digits} digits"
