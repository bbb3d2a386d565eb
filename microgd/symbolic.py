"""Symbols: a small number type whose arithmetic builds expression trees, so that the registry's rules,
run on symbols, give derivatives as formulas (for explanations) and as source code (for the tape).

An expression is a variable, a number or a registry op applied to expressions. Building one applies a
light simplification, every step of which is exact in floating point: numbers are folded (with the op's
own forward, so domain errors still raise), ``x·1``, ``x + 0``, ``0·x``, ``--x`` and ``x ** 1`` drop away,
``x + x`` becomes ``2·x``, ``-1·x`` becomes ``-x`` and ``-(2·x)`` becomes ``-2·x``. Equal expressions are
one object (hash-consed), so ``x + x`` is seen whichever way the two halves were made. It is not a computer
algebra system: nothing is expanded, factored or reordered.

    >>> from microgd import Value
    >>> from microgd.engine import local_step
    >>> y = Value(0.5).sigmoid()                    # sigmoid's rule, run on symbols: y as "y", its input as "x"
    >>> (d,) = local_step(y, 1.0, value=lambda v: Symbol.variable("y" if v is y else "x"))
    >>> d.formula(), d.text()
    ('y * (1.0 - y)', 'y(1 − y)')
    >>> x, g = Symbol.variable("x"), Symbol.variable("g")
    >>> (x * x + x * x).formula(), (g * 1.0 + 0.0).formula()
    ('2.0 * (x * x)', 'g')
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Union

from . import rules
from .rules import ATOM, PREFIX, Op, Piece, render

__all__ = ["Symbol", "Expr", "evaluate", "printed"]

Expr = Union["Symbol", float]
"""What symbolic arithmetic returns: a Symbol, or a plain float when everything folded to a number."""

_interned: weakref.WeakValueDictionary[tuple, Symbol] = weakref.WeakValueDictionary()


class Symbol:
    """A variable, or a registry op applied to expressions (Symbols or floats). Build them with
    :meth:`variable` and arithmetic; print them with :meth:`formula`, :meth:`text` and :meth:`latex`."""

    __slots__ = ("op", "args", "name", "__weakref__")

    op: Op | None
    args: tuple[Expr, ...]
    name: str

    @classmethod
    def variable(cls, name: str) -> Symbol:
        """The variable called ``name`` (one object per name)."""
        return _make(None, (), name)

    @property
    def is_variable(self) -> bool:
        return self.op is None

    # -- arithmetic: each operator applies its registry op --

    def __add__(self, other: Any) -> Expr:
        return apply(rules.add, (self, other))

    def __radd__(self, other: Any) -> Expr:
        return apply(rules.add, (other, self))

    def __sub__(self, other: Any) -> Expr:
        return apply(rules.subtract, (self, other))

    def __rsub__(self, other: Any) -> Expr:
        return apply(rules.subtract, (other, self))

    def __mul__(self, other: Any) -> Expr:
        return apply(rules.multiply, (self, other))

    def __rmul__(self, other: Any) -> Expr:
        return apply(rules.multiply, (other, self))

    def __truediv__(self, other: Any) -> Expr:
        return apply(rules.divide, (self, other))

    def __rtruediv__(self, other: Any) -> Expr:
        return apply(rules.divide, (other, self))

    def __pow__(self, other: Any) -> Expr:
        return apply(rules.power if isinstance(other, Symbol) else rules.powc, (self, other))

    def __rpow__(self, other: Any) -> Expr:
        return apply(rules.power, (other, self))

    def __neg__(self) -> Expr:
        return apply(rules.negate, (self,))

    @classmethod
    def _microgd_apply_op(cls, op: Op, inputs: tuple) -> Expr:
        """How a registry op called on symbols builds an expression (``sigmoid(x)``, ``step(x)``)."""
        return apply(op, inputs)

    # -- reading and printing --

    def walk(self) -> Iterator[Symbol]:
        """Every sub-expression once, operands before the expressions that use them, ``self`` last."""
        seen: set[int] = set()
        order: list[Symbol] = []
        stack: list[tuple[Symbol, bool]] = [(self, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((a, False) for a in reversed(node.args) if isinstance(a, Symbol))
        return iter(order)

    def formula(self, names: Mapping[Symbol, str] | None = None) -> str:
        """In the formula language (which is also Python): ``2.0 * (y - t)``."""
        return _print(self, "formula", names).text

    def text(self, names: Mapping[Symbol, str] | None = None) -> str:
        """In Unicode math: ``2(y − t)``, ``σ(s)``, ``[x > 0]``."""
        return _print(self, "text", names).text

    def latex(self, names: Mapping[Symbol, str] | None = None) -> str:
        r"""In LaTeX: ``2 \left(y - t\right)``."""
        return _print(self, "latex", names).text

    def __repr__(self) -> str:
        return f"Symbol({self.formula()!r})"


def _make(op: Op | None, args: tuple[Expr, ...], name: str = "") -> Symbol:
    """The one Symbol for ``op(*args)`` (or the variable ``name``), made once and then shared."""
    key = ("variable", name) if op is None else (op, *[id(a) if isinstance(a, Symbol) else a.hex() for a in args])
    found = _interned.get(key)
    if found is None:
        found = object.__new__(Symbol)
        found.op, found.args, found.name = op, args, name
        _interned[key] = found
    return found


def _number(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"symbolic arithmetic takes Symbols and numbers, got {type(x).__name__}: {x!r}")
    return float(x)


def apply(op: Op, inputs: tuple) -> Expr:
    """``op`` applied to symbols and numbers, simplified; a float when every input is a number."""
    args = tuple(x if isinstance(x, Symbol) else _number(x) for x in inputs)
    if not any(isinstance(a, Symbol) for a in args):
        return op.apply_to_numbers(*args)  # type: ignore[arg-type]  # every one is a float here
    simpler = _simplify(op, args)
    return simpler if simpler is not None else _make(op, args)


def _is(x: Expr, number: float) -> bool:
    return not isinstance(x, Symbol) and x == number


def _simplify(op: Op, args: tuple[Expr, ...]) -> Expr | None:
    """An exact simpler form of ``op(*args)``, or None. Every rewrite gives the same float for every finite input."""
    if op is rules.add:
        a, b = args
        if _is(a, 0.0):
            return b
        if _is(b, 0.0):
            return a
        if a is b:
            return apply(rules.multiply, (2.0, a))
        if isinstance(b, float) and b < 0:
            return apply(rules.subtract, (a, -b))
        if isinstance(b, Symbol) and b.op is rules.negate:
            return apply(rules.subtract, (a, b.args[0]))
    elif op is rules.subtract:
        a, b = args
        if _is(b, 0.0):
            return a
        if _is(a, 0.0):
            return apply(rules.negate, (b,))
        if isinstance(b, float) and b < 0:
            return apply(rules.add, (a, -b))
        if isinstance(b, Symbol) and b.op is rules.negate:
            return apply(rules.add, (a, b.args[0]))
    elif op is rules.multiply:
        a, b = args
        if _is(a, 0.0) or _is(b, 0.0):
            return 0.0
        if _is(a, 1.0):
            return b
        if _is(b, 1.0):
            return a
        if _is(a, -1.0):
            return apply(rules.negate, (b,))
        if _is(b, -1.0):
            return apply(rules.negate, (a,))
        if isinstance(a, Symbol) and a.op is rules.negate:
            return apply(rules.negate, (apply(rules.multiply, (a.args[0], b)),))
    elif op is rules.divide:
        if _is(args[1], 1.0):
            return args[0]
    elif op is rules.negate:
        (a,) = args
        if isinstance(a, Symbol) and a.op is rules.negate:
            return a.args[0]
        if isinstance(a, Symbol) and a.op is rules.multiply and not isinstance(a.args[0], Symbol):
            return apply(rules.multiply, (-a.args[0], a.args[1]))  # -(2x) is -2x, exactly
    elif op is rules.powc:
        if _is(args[1], 1.0):
            return args[0]
        if _is(args[1], 0.0):
            return 1.0
    return None


# -- printing ------------------------------------------------------------------------------------

def _number_piece(x: float, style: str) -> Piece:
    text = repr(x)
    if style != "formula" and text.endswith(".0"):
        text = text[:-2]
    if style == "text":
        text = text.replace("-", "−")
    if style == "latex" and "e" in text:
        mantissa, exponent = text.split("e")
        text = rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return Piece(text, PREFIX if x < 0 else ATOM, is_number=True)


def _variable_piece(name: str, style: str) -> Piece:
    if style == "latex" and not name.startswith("\\"):
        name = _latex_name(name)
    return Piece(name, ATOM)


def _latex_name(name: str) -> str:
    r"""A variable's name in LaTeX: ``w_1`` -> ``w_{1}``, ``x1`` -> ``x_{1}``, ``a_h1`` -> ``a_{h1}``,
    ``w_h1_2`` -> ``w_{h1,2}``, ``error`` -> ``\mathrm{error}``; other names with ``_`` escaped."""
    base, underscore, index = name.partition("_")
    found = re.fullmatch(r"([^\W\d_]+)(\d*)", base)
    if found is None or (found[2] and underscore) or (underscore and "" in index.split("_")):
        return name.replace("_", r"\_")
    letters, digits = found.groups()
    head = letters if len(letters) == 1 else rf"\mathrm{{{letters}}}"
    index = digits or index.replace("_", ",")
    return head + (f"_{{{index}}}" if index else "")


def printed(expr: Expr, style: str = "text", names: Mapping[Symbol, str] | None = None) -> Piece:
    """``expr``, a Symbol or a number, printed in ``style`` ("formula", "text" or "latex") as a
    :class:`~microgd.rules.Piece`, which knows its precedence (for a product of printed factors).

        >>> x = Symbol.variable("x")
        >>> [(p.text, p.precedence) for p in (printed(x + 1.0), printed(2.0), printed(-0.5, "latex"))]
        [('x + 1', 1), ('2', 5), ('-0.5', 3)]
    """
    if isinstance(expr, Symbol):
        return _print(expr, style, names)
    return _number_piece(_number(expr), style)


def _print(root: Symbol, style: str, names: Mapping[Symbol, str] | None) -> Piece:
    """Render iteratively (no recursion limit): every sub-expression becomes a Piece once."""
    pieces: dict[int, Piece] = {}

    def piece(x: Expr) -> Piece:
        return pieces[id(x)] if isinstance(x, Symbol) else _number_piece(x, style)

    for node in root.walk():
        if names is not None and node in names:
            pieces[id(node)] = _variable_piece(names[node], style)
        elif node.op is None:
            pieces[id(node)] = _variable_piece(node.name, style)
        else:
            template = getattr(node.op, style)
            pieces[id(node)] = Piece(render(template, [piece(a) for a in node.args]), node.op.precedence)
    return pieces[id(root)]


def evaluate(expr: Expr, values: Mapping[str, float], functions: Callable[[Op], Callable[..., Any]] | None = None
             ) -> Any:
    """The number ``expr`` stands for when each variable has its value in ``values`` (by name); ops run
    their forward on floats, or whatever ``functions(op)`` returns (e.g. an array version).

        >>> x = Symbol.variable("x")
        >>> evaluate(x * x + 1.0, {"x": 3.0})
        10.0
    """
    if not isinstance(expr, Symbol):
        return expr
    results: dict[int, Any] = {}
    for node in expr.walk():
        if node.op is None:
            if node.name not in values:
                raise KeyError(f"evaluate: no value for the variable {node.name!r}")
            results[id(node)] = values[node.name]
        else:
            f = node.op.apply_to_numbers if functions is None else functions(node.op)
            results[id(node)] = f(*[results[id(a)] if isinstance(a, Symbol) else a for a in node.args])
    return results[id(expr)]
