"""The one table printer: left-aligned columns two spaces apart, for the CLI, the demos and the checks;
``visible``, which every name printed from a file or an argument goes through; and ``number``, the one rule
for a number someone reads (a table, a summary line, a picture's label).

    >>> print(table(("name", "value"), [("w", 0.5), ("bias", -1)]))
      name  value
      w     0.5
      bias  -1
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["table", "visible", "number", "SIGNIFICANT"]

SIGNIFICANT = ".6g"
"""How a computed number is printed: 6 significant digits (a loss, a prediction, a gradient)."""


def number(x: float, spec: str | None = SIGNIFICANT) -> str:
    """``x`` as microgd prints every number a user reads: formatted with ``spec``, and never a negative zero.

    ``spec`` is a format spec: :data:`SIGNIFICANT` (6 significant digits) for what microgd computes, a
    picture's fixed ``number_format`` (".4f") for its labels. ``None`` is for a number the user wrote (a cell
    of their CSV file, a ``--var``): echoed exactly, as the shortest text that reads back as the same float,
    a whole number without ".0". A zero prints without a sign: -0.0, and a negative number too small for
    ``spec``'s digits, print as 0 (``0.0000``), never ``-0`` or ``-0.0000``.

        >>> number(85.53712351780982), number(70.0), number(-0.0), number(-0.00001, ".4f")
        ('85.5371', '70', '0', '0.0000')
        >>> number(70.0, None), number(1e2, None), number(0.1 + 0.2, None), number(-0.0, None)
        ('70', '100', '0.30000000000000004', '0')
    """
    if spec is None:
        x = float(x)
        if x == 0:
            return "0"
        if x.is_integer() and abs(x) < 2**53:
            return str(int(x))
        return repr(x)
    text = format(x, spec)
    if math.isfinite(x) and _all_zeros(text):
        text = format(0.0, spec)  # the same width, fill, sign option and digits, for an unsigned zero
    return text


def _all_zeros(text: str) -> bool:
    """Whether the digits of ``text``'s significand (before any exponent) are all 0: it shows a zero."""
    significand = text.split("e")[0].split("E")[0]
    digits = [c for c in significand if c.isdigit()]
    return bool(digits) and all(c == "0" for c in digits)


def visible(text: str) -> str:
    r"""``text`` safe to print on a terminal: every character that is not printable (a control character such as
    ESC or BEL, which a terminal would obey, a line break, a bidirectional override, a byte that was not UTF-8)
    written as its Python escape; everything else as it is.

        >>> print(visible("price\x1b]0;owned\x07 in €\n"))
        price\x1b]0;owned\x07 in €\n
    """
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def table(header: Sequence[object] | None, rows: Sequence[Sequence[object]], indent: int = 2) -> str:
    """``header`` (None for none) then ``rows`` in left-aligned columns two spaces apart, every line
    indented by ``indent`` spaces and stripped of trailing blanks; cells are printed with ``str``, made
    :func:`visible`.

        >>> print(table(None, [("engine:", 0.25), ("formula:", 0.235)], indent=0))
        engine:   0.25
        formula:  0.235
    """
    lines = [[visible(str(cell)) for cell in row] for row in ([header] if header is not None else []) + list(rows)]
    widths = [max(map(len, column)) for column in zip(*lines)]
    return "\n".join(" " * indent + "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)
