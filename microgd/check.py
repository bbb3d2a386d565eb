"""Prove gradients: the engine against finite differences, and hand-derived formulas against the engine.

    >>> from microgd.check import gradcheck
    >>> gradcheck(lambda w, x: (w * x).sigmoid(), 0.5, -1.5, order=2)
    True

``check_formula`` needs hypothesis (``pip install microgd[test]``); ``gradcheck`` needs nothing.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import checks
from .engine import DomainError, Value, gradients
from .table import table

__all__ = ["gradcheck", "numeric_gradient", "check_formula", "GradcheckError", "FormulaMismatch", "FormulaReport",
           "ToleranceError", "EPS", "DEFAULT_INTERVAL", "DEFAULT_DOMAIN", "MAX_EXAMPLES", "FORMULA_RTOL",
           "FORMULA_ATOL", "RTOL_LIMIT"]

EPS = 1e-6
"""The finite differences' step (scaled by ``max(1, |x|)``) of :func:`numeric_gradient` and :func:`gradcheck`."""
DEFAULT_INTERVAL = (-3.0, 3.0)
"""The interval of a weight or an input in :data:`DEFAULT_DOMAIN`; ``microgd check`` draws every variable
without a ``--domain`` from it."""
DEFAULT_DOMAIN = {"w": DEFAULT_INTERVAL, "x": DEFAULT_INTERVAL, "t": (0.0, 1.0)}
"""check_formula's domain when none is given: tutorial 1's weight, input and target."""
MAX_EXAMPLES = 200
"""The points :func:`check_formula` tries at most."""
FORMULA_RTOL = 1e-7
""":func:`check_formula`'s relative tolerance."""
FORMULA_ATOL = 1e-9
""":func:`check_formula`'s absolute tolerance."""
RTOL_LIMIT = 0.5
"""A relative tolerance must be below it: ``|a - b| <= rtol * max(|a|, |b|)`` holds for every ``b`` within a
factor ``1 / (1 - rtol)`` of ``a``, so from 0.5 up a value twice the right one agrees (0.99: 100 times it)."""
_RTOL_NOTE = (f"from {RTOL_LIMIT:g} up it accepts twice the value: rtol=r accepts anything within a factor "
              "1/(1 - r) of it")


class GradcheckError(AssertionError):
    """The engine's derivatives disagree with finite differences; the message is a table of every derivative."""


class FormulaMismatch(AssertionError):
    """A hand-derived derivative disagrees with the engine at ``point`` (shrunk by hypothesis).

    ``engine_value`` is the engine's derivative there, ``formula_value`` the formula's
    (None if the formula raised; the error is then the ``__cause__``).
    """

    def __init__(self, message: str, point: dict, engine_value: float, formula_value: float | None):
        super().__init__(message)
        self.point, self.engine_value, self.formula_value = point, engine_value, formula_value


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    """|a - b| <= atol + rtol * max(|a|, |b|): symmetric, so neither side counts as the truth.

    An infinity or nan agrees only with an equal infinity (nan with nothing).
    """
    if not (math.isfinite(a) and math.isfinite(b)):
        return a == b
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def _tolerances(rtol: float, atol: float, who: str) -> tuple[float, float]:
    """``rtol`` and ``atol`` checked: finite numbers >= 0, and ``rtol`` below :data:`RTOL_LIMIT`."""
    return (checks.number(rtol, f"{who}: rtol", at_least=0, below=RTOL_LIMIT, note=_RTOL_NOTE),
            checks.number(atol, f"{who}: atol", at_least=0))


def _name(f: Callable) -> str:
    name = getattr(f, "__name__", "f")
    return "f" if name == "<lambda>" else name


# -- gradcheck ---------------------------------------------------------------------------------

def _as_float(x, where: str) -> float:
    """``x`` (a real number, or a Value's number) as a finite float, or a clear error naming ``where``."""
    return checks.number(x.data if isinstance(x, Value) else x, where)


def _input_names(f: Callable, n: int) -> list[str]:
    """f's positional parameter names, or x0..x{n-1} when f does not name all n inputs."""
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:n]
    return names if len(names) == n else [f"x{i}" for i in range(n)]


def _checked(out, who: str) -> Value:
    """``out`` if f returned a Value, else a TypeError saying why that matters."""
    if not isinstance(out, Value):
        raise TypeError(
            f"{who}: f must return a Value built from its Value arguments, got {type(out).__name__} {out!r} "
            "(did f use math.* or .data on them? the engine cannot see through plain floats)"
        )
    return out


def _engine_gradient(f: Callable, xs: Sequence[float]) -> list[float]:
    leaves = [Value(x) for x in xs]
    return gradients(_checked(f(*leaves), "gradcheck"), leaves)


def _engine_hessian(f: Callable, xs: Sequence[float]) -> list[list[float]]:
    """H[i][j] = d/dx_j (d f/dx_i), differentiating the engine's differentiable first derivatives."""
    leaves = [Value(x) for x in xs]
    firsts = gradients(_checked(f(*leaves), "gradcheck"), leaves, create_graph=True)
    return [gradients(g, leaves) if isinstance(g, Value) else [0.0] * len(xs) for g in firsts]


def _central_differences(func: Callable[..., list], xs: Sequence[float], eps: float) -> list[list[float]]:
    """columns[j][k] = d func(...)[k] / d x_j by central differences, step eps * max(1, |x_j|)."""
    columns = []
    for j, x in enumerate(xs):
        h = eps * max(1.0, abs(x))
        up, down = list(xs), list(xs)
        up[j], down[j] = x + h, x - h
        columns.append([(a - b) / (up[j] - down[j]) for a, b in zip(func(*up), func(*down))])
    return columns


def _check_step(eps: float, xs: Sequence[float], who: str) -> None:
    """``eps`` a finite number > 0 whose step ``eps * max(1, |x|)`` moves every input (a step lost in
    rounding would divide by zero)."""
    eps = checks.number(eps, f"{who}: eps", above=0)
    for i, x in enumerate(xs):
        h = eps * max(1.0, abs(x))
        if x + h == x - h:
            raise ValueError(f"{who}: eps={eps!r} is too small to move input {i} ({x!r}) in floating point")


def numeric_gradient(f: Callable[..., float], *inputs: float, eps: float = EPS) -> list[float]:
    """The gradient of a plain-float function by central differences (step ``eps`` scaled by ``max(1, |x|)``).

        >>> [round(g, 6) for g in numeric_gradient(lambda x, y: x * x * y, 3.0, 2.0)]
        [12.0, 9.0]
    """
    xs = [_as_float(x, f"numeric_gradient: input {i}") for i, x in enumerate(inputs)]
    _check_step(eps, xs, "numeric_gradient")
    return [column[0] for column in _central_differences(lambda *v: [float(f(*v))], xs, eps)]


def gradcheck(f: Callable[..., Value], *inputs: float, eps: float = EPS, rtol: float = 1e-5, atol: float = 1e-8,
              order: int = 1) -> bool:
    """Check the engine's derivatives of ``f`` at ``inputs`` against central finite differences.

    ``f`` is called with one ``Value`` per input and must return a ``Value``. Every first
    derivative is compared with central differences of ``f``; with ``order=2`` every second
    derivative (the Hessian, from the engine's differentiable first derivatives) is also
    compared with central differences of the engine's first derivatives. Agreement means
    ``|engine - numeric| <= atol + rtol * max(|engine|, |numeric|)``; ``rtol`` must be in [0, 0.5), ``atol``
    finite and >= 0, and ``eps`` finite, > 0 and large enough to move every input (else a ValueError).

    Returns True, or raises :class:`GradcheckError` with a table of every derivative.
    A :class:`DomainError` at the point (or a step away from it) propagates unchanged.

        >>> gradcheck(lambda x, y: (x * y).tanh() + y.log(), 0.3, 2.0, order=2)
        True
    """
    if order not in (1, 2):
        raise ValueError(f"gradcheck: order must be 1 or 2, got {order!r}")
    xs = [_as_float(x, f"gradcheck: input {i}") for i, x in enumerate(inputs)]
    if not xs:
        raise TypeError("gradcheck: give at least one input, e.g. gradcheck(f, 0.5)")
    rtol, atol = _tolerances(rtol, atol, "gradcheck")
    _check_step(eps, xs, "gradcheck")
    names = _input_names(f, len(xs))
    rows = []  # (derivative, engine, numeric)
    numeric = _central_differences(lambda *v: [_checked(f(*map(Value, v)), "gradcheck").data], xs, eps)
    for name, engine, column in zip(names, _engine_gradient(f, xs), numeric):
        rows.append((f"d/d{name}", engine, column[0]))
    if order == 2:
        hessian = _engine_hessian(f, xs)
        numeric = _central_differences(lambda *v: _engine_gradient(f, v), xs, eps)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                label = f"d2/d{a}2" if i == j else f"d2/d{a} d{b}"
                rows.append((label, hessian[i][j], numeric[j][i]))
    failed = [not _close(e, n, rtol, atol) for _, e, n in rows]
    if not any(failed):
        return True
    point = ", ".join(f"{n}={x!r}" for n, x in zip(names, xs))
    printed = table(("derivative", "engine", "numeric", "difference", ""),
                    [(d, f"{e:.12g}", f"{n:.12g}", f"{abs(e - n):.3g}", "<- wrong" if bad else "")
                     for (d, e, n), bad in zip(rows, failed)], indent=0)
    raise GradcheckError(
        f"gradcheck of {_name(f)} at {point}: {sum(failed)} of {len(rows)} derivatives disagree with "
        f"central differences (eps={eps:g}, rtol={rtol:g}, atol={atol:g})\n{printed}"
    )


# -- check_formula -----------------------------------------------------------------------------

@dataclass(frozen=True)
class FormulaReport:
    """What a passing :func:`check_formula` saw: points compared, points skipped, largest differences."""

    derivative: str
    examples: int
    skipped: int
    max_abs_diff: float
    max_rel_diff: float

    def __str__(self) -> str:
        return (f"formula for {self.derivative} agrees with the engine at {self.examples} points "
                f"({self.skipped} skipped outside f's domain); largest difference "
                f"{self.max_abs_diff:.3g} (relative {self.max_rel_diff:.3g})")


class ToleranceError(ValueError):
    """check_formula's tolerances would have passed the formula 0 everywhere it looked: ``largest`` is the
    largest |derivative| seen, ``limit`` the atol below which the check means something."""

    def __init__(self, message: str, largest: float, limit: float):
        super().__init__(message)
        self.largest, self.limit = largest, limit


class _Disagreement(Exception):
    """Raised inside the hypothesis run; turned into FormulaMismatch once hypothesis has shrunk it."""

    def __init__(self, point: dict, engine: float, formula: float | None, error: BaseException | None = None):
        super().__init__(point)
        self.point, self.engine, self.formula, self.error = point, engine, formula, error


def _check_names(func: Callable, role: str, domain: Mapping) -> None:
    """Every argument ``func`` needs has an interval, and ``func`` accepts every name in the domain."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = [p for p in params if p.kind in kinds]
    missing = [p.name for p in named if p.default is p.empty and p.name not in domain]
    if missing:
        raise ValueError(f"check_formula: the domain has no interval for {', '.join(map(repr, missing))}, "
                         f"an argument of {role} (domain names: {', '.join(domain)})")
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        extra = [name for name in domain if name not in {p.name for p in named}]
        if extra:
            raise ValueError(f"check_formula: {role} takes no argument {', '.join(map(repr, extra))} "
                             f"named in the domain (every domain name is passed to f and formula)")


def _check_domain(domain: Mapping, wrt: str) -> dict:
    checked = {}
    for name, interval in domain.items():
        try:
            lo, hi = interval
            lo, hi = _as_float(lo, "low end"), _as_float(hi, "high end")
        except (TypeError, ValueError) as error:
            raise ValueError(f"check_formula: domain[{name!r}] must be a (low, high) pair of finite numbers, "
                             f"got {interval!r}") from error
        if lo > hi:
            raise ValueError(f"check_formula: domain[{name!r}] = {interval!r} has low > high")
        checked[name] = (lo, hi)
    if wrt not in checked:
        raise ValueError(f"check_formula: wrt={wrt!r} is not in the domain (domain names: {', '.join(checked)})")
    return checked


def _mismatch_message(found: _Disagreement, derivative: str, rtol: float, atol: float) -> str:
    """The shrunk counterexample: the point, one name per line, then engine, formula and difference."""
    if found.error is not None:
        head = f"formula for {derivative} raised {type(found.error).__name__}: {found.error}"
        rows = [("engine", repr(found.engine))]
    else:
        head = f"formula for {derivative} disagrees with the engine"
        formula = found.formula if found.formula is not None else math.nan
        allowed = atol + rtol * max(abs(found.engine), abs(formula))
        rule = f"allowed {allowed:.3g}: rtol={rtol:g}, atol={atol:g}" if math.isfinite(allowed) else "not finite"
        rows = [("engine", repr(found.engine)), ("formula", repr(found.formula)),
                ("difference", f"{abs(found.engine - formula)!r} ({rule})")]
    width = max(map(len, found.point))
    point = [f"  {name.rjust(width)} = {value!r}" for name, value in found.point.items()]
    return "\n".join([f"check_formula: {head} at this point (shrunk by hypothesis):", *point,
                      table(None, [(f"{label}:", text) for label, text in rows])])


def _engines_derivation(f: Callable[..., Value], point: dict, wrt: str) -> str:
    """The engine's own derivation at the counterexample (microgd.explain), to hold beside the formula
    factor by factor, and its closed form; empty if f cannot be explained there."""
    from .explain import explain

    leaves = {name: Value(value, label=name) for name, value in point.items()}
    try:
        derivation = explain(f(**leaves), wrt=leaves[wrt])
        closed = derivation.formula(leaves[wrt])
    except Exception:  # explaining is extra help: the counterexample above stands without it
        return ""
    body = "\n".join(f"  {line}" for line in derivation.text().splitlines())
    return f"\nthe engine's derivation there (microgd.explain), to compare factor by factor:\n{body}\n" \
           f"  closed form: {closed}"


def _check_meaningful(largest: float, rtol: float, atol: float, derivative: str) -> None:
    """A pass proves something only if the tolerances would have refused the formula 0 at some point compared:
    ``largest`` (the largest |derivative| seen) must exceed ``atol + rtol * largest``. A derivative that is 0
    at every point compared gives no scale, and any tolerance passes."""
    if largest > 0 and largest <= atol + rtol * largest:
        limit = largest * (1 - rtol)
        raise ToleranceError(f"check_formula: atol={atol:g} (with rtol={rtol:g}) would accept the formula 0 at every "
                             f"point compared, where |{derivative}| is at most {largest:.3g}: the check proves "
                             f"nothing. Use an atol below {limit:.3g}", largest, limit)


def check_formula(f: Callable[..., Value], formula: Callable[..., float], wrt: str = "w",
                  domain: Mapping[str, tuple[float, float]] | None = None, max_examples: int = MAX_EXAMPLES,
                  rtol: float = FORMULA_RTOL, atol: float = FORMULA_ATOL) -> FormulaReport:
    """Search ``domain`` with hypothesis for a point where ``formula`` is not the derivative of ``f``.

    ``f(**point)`` receives a ``Value`` per name and returns a ``Value``; ``formula(**point)``
    receives floats and returns your hand-derived d f / d ``wrt``. ``domain`` maps every
    argument name to a closed interval (default w, x in [-3, 3], t in [0, 1]). Points where
    ``f`` raises :class:`DomainError` are skipped. The search is deterministic (its own
    settings: derandomized, no example database), whatever hypothesis profile is loaded.

    On disagreement raises :class:`FormulaMismatch` (an AssertionError, so pytest reports it)
    whose message holds the shrunk counterexample: the point, the engine's value, the
    formula's value and their difference, then the engine's own derivation there
    (:func:`microgd.explain`: its factors, to hold beside yours, and its closed form). On success
    returns a :class:`FormulaReport`.

    Agreement means ``|engine - formula| <= atol + rtol * max(|engine|, |formula|)``. The tolerances must
    leave the check able to fail: ``rtol`` in [0, 0.5) (from 0.5 up twice the derivative would agree, see
    :data:`RTOL_LIMIT`) and ``atol`` finite and >= 0, checked first; and after
    the search, tolerances that would also have passed the formula 0 at every point compared (``atol`` at
    least the largest |derivative| seen, less its ``rtol`` share) are a :class:`ToleranceError`, not a
    pass. A derivative that is 0 at every point compared has no scale to judge ``atol`` by.

        >>> import math
        >>> def error(w, x, t):
        ...     return ((w * x).sigmoid() - t) ** 2
        >>> def tutorial1(w, x, t):  # tutorial 1's chain rule: sigmoid' taken at `predicted`
        ...     p = 1 / (1 + math.exp(-w * x))
        ...     s = 1 / (1 + math.exp(-p))
        ...     return 2 * (p - t) * s * (1 - s) * x
        >>> try:
        ...     check_formula(error, tutorial1)
        ... except FormulaMismatch as mismatch:
        ...     print(mismatch)
        check_formula: formula for d error/d w disagrees with the engine at this point (shrunk by hypothesis):
          w = 0.0
          x = 1.0
          t = 0.0
          engine:      0.25
          formula:     0.2350037122015945
          difference:  0.014996287798405505 (allowed 2.6e-08: rtol=1e-07, atol=1e-09)
        the engine's derivation there (microgd.explain), to compare factor by factor:
          ∂f/∂w = 2(σ(w·x) − t)·σ(w·x)(1 − σ(w·x))·x = 0.2500
          where f = (σ(w·x) − t)²
          closed form: 2.0 * (sigmoid(w * x) - t) * sigmoid(w * x) * (1.0 - sigmoid(w * x)) * x
        >>> def corrected(w, x, t):  # sigmoid' at the sop: p * (1 - p)
        ...     p = 1 / (1 + math.exp(-w * x))
        ...     return 2 * (p - t) * p * (1 - p) * x
        >>> print(check_formula(error, corrected))  # doctest: +ELLIPSIS
        formula for d error/d w agrees with the engine at 200 points (0 skipped outside f's domain); ...
    """
    try:
        from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
        from hypothesis import strategies as st
        from hypothesis.errors import Unsatisfiable
    except ImportError as error:
        raise ImportError("check_formula needs hypothesis: pip install 'microgd[test]'") from error
    domain = _check_domain(DEFAULT_DOMAIN if domain is None else domain, wrt)
    _check_names(f, "f", domain)
    _check_names(formula, "formula", domain)
    checks.whole(max_examples, "check_formula: max_examples", 1)
    rtol, atol = _tolerances(rtol, atol, "check_formula")
    derivative = f"d {_name(f)}/d {wrt}"
    seen: dict[str, Any] = {"examples": 0, "skipped": 0, "abs": 0.0, "rel": 0.0, "largest": 0.0}

    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              phases=(Phase.explicit, Phase.generate, Phase.shrink), report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False)
    @given(st.fixed_dictionaries({n: st.floats(lo, hi, allow_nan=False) for n, (lo, hi) in domain.items()}))
    def probe(point: dict) -> None:
        leaves = {name: Value(value) for name, value in point.items()}
        try:
            engine = gradients(_checked(f(**leaves), "check_formula"), [leaves[wrt]])[0]
        except DomainError:
            seen["skipped"] += 1
            reject()
        try:
            expected = float(formula(**point))
        except Exception as error:  # any failure of the user's formula is reported with its point
            raise _Disagreement(point, engine, None, error) from error
        if not _close(engine, expected, rtol, atol):
            raise _Disagreement(point, engine, expected)
        diff = 0.0 if engine == expected else abs(engine - expected)
        seen["examples"] += 1
        seen["largest"] = max(seen["largest"], abs(engine))
        seen["abs"] = max(seen["abs"], diff)
        seen["rel"] = max(seen["rel"], diff / max(abs(engine), abs(expected)) if diff else 0.0)

    try:
        probe()
    except _Disagreement as found:
        message = _mismatch_message(found, derivative, rtol, atol) + _engines_derivation(f, found.point, wrt)
        raise FormulaMismatch(message, found.point, found.engine, found.formula) from found.error
    except Unsatisfiable:
        raise ValueError(f"check_formula: f raised DomainError at every point tried in the domain {domain}; "
                         "narrow the domain to where f is defined") from None
    _check_meaningful(seen["largest"], rtol, atol, derivative)
    return FormulaReport(derivative, seen["examples"], seen["skipped"], seen["abs"], seen["rel"])

