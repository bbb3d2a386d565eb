"""The one table printer: left-aligned columns two spaces apart, for the CLI, the demos and the checks.

    >>> print(table(("name", "value"), [("w", 0.5), ("bias", -1)]))
      name  value
      w     0.5
      bias  -1
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["table"]


def table(header: Sequence[object] | None, rows: Sequence[Sequence[object]], indent: int = 2) -> str:
    """``header`` (None for none) then ``rows`` in left-aligned columns two spaces apart, every line
    indented by ``indent`` spaces and stripped of trailing blanks; cells are printed with ``str``.

        >>> print(table(None, [("engine:", 0.25), ("formula:", 0.235)], indent=0))
        engine:   0.25
        formula:  0.235
    """
    lines = [[str(cell) for cell in row] for row in ([header] if header is not None else []) + list(rows)]
    widths = [max(map(len, column)) for column in zip(*lines)]
    return "\n".join(" " * indent + "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)
