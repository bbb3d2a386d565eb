"""Tutorial 2's gradient-descent table, recomputed by the engine, cell by cell against the tutorial.

f(x, y) = x^2 + y^2 from (3, 4) with eta = 0.1: each step x_new = x_old - eta * df/dx (and the same
for y), with df/dx and df/dy from backward(). Tutorial 2 (the MLP worked example) printed ten steps
to 4 decimals: seven of its cells carry its own rounding forward, one is cut off instead of rounded,
and the last three values of f are wrong.

    python demos/tutorial2_gradient_descent.py
"""

import math
import textwrap

from microgd import Value

ETA = 0.1
START = (3.0, 4.0)
COLUMNS = ("x_old", "df/dx", "x_new", "y_old", "df/dy", "y_new", "f(x_new, y_new)")

# The tutorial's table as printed (row 0 is the starting point; "" where it left a cell blank).
PRINTED_TABLE = [
    ("", "", "3.0000", "", "", "4.0000", "25.0000"),
    ("3.0000", "6.0000", "2.4000", "4.0000", "8.0000", "3.2000", "16.0000"),
    ("2.4000", "4.8000", "1.9200", "3.2000", "6.4000", "2.5600", "10.2400"),
    ("1.9200", "3.8400", "1.5360", "2.5600", "5.1200", "2.0480", "6.5536"),
    ("1.5360", "3.0720", "1.2288", "2.0480", "4.0960", "1.6384", "4.1943"),
    ("1.2288", "2.4576", "0.9830", "1.6384", "3.2768", "1.3107", "2.6844"),
    ("0.9830", "1.9660", "0.7864", "1.3107", "2.6214", "1.0486", "1.7179"),
    ("0.7864", "1.5728", "0.6291", "1.0486", "2.0972", "0.8389", "1.0995"),
    ("0.6291", "1.2582", "0.5033", "0.8389", "1.6778", "0.6711", "0.7140"),
    ("0.5033", "1.0066", "0.4027", "0.6711", "1.3422", "0.5369", "0.3579"),
    ("0.4027", "0.8054", "0.3222", "0.5369", "1.0738", "0.4295", "0.2294"),
]


def f(x, y):
    return x ** 2 + y ** 2


def descend(steps: int) -> list:
    """Rows (x_old, df/dx, x_new, y_old, df/dy, y_new, f(x_new, y_new)) of gradient descent by the engine."""
    x, y = START
    rows = [(None, None, x, None, None, y, f(Value(x), Value(y)).data)]
    for _ in range(steps):
        xv, yv = Value(x, label="x"), Value(y, label="y")
        f(xv, yv).backward()
        x_new, y_new = x - ETA * xv.grad, y - ETA * yv.grad
        rows.append((x, xv.grad, x_new, y, yv.grad, y_new, f(Value(x_new), Value(y_new)).data))
        x, y = x_new, y_new
    return rows


def from_printed_cells(row: tuple, column: int) -> float | None:
    """The cell recomputed from the tutorial's own (rounded) cells of the same row, where that is possible."""
    cells = [float(c) if c else None for c in row]
    x_old, dx, x_new, y_old, dy, y_new, _ = cells
    if column == 1 and x_old is not None:
        return 2 * x_old
    if column == 2 and x_old is not None:
        return x_old - ETA * dx
    if column == 4 and y_old is not None:
        return 2 * y_old
    if column == 5 and y_old is not None:
        return y_old - ETA * dy
    if column == 6:
        return x_new ** 2 + y_new ** 2
    return None


def diagnose(printed: tuple, column: int, correct: float) -> str:
    """Why the tutorial's cell differs from the correct value rounded to 4 decimals."""
    own = from_printed_cells(printed, column)
    if own is not None and f"{own:.4f}" == printed[column]:
        return "rounding carried over from the tutorial's own 4-decimal cells"
    if f"{math.floor(correct * 1e4) / 1e4:.4f}" == printed[column]:
        return "cut off after 4 decimals instead of rounded"
    return "wrong"


def main() -> None:
    print("\n".join(textwrap.wrap(__doc__.split("\n\n")[1].replace("\n", " "), 100)))
    print()
    rows = descend(len(PRINTED_TABLE) - 1)
    errata = []
    print(f"{'step':>4}  " + "  ".join(f"{c:>8}" for c in COLUMNS[:-1]) + f"  {'f':>8}  the tutorial printed")
    for k, (row, printed) in enumerate(zip(rows, PRINTED_TABLE)):
        cells = ["" if v is None else f"{v:.4f}" for v in row]
        differ = [i for i, (ours, theirs) in enumerate(zip(cells, printed)) if ours != theirs]
        note = "same" if not differ else ", ".join(f"{COLUMNS[i]} {printed[i]} (x)" for i in differ)
        print(f"{k:>4}  " + "  ".join(f"{c:>8}" for c in cells) + f"  {note}")
        errata.extend((k, i, printed[i], row[i], diagnose(printed, i, row[i])) for i in differ)
    cells = sum(1 for printed in PRINTED_TABLE for c in printed if c)
    print(f"\n{len(errata)} of the tutorial's {cells} numbers differ from the engine's, rounded to 4 decimals:")
    for k, i, printed, correct, why in errata:
        print(f"  step {k:>2} {COLUMNS[i]:<15} tutorial {printed}  correct {correct:.8f} ({correct:.4f}): {why}")
    x, y = rows[-1][2], rows[-1][5]
    print(f"\nEvery step multiplies x and y by 1 - 2*eta = 0.8 and f by 0.64. After {len(rows) - 1} steps:\n"
          f"  x = {x:.10f}  (3 * 0.8^10  = {3 * 0.8 ** 10:.10f})\n"
          f"  y = {y:.10f}  (4 * 0.8^10  = {4 * 0.8 ** 10:.10f})\n"
          f"  f = {rows[-1][6]:.10f}  (25 * 0.64^10 = {25 * 0.64 ** 10:.10f})")


if __name__ == "__main__":
    main()
