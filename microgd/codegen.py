"""Generated code without user strings: the one naming function, and expressions printed as Python whose op
functions and odd constants reach the code through a namespace, never by their names or reprs.

Every identifier a generator prints comes from :meth:`Namespace.name`: a valid identifier in the form Python
reads it (NFKC, so no two names the generator keeps apart can become one variable), never a keyword, a
builtin or a name already given. A wanted name (a label, a parameter) is only a suggestion: it is
normalised, its other characters become ``_``, and it is numbered on a clash. An op is called by the name
the namespace gave it, bound to the op's own function; ``nan``, ``inf`` and ``-0.0`` are constants of the
namespace too. The arithmetic ops print as Python's operators (:data:`OPERATORS`).

    >>> from microgd.symbolic import Symbol
    >>> names = Namespace(reserved={"captured"})
    >>> names.name("x²", "v"), names.name("x2", "v"), names.name("lambda", "v"), names.name("captured", "v")
    ('x2', 'x2_1', 'lambda_', 'captured_1')
    >>> x = Symbol.variable("x")
    >>> names.python(rules.sigmoid(x) * 2.0 + float("inf"), {x: "x"})
    'sigmoid(x) * 2.0 + inf'
    >>> names.constants, names.functions
    ({'inf': inf}, {'sigmoid': <microgd op 'sigmoid'>})
"""

from __future__ import annotations

import builtins
import keyword
import math
import unicodedata
from collections.abc import Iterable, Mapping

from . import rules
from .rules import ATOM, PREFIX, Op, Piece, render
from .symbolic import Expr, Symbol

__all__ = ["Namespace", "OPERATORS", "comment"]

OPERATORS = (rules.add, rules.subtract, rules.multiply, rules.divide, rules.negate, rules.power, rules.powc,
             rules.cpow, rules.weighted_sum)
"""The ops printed as Python's operators (their built-in templates), which compute their forwards on floats
wherever those are defined (``weighted_sum`` as its products added left to right, as its forward adds them).
Outside, Python raises an ArithmeticError (``x / 0``, ``0.0 ** -1``) or gives what no number check lets
through (``(-8.0) ** 0.5`` is complex): the code that runs generated source checks its results and asks the
engine, which names the op. Every other op is a call of its own function."""

_LONGEST = 32  # characters kept of a wanted name
_PYTHON = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))


class Namespace:
    """The names of one piece of generated code and the objects they stand for: ``functions`` (name -> Op)
    and ``constants`` (name -> float), to be bound when the code is run."""

    def __init__(self, reserved: Iterable[str] = ()):
        self.taken: set[str] = set(_PYTHON) | set(reserved)
        self.functions: dict[str, Op] = {}
        self.constants: dict[str, float] = {}
        self._function_names: dict[Op, str] = {}
        self._constant_names: dict[str, str] = {}

    def name(self, wanted: str, fallback: str) -> str:
        """A new identifier, from ``wanted`` where it can be (else ``fallback``, which must be an ASCII
        identifier), unique in this namespace."""
        base = _identifier(wanted) or fallback
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def function(self, op: Op) -> str:
        """The name under which ``op`` is called in the code (its entry is ``functions[name]``)."""
        found = self._function_names.get(op)
        if found is None:
            found = self._function_names[op] = self.name(op.name, "op")
            self.functions[found] = op
        return found

    def constant(self, x: float) -> str:
        """The name of a number that has no literal: nan, inf, -inf, -0.0."""
        key = repr(x) if x == x else "nan"
        found = self._constant_names.get(key)
        if found is None:
            wanted = {"nan": "nan", "inf": "inf", "-inf": "minus_inf", "-0.0": "minus_zero"}[key]
            found = self._constant_names[key] = self.name(wanted, "constant")
            self.constants[found] = x
        return found

    def python(self, expr: Expr, variables: Mapping[Symbol, str]) -> str:
        """``expr`` as a Python expression; every variable in it must have its name in ``variables``."""
        return self._piece(expr, variables).text

    def _piece(self, expr: Expr, variables: Mapping[Symbol, str]) -> Piece:
        if not isinstance(expr, Symbol):
            return self._number(float(expr))
        pieces: dict[int, Piece] = {}
        for node in expr.walk():
            if node in variables:
                piece = Piece(variables[node])
            elif node.op is None:
                raise KeyError(f"generated code: the variable {node.name!r} has no name")
            else:
                args = [pieces[id(a)] if isinstance(a, Symbol) else self._number(a) for a in node.args]
                if node.op in OPERATORS:
                    piece = Piece(render(node.op.formula, args), node.op.precedence)
                else:
                    piece = Piece(f"{self.function(node.op)}({', '.join(a.text for a in args)})", ATOM)
            pieces[id(node)] = piece
        return pieces[id(expr)]

    def _number(self, x: float) -> Piece:
        if not math.isfinite(x) or (x == 0.0 and math.copysign(1.0, x) < 0):
            return Piece(self.constant(x))
        return Piece(repr(x), PREFIX if x < 0 else ATOM, is_number=True)


def _identifier(wanted: str) -> str:
    """``wanted`` as an identifier in the form Python reads it, other characters as ``_``; '' if nothing is left."""
    text = unicodedata.normalize("NFKC", wanted)[:_LONGEST]
    text = "".join(c if ("a" + c).isidentifier() else "_" for c in text).strip("_")
    if text and not text.isidentifier():  # a digit first
        text = f"v_{text}"
    if not text or unicodedata.normalize("NFKC", text) != text:
        return ""
    return f"{text}_" if keyword.iskeyword(text) or keyword.issoftkeyword(text) else text


def comment(text: str) -> str:
    """A label for a comment of generated code: shown as a Python string (escaped, on one line), shortened."""
    shown = repr(text[:_LONGEST] + ("…" if len(text) > _LONGEST else ""))
    return shown.encode("ascii", "backslashreplace").decode("ascii")

