"""The op registry: everything about an op in one entry, and :func:`define_op`, its front door.

The rule convention, stated once for every entry:

* ``forward(*inputs) -> float`` computes the op on plain floats and raises :class:`DomainError`
  (naming the op and the operand) outside the op's domain.
* ``vjp(g, out, *inputs) -> tuple`` returns one entry per input: the upstream gradient ``g`` times
  d out / d input. It is plain arithmetic plus calls of registry ops (``step``, ``sign``, ``log``,
  ``xlogy``, ...), never ``math.*`` and never a branch on an input's value, so the same rule runs on
  floats (first-order backward), on Values (a differentiable gradient graph, any order), on the
  symbols of :mod:`microgd.symbolic` (formulas, the tape's source) and on arrays. Like JAX's
  ``defjvp2`` a rule gets the result ``out`` and reuses it where that is cheaper (exp, tanh, sigmoid).
* ``constants``: inputs that are always plain numbers (the exponent of ``x ** 2``), never
  differentiated: their entry in the vjp is 0, as PyTorch's derivatives.yaml marks such inputs.

Calling an op dispatches on its inputs: numbers give a float (``exp(0.0) == 1.0``), a Value gives a
Value node, a symbol gives a symbol. A number type joins by defining ``_microgd_apply_op(op, inputs)``.

How an op prints: ``formula`` (the formula language, which is also the tape's Python), ``text``
(Unicode math) and ``latex`` are templates with ``{0}``, ``{1}``, ... for the inputs. ``{0:2}`` asks
for input 0 at precedence 2 or higher (see SUM ... ATOM below), else it is put in parentheses; a bare
``{0}`` is already grouped by the template (a call's parentheses, LaTeX braces). A template may also be
a function of the inputs' printed pieces (``weighted_sum`` takes any number of inputs).

    >>> OPS["tanh"].vjp(1.0, 0.0, 0.0)
    (1.0,)
    >>> exp(0.0), step(-2.0), sign(-2.0)
    (1.0, 0.0, -1.0)
"""

from __future__ import annotations

import functools
import inspect
import keyword
import math
import operator
import os
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Union

__all__ = ["Op", "OPS", "define_op", "DomainError", "RuleError", "Piece", "render", "SUM", "PRODUCT", "PREFIX", "POWER",
           "ATOM"]

# Precedence of a printed expression, lowest first (Python's order for the operators it shares).
SUM, PRODUCT, PREFIX, POWER, ATOM = 1, 2, 3, 4, 5

Template = Union[str, Callable[..., str]]
Interval = tuple[float, float]


class DomainError(ArithmeticError, ValueError):
    """An op was applied outside its domain, e.g. ``log(-1)`` or ``x / 0``; the message names op and operands."""


class Op:
    """One registry entry: an op's forward, its vjp rule, and how every view shows it. Call it to apply it.

    Made by :func:`define_op`; read by the engine, pictures, the formula parser, the symbolic views
    and ``microgd.testing`` (``domain``: an interval per input that random tests draw from;
    ``kinks``: points where the op is not smooth, which tests keep away from; ``torch``: a function of the
    torch module that builds the op as a ``torch.nn`` module, for ``MLP.to_torch``).
    """

    __slots__ = ("name", "forward", "vjp", "arity", "symbol", "formula", "text", "latex", "precedence",
                 "domain", "kinks", "constants", "array", "function", "defined_at", "torch")

    def __init__(self, name: str, forward: Callable[..., float], vjp: Callable[..., tuple], arity: int | None,
                 symbol: str, formula: Template, text: Template, latex: Template, precedence: int,
                 domain: tuple[Interval, ...], kinks: tuple[float, ...], constants: tuple[int, ...],
                 array: Callable[..., Any] | None, function: bool, defined_at: str,
                 torch: Callable[[Any], Any] | None):
        self.name, self.forward, self.vjp, self.arity = name, forward, vjp, arity
        self.symbol, self.formula, self.text, self.latex, self.precedence = symbol, formula, text, latex, precedence
        self.domain, self.kinks, self.constants, self.array = domain, kinks, constants, array
        self.function = function  # written name(...) in the formula language
        self.defined_at = defined_at
        self.torch = torch

    def __call__(self, *inputs: Any) -> Any:
        for x in inputs:
            if type(x) is not float:
                apply = getattr(type(x), "_microgd_apply_op", None)
                if apply is not None:
                    return apply(self, inputs)
        return self.apply_to_numbers(*inputs)

    def apply_to_numbers(self, *inputs: float) -> float:
        """``forward`` on plain numbers, its result checked: an inf or nan result is a DomainError."""
        if self.arity is not None and len(inputs) != self.arity:
            raise TypeError(f"{self.name} takes {self.arity} input(s), got {len(inputs)}")
        try:
            result = self.forward(*inputs)
            finite = math.isfinite(result)
        except TypeError:
            stranger = next((x for x in inputs if not _is_real(x)), None)
            if stranger is None:
                raise
            raise not_a_number(self.name, stranger) from None
        if not finite:
            raise non_finite(self.name, result, inputs)
        return float(result)

    def __repr__(self) -> str:
        return f"<microgd op {self.name!r}>"


class Piece:
    """An operand already printed, with its precedence: ``f"{piece:2}"`` puts it in parentheses when
    its precedence is below 2, which is how the registry's templates ask for grouping."""

    __slots__ = ("text", "precedence", "is_number")

    def __init__(self, text: str, precedence: int = ATOM, is_number: bool = False):
        self.text, self.precedence, self.is_number = text, precedence, is_number

    def __format__(self, spec: str) -> str:
        return f"({self.text})" if spec and self.precedence < int(spec) else self.text

    def __str__(self) -> str:
        return self.text


def render(template: Template, pieces: list[Piece] | tuple[Piece, ...]) -> str:
    """Fill one of an op's templates (``op.formula``, ``op.text``, ``op.latex``) with printed inputs.

        >>> render(OPS["*"].formula, [Piece("a + b", SUM), Piece("c")])
        '(a + b) * c'
    """
    return template(*pieces) if callable(template) else template.format(*pieces)


def non_finite(name: str, result: float, inputs: tuple) -> DomainError:
    """The error for an op whose result is inf or nan although its inputs are finite."""
    operands = ", ".join(repr(getattr(x, "data", x)) for x in inputs)
    return DomainError(f"{name}: the result is {result!r} for the operand(s) {operands}, not a finite number")


def _is_real(x: Any) -> bool:
    """``x`` is a real number to the ops: anything ``float()`` takes as one (numpy's and torch's scalars too), but
    not a string or a complex number."""
    return type(x) is float or (hasattr(x, "__float__") and not isinstance(x, (str, bytes, complex)))


def not_a_number(name: str, x: Any) -> TypeError:
    """The error for op ``name`` given ``x``, neither a real number nor a microgd Value (micrograd's Value, a
    string): refused where it is given, rather than failing later inside backward."""
    kind = type(x)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return TypeError(f"{name}: an input is a {module}{kind.__qualname__}, not a real number or a microgd Value")


class RuleError(TypeError):
    """An op's vjp rule broke the convention above (e.g. returned the wrong number of entries)."""


def checked_contributions(op: Op, contributions: Any, inputs: Sequence[Any], numbers: tuple[type, ...]) -> tuple:
    """A rule's result held to the convention: a tuple or list, one entry per input, each a finite number of
    the number type the rule was given (``numbers``). ``inputs``: the node's inputs, named in messages."""
    if not isinstance(contributions, (tuple, list)):
        raise RuleError(f"the vjp rule of op {op.name!r} returned a {type(contributions).__name__}, not a tuple "
                        f"of {len(inputs)} entries (one contribution per input)")
    if len(contributions) != len(inputs):
        raise RuleError(f"the vjp rule of op {op.name!r} returned {len(contributions)} entries for {len(inputs)} "
                        f"inputs (one contribution per input, in order)")
    for k, c in enumerate(contributions):
        if isinstance(c, bool) or not isinstance(c, numbers):
            raise RuleError(f"the vjp rule of op {op.name!r} returned a {type(c).__name__} as entry {k + 1}, "
                            f"not a number: {c!r}")
        if not is_finite(c):
            raise DomainError(f"backward of {applied(op, inputs)}: its contribution to input {k + 1} is "
                              f"{number_of(c)!r}, not a finite number")
    return tuple(contributions)


def rule_failure(op: Op, inputs: Sequence[Any], error: Exception, kind: str) -> Exception:
    """What a rule that raised ``error`` on numbers of type ``kind`` is: a DomainError when its arithmetic left
    the numbers (a division by zero, an overflow), else a RuleError naming the op."""
    if isinstance(error, ArithmeticError):
        return DomainError(f"backward of {applied(op, inputs)}: the derivative is not a finite number ({error})")
    return RuleError(f"the vjp rule of op {op.name!r} failed on {kind} inputs: {type(error).__name__}: {error}")


def applied(op: Op, inputs: Sequence[Any]) -> str:
    """``op(1.0, 2.5)``: an op and its operands, for messages."""
    return f"{op.name}({', '.join(repr(number_of(x)) for x in inputs)})"


def number_of(x: Any) -> Any:
    """A number's float: a Value's ``data``, a float itself (other number types as they are)."""
    data = getattr(x, "data", x)
    return data if isinstance(data, float) else x


def is_finite(x: Any) -> bool:
    """A float (or a Value's data) is finite; other number types (symbols) are checked where they fold."""
    number = number_of(x)
    return not isinstance(number, float) or math.isfinite(number)


_REGISTRY: dict[str, Op] = {}
OPS: Mapping[str, Op] = MappingProxyType(_REGISTRY)
"""Every op by name, built-in and defined, read-only: change it through :func:`define_op`."""


def define_op(name: str, forward: Callable[..., float], vjp: Callable[..., tuple], *, symbol: str | None = None,
              latex: Template | None = None, text: Template | None = None, formula: Template | None = None,
              precedence: int = ATOM, domain: tuple[Interval, ...] | None = None, kinks: tuple[float, ...] = (),
              constants: tuple[int, ...] = (), array: Callable[..., Any] | None = None,
              torch: Callable[[Any], Any] | None = None) -> Op:
    """Add an op to the registry and return it: a function of Values, numbers or symbols.

    ``forward(*inputs)`` computes it on floats; ``vjp(g, out, *inputs)`` returns one gradient
    contribution per input, written with arithmetic and registry ops (see the module docstring).
    The arity comes from the vjp's signature (``*inputs`` for any number). ``symbol`` is what
    pictures show (default: the name), ``latex`` its LaTeX (a command such as ``r"\\cos"`` or a
    template), ``domain`` an interval per input for random tests (default: the real line).
    ``array(xp, *inputs)`` computes it on whole arrays, ``xp`` being numpy or torch (for the tape's
    batched replay; without it the forward runs element by element). ``torch(torch)`` builds the op as a
    module of PyTorch's own (``lambda torch: torch.nn.Tanh()``) for ``MLP.to_torch``; without it the
    module runs the ``array`` form.

        >>> import math
        >>> from microgd import Value
        >>> cube = define_op("cube", forward=lambda x: x ** 3, vjp=lambda g, out, x: (3 * g * x * x,))
        >>> y = cube(Value(2.0)); y.backward()
        >>> y.data, y.parents[0].grad, cube(2.0)
        (8.0, 12.0, 8.0)

    Defining a name twice is an error, except from the same line of the same file (a re-run notebook
    cell or module replaces its own definition).
    """
    where = _caller()
    _check_name(name, where)
    for role, f in (("forward", forward), ("vjp", vjp)):
        if not callable(f):
            raise TypeError(f"define_op({name!r}): {role} must be a function, got {type(f).__name__}")
    arity = _vjp_arity(name, vjp)
    _check_forward(name, forward, arity)
    domain = _check_domain(name, domain, arity)
    for i in constants:
        if arity is not None and not 0 <= i < arity:
            raise ValueError(f"define_op({name!r}): constants names input {i}, but the op has {arity} inputs")
    shown = symbol if symbol is not None else name
    latex_name = r"\operatorname{" + name.replace("_", r"\_") + "}"
    if isinstance(latex, str) and "{0" not in latex:  # a command such as \cos, not a template
        latex_name, latex = latex, None
    op = Op(name, forward, vjp, arity, shown,
            formula=formula if formula is not None else _call(name, "(", ")", arity),
            text=text if text is not None else _call(shown, "(", ")", arity),
            latex=latex if latex is not None else _call(latex_name, r"\left(", r"\right)", arity),
            precedence=precedence, domain=domain, kinks=tuple(kinks), constants=tuple(constants), array=array,
            function=formula is None, defined_at=where, torch=torch)
    if array is not None and not where.startswith(_HERE + ":"):  # the built-in ones are held to it by tests
        _check_array(op)
    _REGISTRY[name] = op
    return op


_HERE = os.path.abspath(__file__)


def _check_name(name: Any, where: str) -> None:
    """A new op's name: an identifier as Python reads it (after NFKC), not a keyword, and not the same
    name (or its NFKC twin: ``ｅｘｐ`` is ``exp`` to Python) as an op defined elsewhere. The built-in
    operators (``+``, ``*``, ...) are the only other names, defined here."""
    if where.startswith(_HERE + ":"):
        return
    if not isinstance(name, str):
        raise TypeError(f"define_op: the name must be a string, got {type(name).__name__}: {name!r}")
    python_reads = unicodedata.normalize("NFKC", name)
    if not name.isidentifier() or not python_reads.isidentifier() or keyword.iskeyword(python_reads):
        raise ValueError(f"define_op: the name must be a Python identifier and not a keyword (it is called by "
                         f"name in formulas), got {name!r}")
    for known in _REGISTRY.values():
        if unicodedata.normalize("NFKC", known.name) == python_reads and known.defined_at != where:
            kind = "a built-in op" if known.defined_at.startswith(_HERE) else f"an op defined at {known.defined_at}"
            twin = "" if known.name == name else f" (as Python reads it, {name!r} is {known.name!r})"
            raise ValueError(f"define_op: {known.name!r} is already {kind}{twin}; an op is defined once "
                             "(pick another name)")


def _call(name: str, open_: str, close: str, arity: int | None) -> Template:
    """The template of a function call ``name(a, b)``; a function of the pieces for any number of inputs."""
    if arity is None:
        return lambda *pieces: name + open_ + ", ".join(map(str, pieces)) + close
    escaped = (name + open_).replace("{", "{{").replace("}", "}}")
    return escaped + ", ".join(f"{{{i}}}" for i in range(arity)) + close.replace("{", "{{").replace("}", "}}")


def _caller() -> str:
    """``file:line`` of the code that called define_op."""
    frame = inspect.currentframe()
    outer = frame.f_back.f_back if frame is not None and frame.f_back is not None else None
    if outer is None:
        return "?"
    return f"{os.path.abspath(outer.f_code.co_filename)}:{outer.f_lineno}"


def _vjp_arity(name: str, vjp: Callable) -> int | None:
    """The number of inputs a vjp ``(g, out, *inputs)`` takes; None for any number (``*inputs``)."""
    try:
        params = list(inspect.signature(vjp).parameters.values())
    except (TypeError, ValueError):
        raise TypeError(f"define_op({name!r}): cannot read the vjp's signature; write it as a def or lambda") from None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    if len(positional) < 3 or len(positional) != len(params):
        raise TypeError(f"define_op({name!r}): the vjp must take (g, out, *inputs), one name per input, "
                        f"got ({', '.join(p.name for p in params)})")
    return len(positional) - 2


def _check_forward(name: str, forward: Callable, arity: int | None) -> None:
    try:
        signature = inspect.signature(forward)
    except (TypeError, ValueError):
        return  # a builtin without a readable signature: checked when called
    try:
        signature.bind(*[0.0] * (arity if arity is not None else 3))
    except TypeError:
        raise TypeError(f"define_op({name!r}): the vjp takes {arity} input(s) after (g, out), "
                        f"but forward{signature} does not") from None


def _check_domain(name: str, domain: tuple | None, arity: int | None) -> tuple[Interval, ...]:
    if domain is None:
        return ((-math.inf, math.inf),) * (arity or 1)
    checked = []
    for interval in domain:
        try:
            lo, hi = (float(end) for end in interval)
        except (TypeError, ValueError):
            raise ValueError(f"define_op({name!r}): domain must list a (low, high) interval per input, "
                             f"got {domain!r}") from None
        if not lo < hi:
            raise ValueError(f"define_op({name!r}): domain interval {interval!r} needs low < high")
        checked.append((lo, hi))
    if arity is not None and len(checked) != arity:
        raise ValueError(f"define_op({name!r}): domain lists {len(checked)} intervals for {arity} inputs")
    return tuple(checked)


def _check_array(op: Op) -> None:
    """Refuse an ``array`` form that disagrees with the forward, checked on numpy arrays. numpy is optional:
    without it nothing is checked (torch, which takes seconds to import, is not tried instead)."""
    try:
        import numpy
    except ImportError:
        return
    with numpy.errstate(all="ignore"):
        found = _array_disagreement(op, numpy)
    if found is not None:
        raise ValueError(f"define_op({op.name!r}): {found}")


def _array_disagreement(op: Op, xp: Any) -> str | None:
    """How ``op``'s array form, run on float64 arrays of module ``xp`` (numpy or torch), disagrees with its forward
    at a few points of the op's domain (a constant input a plain number, as the tape passes it), or None.
    Points where the forward refuses its inputs are left out."""
    assert op.array is not None
    points, expected = [], []
    for point in _sample_points(op):
        try:
            value = float(op.forward(*point))
        except Exception:  # outside the op's domain: nothing to compare there
            continue
        if math.isfinite(value):
            points.append(point)
            expected.append(value)
    if not points:
        return None
    inputs = [points[0][i] if i in op.constants else xp.asarray(column, dtype=xp.float64)
              for i, column in enumerate(zip(*points))]
    try:
        result = op.array(xp, *inputs)
    except Exception as error:
        return f"its array form fails on {xp.__name__} arrays: {type(error).__name__}: {_line(error)}"
    dtype = getattr(result, "dtype", None)
    if dtype != xp.float64:
        return f"its array form gives {f'{dtype} numbers' if dtype is not None else type(result).__name__} for " \
               "float64 arrays"
    got = result.tolist()
    if not isinstance(got, list) or len(got) != len(points):
        return f"its array form gives {got!r} for arrays of {len(points)} numbers"
    for point, value, want in zip(points, got, expected):
        if not math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-12):
            return f"its array form disagrees with its forward: {applied(op, point)} is {value!r} by the array " \
                   f"form, {want!r} by the forward"
    return None


def _sample_points(op: Op) -> list[tuple[float, ...]]:
    """Five points of ``op``'s domain, each input at its own spread of values (a constant input at one)."""
    columns = []
    for i, (lo, hi) in enumerate(op.domain):
        if math.isinf(lo) and math.isinf(hi):
            values = [-2.3, -0.37, 0.0, 0.61, 3.1]
        elif math.isinf(lo) or math.isinf(hi):
            bound, side = (lo, 1.0) if math.isinf(hi) else (hi, -1.0)
            values = [bound + side * d for d in (0.13, 0.61, 1.7, 3.1, 7.3)]
        else:
            values = [lo + (hi - lo) * t for t in (0.11, 0.3, 0.5, 0.77, 0.93)]
        k = i % len(values)
        columns.append([values[k]] * len(values) if i in op.constants else values[k:] + values[:k])
    return list(zip(*columns))


def _line(error: Exception) -> str:
    """An error's message on one line (its first)."""
    return next(iter(str(error).splitlines()), "")


# -- forwards with their domain checks --------------------------------------------------------------

def _div(x: float, y: float) -> float:
    if y == 0.0:
        raise DomainError(f"div: division by zero ({x!r} / {y!r})")
    return x / y


def _log(x: float) -> float:
    if x <= 0.0:
        raise DomainError(f"log: operand must be > 0, got {x!r}")
    return math.log(x)


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        raise DomainError(f"exp: result overflows a float for operand {x!r}") from None


def _pow(x: float, p: float) -> float:
    if x < 0.0 and p != int(p):
        raise DomainError(f"pow: negative base {x!r} to the non-integer power {p!r}")
    if x == 0.0 and p < 0.0:
        raise DomainError(f"pow: zero base to the negative power {p!r}")
    try:
        return x**p
    except OverflowError:
        raise DomainError(f"pow: result overflows a float for {x!r} ** {p!r}") from None


def _sin(x: float) -> float:
    try:
        return math.sin(x)
    except ValueError:  # math.sin(inf)
        raise DomainError(f"sin: operand must be finite, got {x!r}") from None


def _cos(x: float) -> float:
    try:
        return math.cos(x)
    except ValueError:
        raise DomainError(f"cos: operand must be finite, got {x!r}") from None


def _sqrt(x: float) -> float:
    """The square root, defined for x >= 0 (sqrt(0) = 0, sqrt(-0.0) = -0.0 as IEEE 754 and PyTorch); its
    derivative 1/(2 sqrt(x)) only for x > 0: the rule divides by 2 * out, so at 0 backward is a DomainError."""
    if x < 0.0:
        raise DomainError(f"sqrt: operand must be >= 0, got {x!r}")
    return math.sqrt(x)


def _sin_vjp(g, out, x):
    """sin's rule, ``g cos(x)`` (a def: it names cos, defined after sin)."""
    return (g * cos(x),)


def _sigmoid(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)  # x < 0: exp(x) cannot overflow
    return e / (1.0 + e)


def _sigmoid_array(xp: Any, x: Any) -> Any:
    """The same two branches as the float forward, each safe on the whole array (no overflow)."""
    e = xp.exp(-abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x: float) -> float:
    """log(1 + e ** x), without overflow for any x."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _logsumexp(*inputs: float) -> float:
    """log(e ** x_1 + ... + e ** x_n), shifted by the largest x so that no exp overflows."""
    m = max(inputs)
    return m + math.log(sum(math.exp(x - m) for x in inputs))


def _logsumexp_array(xp: Any, *inputs: Any) -> Any:
    arrays = _arrays(*inputs)
    m = functools.reduce(xp.maximum, arrays)
    return m + xp.log(functools.reduce(operator.add, [xp.exp(x - m) for x in arrays]))


def _logsumexp_text(*pieces: Piece) -> str:
    return "log(" + " + ".join(f"exp({p})" for p in pieces) + ")"


def _logsumexp_latex(*pieces: Piece) -> str:
    return r"\log\left(" + " + ".join(f"e^{{{p}}}" for p in pieces) + r"\right)"


def _arrays(*inputs: Any) -> list[Any]:
    """An array form's inputs as arrays of one shape and dtype, their values kept (``x + 0.0 * y`` is ``x``): the
    tape passes constants as Python numbers, which torch would make float32 (``torch.where(c, 1.0, 2.0)``) or
    refuse (``torch.maximum``)."""
    zero = functools.reduce(operator.add, [0.0 * x for x in inputs])
    return [x + zero for x in inputs]


def _xlogy_array(xp: Any, a: Any, b: Any) -> Any:
    a, b = _arrays(a, b)
    return a * xp.log(xp.where(a == 0, 1.0, b))


def _xlogy(a: float, b: float) -> float:
    """a log b, and 0 wherever a == 0 (also at b == 0): the derivative of x ** p by p, x ** p log x."""
    return 0.0 if a == 0.0 else a * _log(b)


def _weighted_sum(*inputs: float) -> float:
    n = len(inputs) // 2
    return sum(map(operator.mul, inputs[:n], inputs[n:-1])) + inputs[-1]


def _powc_vjp(g, out, x, p):
    """p is always a plain number (the op's constant), so testing it is not a branch on data."""
    if p == 0:  # x ** 0 is constant: derivative 0 everywhere, x = 0 included
        return (0.0, 0.0)
    return (g * p * x ** (p - 1), 0.0)


def _weighted_sum_vjp(g, out, *inputs):
    """inputs are w_1..w_n, x_1..x_n, b: d/dw_i = x_i, d/dx_i = w_i, d/db = 1."""
    n = len(inputs) // 2
    return (*[g * x for x in inputs[n:2 * n]], *[g * w for w in inputs[:n]], g)


def _weighted_sum_notation(times: str, plus: str) -> Callable[..., str]:
    def render(*pieces) -> str:
        n = len(pieces) // 2
        terms = [f"{w:{PRODUCT}}{times}{x:{PRODUCT + 1}}" for w, x in zip(pieces[:n], pieces[n:2 * n])]
        return plus.join([*terms, f"{pieces[-1]:{SUM}}"])
    return render


def _product_notation(times: str) -> Callable[[Piece, Piece], str]:
    """A product as mathematicians write it: ``2x``, ``2(y − t)``, ``y(1 − y)``, else ``a·b``; written out where
    side by side the two would read as one (``3·2^x``, not 32^x; ``2·e5``; ``2·|x|``) or the group as part of the
    first factor's last operand (``x/y·(x − 1)``, ``x^y·(x − 1)``)."""
    def render(a: Piece, b: Piece) -> str:
        if a.is_number and not b.is_number and (b.precedence < POWER or not _continues_a_number(b.text)):
            return f"{a:{PRODUCT}}{b:{POWER}}"
        if b.precedence < PREFIX and not b.is_number and not _open_on_the_right(a.text):
            return f"{a:{PRODUCT}}({b})"
        return f"{a:{PRODUCT}}{times}{b:{PREFIX}}"
    return render


def _continues_a_number(text: str) -> bool:
    """Whether ``text`` right after a number would read as more of it (a digit, ``e5``) or close a ``|...|``."""
    return text[:1].isdigit() or text[:1] in ".|" or (text[:1] in "eE" and text[1:2].isdigit())


def _open_on_the_right(text: str) -> bool:
    """Whether ``text`` ends in a quotient or a power written on the line (``x/y``, ``x^y``), whose last operand a
    group right after it would seem to continue (LaTeX's ``\\frac{}{}`` and ``^{}`` are closed). Read from the
    right, up to its last operator outside brackets (or two groups side by side, a product)."""
    if "/" not in text and "^" not in text:
        return False
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        c = text[i]
        if depth == 0 and (c in "/^·+−- " or (c in ")]" and text[i + 1:i + 2] in ("(", "["))):
            return c == "/" or (c == "^" and text[i + 1:i + 2] != "{")
        depth += (c in ")]}") - (c in "([{")
    return False


def _power_latex(x: Piece, p: Piece) -> str:
    """``x^{p}``, the base in parentheses unless it is an atom without a superscript of its own (LaTeX takes one
    superscript per atom: ``(e^{u})^{v}``, ``(1 \\times 10^{-5})^{x}``)."""
    base = f"({x})" if x.precedence < ATOM or _superscripted(x.text) else x.text
    return f"{base}^{{{p}}}"


def _superscripted(latex: str) -> bool:
    """Whether LaTeX ``latex`` ends in a superscript (``e^{u}``, ``x^2``)."""
    depth = 0
    for i in range(len(latex) - 1, -1, -1):
        depth += (latex[i] == "}") - (latex[i] == "{")
        if depth == 0:
            return latex[i - 1:i] == "^"
    return False


def _power_text(x, p) -> str:
    """x², x³, ... for small whole exponents; x^p otherwise."""
    digits = str(p)
    if digits.isdigit() or (digits.endswith(".0") and digits[:-2].isdigit()):
        digits = digits.removesuffix(".0")
        return f"{x:{ATOM}}" + digits.translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{x:{ATOM}}^{p:{ATOM}}"


REAL, POSITIVE = (-math.inf, math.inf), (0.5, math.inf)

add = define_op("+", forward=operator.add, vjp=lambda g, out, x, y: (g, g),
                formula=f"{{0:{SUM}}} + {{1:{PRODUCT}}}", text=f"{{0:{SUM}}} + {{1:{PRODUCT}}}",
                latex=f"{{0:{SUM}}} + {{1:{PRODUCT}}}", precedence=SUM)
subtract = define_op("-", forward=operator.sub, vjp=lambda g, out, x, y: (g, -g), symbol="−",
                     formula=f"{{0:{SUM}}} - {{1:{PRODUCT}}}", text=f"{{0:{SUM}}} − {{1:{PRODUCT}}}",
                     latex=f"{{0:{SUM}}} - {{1:{PRODUCT}}}", precedence=SUM)
multiply = define_op("*", forward=operator.mul, vjp=lambda g, out, x, y: (g * y, g * x), symbol="×",
                     formula=f"{{0:{PRODUCT}}} * {{1:{PREFIX}}}", text=_product_notation("·"),
                     latex=_product_notation(r" \cdot "), precedence=PRODUCT)
divide = define_op("/", forward=_div, vjp=lambda g, out, x, y: (g / y, -g * out / y), symbol="÷",
                   formula=f"{{0:{PRODUCT}}} / {{1:{PREFIX}}}", text=f"{{0:{PRODUCT}}}/{{1:{PREFIX}}}",
                   latex=r"\frac{{{0}}}{{{1}}}", precedence=PRODUCT, domain=(REAL, (1.0, math.inf)))
negate = define_op("neg", forward=operator.neg, vjp=lambda g, out, x: (-g,), symbol="−",
                   formula=f"-{{0:{PREFIX}}}", text=f"−{{0:{PREFIX}}}", latex=f"-{{0:{PREFIX}}}", precedence=PREFIX,
                   array=lambda xp, x: -x)
exp = define_op("exp", forward=_exp, vjp=lambda g, out, x: (g * out,), latex="e^{{{0}}}",
                array=lambda xp, x: xp.exp(x))
log = define_op("log", forward=_log, vjp=lambda g, out, x: (g / x,), latex=r"\log",
                domain=(POSITIVE,), array=lambda xp, x: xp.log(x))
xlogy = define_op("xlogy", forward=_xlogy, vjp=lambda g, out, a, b: (g * log(b), g * a / b),
                  text=f"({{0:{PRODUCT}}}·log({{1}}))",
                  latex=f"\\left({{0:{PRODUCT}}} \\log\\left({{1}}\\right)\\right)",
                  domain=(REAL, POSITIVE), array=_xlogy_array)
power = define_op("pow", forward=_pow, vjp=lambda g, out, x, p: (g * p * x ** (p - 1), g * xlogy(out, x)),
                  symbol="**", formula=f"{{0:{ATOM}}} ** {{1:{PREFIX}}}", text=f"{{0:{ATOM}}}^{{1:{ATOM}}}",
                  latex=_power_latex, precedence=POWER, domain=(POSITIVE, (-2.0, 2.0)))
powc = define_op("powc", forward=_pow, vjp=_powc_vjp, symbol="**", formula=f"{{0:{ATOM}}} ** {{1:{PREFIX}}}",
                 text=_power_text, latex=_power_latex, precedence=POWER,
                 domain=(POSITIVE, (-1.5, 3.0)), constants=(1,))
cpow = define_op("cpow", forward=_pow, vjp=lambda g, out, c, x: (0.0, g * xlogy(out, c)), symbol="base",
                 formula=f"{{0:{ATOM}}} ** {{1:{PREFIX}}}", text=f"{{0:{ATOM}}}^{{1:{ATOM}}}",
                 latex=_power_latex, precedence=POWER, domain=(POSITIVE, (-2.0, 2.0)), constants=(0,),
                 array=lambda xp, c, x: c ** x)
"""A number to a Value's power, ``2 ** x``: the base is the op's constant, never differentiated, so ``0 ** x``
has the derivative 0 for x > 0 (pow's rule would take ``0 ** (x - 1)``). Pictures read ``base 2``."""
tanh = define_op("tanh", forward=math.tanh, vjp=lambda g, out, x: (g * (1.0 - out * out),), latex=r"\tanh",
                 array=lambda xp, x: xp.tanh(x), torch=lambda torch: torch.nn.Tanh())
sin = define_op("sin", forward=_sin, vjp=_sin_vjp, latex=r"\sin",
                array=lambda xp, x: xp.sin(x))
"""The sine (radians). Its rule, ``g cos(x)``, and cos's, ``g (-sin(x))``, are PyTorch's (derivatives.yaml)."""
cos = define_op("cos", forward=_cos, vjp=lambda g, out, x: (g * -sin(x),), latex=r"\cos",
                array=lambda xp, x: xp.cos(x))
"""The cosine (radians)."""
sqrt = define_op("sqrt", forward=_sqrt, vjp=lambda g, out, x: (g / (2.0 * out),), latex=r"\sqrt{{{0}}}",
                 domain=(POSITIVE,), array=lambda xp, x: xp.sqrt(x))
"""The square root: sqrt(0) is 0, but its derivative there is no number (PyTorch says inf), so backward through
sqrt at 0 is a DomainError naming sqrt. The rule reuses the result, ``g / (2 sqrt(x))``, as PyTorch's does."""
sigmoid = define_op("sigmoid", forward=_sigmoid, vjp=lambda g, out, x: (g * out * (1.0 - out),), symbol="σ",
                    latex=r"\sigma", array=_sigmoid_array, torch=lambda torch: torch.nn.Sigmoid())
step = define_op("step", forward=lambda x: 1.0 if x > 0.0 else 0.0, vjp=lambda g, out, x: (0.0,),
                 text="[{0} > 0]", latex="[{0} > 0]", kinks=(0.0,), array=lambda xp, x: (x > 0) * xp.ones_like(x))
sign = define_op("sign", forward=lambda x: float(x > 0.0) - float(x < 0.0), vjp=lambda g, out, x: (0.0,),
                 latex=r"\operatorname{sign}", kinks=(0.0,), array=lambda xp, x: xp.sign(x))
relu = define_op("relu", forward=lambda x: x if x > 0.0 else 0.0, vjp=lambda g, out, x: (g * step(x),),
                 latex=r"\operatorname{relu}", kinks=(0.0,), array=lambda xp, x: (x > 0) * x,
                 torch=lambda torch: torch.nn.ReLU())
absolute = define_op("abs", forward=abs, vjp=lambda g, out, x: (g * sign(x),), text="|{0}|",
                     latex=r"\left|{0}\right|", kinks=(0.0,), array=lambda xp, x: abs(x))
softplus = define_op("softplus", forward=_softplus, vjp=lambda g, out, x: (g * sigmoid(x),),
                     latex=r"\operatorname{softplus}", array=lambda xp, x: xp.logaddexp(xp.zeros_like(x), x))
logsumexp = define_op("logsumexp", forward=_logsumexp, vjp=lambda g, out, *xs: tuple(g * exp(x - out) for x in xs),
                      text=_logsumexp_text, latex=_logsumexp_latex,
                      domain=(REAL,) * 3, array=_logsumexp_array)
weighted_sum = define_op("weighted_sum", forward=_weighted_sum, vjp=_weighted_sum_vjp, symbol="w·x+b",
                         formula=_weighted_sum_notation(" * ", " + "), text=_weighted_sum_notation("·", " + "),
                         latex=_weighted_sum_notation(r" \cdot ", " + "), precedence=SUM, domain=(REAL,) * 5)
linear = define_op("linear", forward=lambda x: x, vjp=lambda g, out, x: (g,), formula=f"{{0:{ATOM}}}",
                   text=f"{{0:{ATOM}}}", latex=f"{{0:{ATOM}}}", array=lambda xp, x: x,
                   torch=lambda torch: torch.nn.Identity())
"""The identity, a neuron's "linear" activation: printed as its input alone (grouped when that is a sum),
in formulas too, so it is no function of the formula language. A neuron skips it (one node fewer)."""
