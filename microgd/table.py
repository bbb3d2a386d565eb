"""The one table printer: left-aligned columns two spaces apart, for the CLI, the demos and the checks; and
``visible``, which every name printed from a file or an argument goes through.

    >>> print(table(("name", "value"), [("w", 0.5), ("bias", -1)]))
      name  value
      w     0.5
      bias  -1
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["table", "visible"]


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
