"""Prove gradients: the engine against finite differences, and hand-derived formulas against the engine.

    >>> from microgd.check import gradcheck
    >>> gradcheck(lambda w, x: (w * x).sigmoid(), 0.5, -1.5, order=2)
    True

``check_formula`` searches with hypothesis and leaves nothing on disk (no ``.hypothesis`` folder).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import random
import struct
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import checks
from .engine import DomainError, Value, gradients
from .table import table

__all__ = ["gradcheck", "numeric_gradient", "check_formula", "GradcheckError", "FormulaMismatch", "FormulaReport",
           "ToleranceError", "EPS", "DEFAULT_INTERVAL", "DEFAULT_DOMAIN", "MAX_EXAMPLES", "FORMULA_RTOL",
           "FORMULA_ATOL", "RTOL_LIMIT", "PROBES", "SEARCH_PROBES"]

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

Interval = tuple[float, float]


@dataclass(frozen=True)
class FormulaReport:
    """What a passing :func:`check_formula` saw.

    ``examples``: the distinct points where formula and engine were compared (``asked``: the number asked for,
    ``max_examples``; fewer only when the domain holds no more points where f and its derivative are defined,
    and then ``str()`` says so and why). ``skipped``: points drawn where f or its derivative is not defined (the
    engine raised :class:`DomainError`), not compared. ``drawn_from``: per variable, the intervals the search drew
    from mostly, where f and its derivative were found defined (one draw in ten still comes from the whole
    domain); empty when they are defined at every point of the domain probed, and points came from the whole
    domain. ``max_abs_diff`` and ``max_rel_diff``: the largest differences seen."""

    derivative: str
    examples: int
    skipped: int
    max_abs_diff: float
    max_rel_diff: float
    asked: int | None = None
    drawn_from: Mapping[str, tuple[Interval, ...]] = field(default_factory=dict)
    why_fewer: str = ""

    def __str__(self) -> str:
        head = f"formula for {self.derivative} agrees with the engine at {_count(self.examples, 'point')}"
        if self.asked is not None and self.examples < self.asked:
            head += f", fewer than the {self.asked} asked: {self.why_fewer or 'no more points were found'}"
        notes = []
        if self.drawn_from and _intervals_text(self.drawn_from) not in head:
            notes.append(f"drawn mostly where f and its derivative are defined: {_intervals_text(self.drawn_from)}")
        if self.skipped:
            notes.append(f"{_count(self.skipped, 'point')} drawn where f or its derivative is not defined were skipped")
        notes.append(f"largest difference {self.max_abs_diff:.3g} (relative {self.max_rel_diff:.3g})")
        return "; ".join([head, *notes])


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _intervals_text(intervals: Mapping[str, Sequence[Interval]]) -> str:
    """``x in [0.5, 3], w in [-3, -1] ∪ [1, 3]``: each variable's ends with 6 significant digits, or as many more
    as it takes to tell them apart (``[2.9999999999999, 3]``)."""
    parts = []
    for name, pieces in intervals.items():
        ends = [x for piece in pieces for x in piece]
        digits = next((d for d in range(6, 17) if len({f"{x:.{d}g}" for x in ends}) == len(set(ends))), 17)
        parts.append(f"{name} in " + " ∪ ".join(f"[{lo:.{digits}g}, {hi:.{digits}g}]" for lo, hi in pieces))
    return ", ".join(parts)


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


# where f is defined: found before the search, so that the search draws its points there

PROBES = 64
"""Points of the domain (its corners and middles, and random ones) where :func:`check_formula` first tries f and
its derivative; if all are defined, the search draws from the whole domain."""
SEARCH_PROBES = 512
"""Points tried in all (with :data:`PROBES`) to find where f and its derivative are defined when some are not."""
_CELLS = 64  # each variable's interval cut in this many cells: a cell holding a defined probe is drawn from
_MAX_RUNS = 16  # at most this many separate intervals per variable get their ends found by bisection
_EVERYWHERE = 10  # one point in this many is drawn from the whole domain, not only where f was found defined


def _defined(f: Callable[..., Value], wrt: str) -> Callable[[dict], bool]:
    """Whether the engine gives f and its derivative by ``wrt`` at a point (no :class:`DomainError`). Any other
    error counts as defined: the search meets it there and reports it with its point."""
    def defined(point: dict) -> bool:
        leaves = {name: Value(value) for name, value in point.items()}
        try:
            gradients(_checked(f(**leaves), "check_formula"), [leaves[wrt]])
        except DomainError:
            return False
        except Exception:
            return True
        return True
    return defined


def _edge_values(lo: float, hi: float) -> list[float]:
    """The ends, the middle, and 0 and ±1 where inside: where a domain often begins or ends."""
    values = [lo, hi, lo + (hi - lo) / 2, 0.0, 1.0, -1.0]
    return list(dict.fromkeys(v for v in values if lo <= v <= hi))


def _probe_points(domain: Mapping[str, Interval], rng: random.Random) -> Iterator[dict]:
    """The domain's corners (where a small domain often hides: ``log(x - w - 5.9)``), then points made of each
    variable's ends, middle, 0 and ±1, at most :data:`SEARCH_PROBES` / 2 of them in all, shuffled, each
    followed by a uniform point; then uniform points."""
    names = list(domain)
    ends = [sorted(set(interval)) for interval in domain.values()]
    edges = [_edge_values(*domain[name]) for name in names]
    half = SEARCH_PROBES // 2
    if math.prod(map(len, ends)) <= half // 2:
        corners = list(itertools.product(*ends))
    else:
        corners = [tuple(rng.choice(values) for values in ends) for _ in range(half // 2)]
    if math.prod(map(len, edges)) <= half:
        others = list(itertools.product(*edges))
    else:
        others = [tuple(rng.choice(values) for values in edges) for _ in range(half)]
    structured = list(dict.fromkeys(corners + others))[:half]
    rng.shuffle(structured)
    uniform = ({name: rng.uniform(lo, hi) for name, (lo, hi) in domain.items()} for _ in itertools.count())
    for values in structured:
        yield dict(zip(names, values))
        yield next(uniform)
    yield from uniform


def _where_defined(defined: Callable[[dict], bool], domain: Mapping[str, Interval]
                   ) -> dict[str, tuple[Interval, ...]]:
    """Per variable, the intervals of its range where f and its derivative were found defined, or {} when they
    are defined at every one of the first :data:`PROBES` probes (or at none of :data:`SEARCH_PROBES`): then the
    search draws from the whole domain.

    The registry knows each op's domain, but f is any composition of ops (``log(x - 2.9)``, ``sqrt(1 - x*x)``,
    ``log(w*x)``), so the engine itself is asked: probes mark the cells of each variable's range holding a
    defined point, and bisection along the variable finds each run of cells' true ends (to the float, in one
    dimension; in several, a box around the defined set, where the search still skips what lies outside)."""
    rng = random.Random(0)  # the search is deterministic
    points = _probe_points(domain, rng)
    probes = [(point, defined(point)) for point in itertools.islice(points, PROBES)]
    if all(ok for _, ok in probes):
        return {}
    probes += [(point, defined(point)) for point in itertools.islice(points, SEARCH_PROBES - PROBES)]
    inside = [point for point, ok in probes if ok]
    if not inside:
        return {}
    region = {name: _intervals(name, domain[name], inside, defined) for name in domain}
    return {} if region == {name: ((lo, hi),) for name, (lo, hi) in domain.items()} else region


def _intervals(name: str, interval: Interval, inside: list[dict], defined: Callable[[dict], bool]
               ) -> tuple[Interval, ...]:
    """The intervals of variable ``name`` to draw from: the runs of cells holding a defined probe, each end moved
    by bisection along ``name`` (from the probe nearest it) to where f stops being defined."""
    lo, hi = interval
    width = (hi - lo) / _CELLS
    if width == 0:
        return ((lo, hi),)

    def cell(value: float) -> int:
        return min(int((value - lo) / width), _CELLS - 1)

    live = sorted({cell(point[name]) for point in inside})
    runs: list[list[int]] = []
    for c in live:
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    if len(runs) > _MAX_RUNS:  # too many to bisect each: whole cells
        return _merged([(lo + a * width, hi if b == _CELLS - 1 else lo + (b + 1) * width) for a, b in runs])
    found = []
    for a, b in runs:
        members = [point for point in inside if a <= cell(point[name]) <= b]
        starts = [min(members, key=lambda point: point[name]), max(members, key=lambda point: point[name]),
                  _central(members, name)]  # from the middle of the others too: a disk's widest line
        found.append((min(_edge(defined, point, name, lo, -width) for point in starts),
                      max(_edge(defined, point, name, hi, width) for point in starts)))
    return _merged(found)


def _central(points: list[dict], name: str) -> dict:
    """The point whose variables other than ``name`` are nearest the middle of those of ``points``."""
    others = [other for other in points[0] if other != name]
    middle = {other: sorted(point[other] for point in points)[len(points) // 2] for other in others}
    spread = {other: max(point[other] for point in points) - min(point[other] for point in points) or 1.0
              for other in others}
    return min(points, key=lambda point: sum(((point[o] - middle[o]) / spread[o]) ** 2 for o in others))


def _edge(defined: Callable[[dict], bool], point: dict, name: str, end: float, step: float) -> float:
    """How far from ``point`` (defined) toward ``end`` variable ``name`` goes with f still defined: steps of
    ``step`` while defined (``end`` at most), then bisection between the last defined value and the first not."""
    inside = point[name]
    moved = dict(point)

    def ok(value: float) -> bool:
        moved[name] = value
        return defined(moved)

    while True:
        outside = end if abs(end - inside) <= abs(step) else inside + step
        if outside == inside:
            return inside
        if not ok(outside):
            break
        inside = outside
    while True:
        middle = inside + (outside - inside) / 2
        if middle in (inside, outside):
            return inside
        if ok(middle):
            inside = middle
        else:
            outside = middle


def _merged(intervals: list[Interval]) -> tuple[Interval, ...]:
    """Overlapping or touching intervals joined, in order."""
    merged: list[Interval] = []
    for lo, hi in sorted((min(a, b), max(a, b)) for a, b in intervals):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _float_count(lo: float, hi: float) -> int:
    """How many floats lie in [lo, hi] (-0.0 and 0.0 count as one)."""
    def rank(x: float) -> int:
        bits = struct.unpack("<q", struct.pack("<d", abs(x)))[0]
        return bits if x > 0 else -bits
    return rank(hi) - rank(lo) + 1


def _capacity(intervals: Mapping[str, Sequence[Interval]]) -> int:
    """How many points (tuples of floats) the intervals hold."""
    return math.prod(sum(_float_count(lo, hi) for lo, hi in parts) for parts in intervals.values())


@contextlib.contextmanager
def _storage_elsewhere() -> Iterator[None]:
    """hypothesis keeps caches under ``./.hypothesis`` even without an example database (the constants it reads
    from local source files); while check_formula searches, its storage is a temporary folder, removed after."""
    from hypothesis import configuration

    before = vars(configuration).get("__hypothesis_home_directory")
    with tempfile.TemporaryDirectory(prefix="microgd-hypothesis-", ignore_cleanup_errors=True) as folder:
        configuration.set_hypothesis_home_dir(folder)
        try:
            yield
        finally:
            configuration.set_hypothesis_home_dir(before)


def check_formula(f: Callable[..., Value], formula: Callable[..., float], wrt: str = "w",
                  domain: Mapping[str, tuple[float, float]] | None = None, max_examples: int = MAX_EXAMPLES,
                  rtol: float = FORMULA_RTOL, atol: float = FORMULA_ATOL) -> FormulaReport:
    """Search ``domain`` with hypothesis for a point where ``formula`` is not the derivative of ``f``.

    ``f(**point)`` receives a ``Value`` per name and returns a ``Value``; ``formula(**point)``
    receives floats and returns your hand-derived d f / d ``wrt``. ``domain`` maps every
    argument name to a closed interval (default w, x in [-3, 3], t in [0, 1]).

    The search compares ``max_examples`` distinct points where f and its derivative are defined. First
    f is tried at :data:`PROBES` points of the domain (corners, middles, random); if it or its derivative
    raises :class:`DomainError` at some, up to :data:`SEARCH_PROBES` probes and bisection find, per
    variable, the intervals where they are defined (``log(x - 2.99)`` on [-3, 3]: x in [2.99, 3]), and the
    search draws from those (one point in ten still from the whole domain). Points where the engine raises
    DomainError are skipped and counted. Fewer points are compared only when the domain holds no more where
    f is defined; the report then says how many and why. The search is deterministic (its own settings:
    derandomized, no example database), whatever hypothesis profile is loaded, and writes nothing to disk:
    no ``.hypothesis`` folder (hypothesis' caches go to a temporary folder, removed after).

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
        formula for d error/d w agrees with the engine at 200 points; largest difference ...
    """
    from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable

    domain = _check_domain(DEFAULT_DOMAIN if domain is None else domain, wrt)
    _check_names(f, "f", domain)
    _check_names(formula, "formula", domain)
    checks.whole(max_examples, "check_formula: max_examples", 1)
    rtol, atol = _tolerances(rtol, atol, "check_formula")
    derivative = f"d {_name(f)}/d {wrt}"
    seen: dict[str, Any] = {"examples": 0, "skipped": 0, "abs": 0.0, "rel": 0.0, "largest": 0.0}
    compared: set[tuple[str, ...]] = set()
    region = _where_defined(_defined(f, wrt), domain)

    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              phases=(Phase.explicit, Phase.generate, Phase.shrink), report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False)
    @given(_points(st, domain, region))
    def probe(point: dict) -> None:
        key = tuple(map(repr, point.values()))
        if key in compared:  # a point drawn again: no new evidence, so it does not count toward max_examples
            reject()
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
        compared.add(key)
        seen["examples"] += 1
        seen["largest"] = max(seen["largest"], abs(engine))
        seen["abs"] = max(seen["abs"], diff)
        seen["rel"] = max(seen["rel"], diff / max(abs(engine), abs(expected)) if diff else 0.0)

    try:
        with _storage_elsewhere():
            probe()
    except _Disagreement as found:
        message = _mismatch_message(found, derivative, rtol, atol) + _engines_derivation(f, found.point, wrt)
        raise FormulaMismatch(message, found.point, found.engine, found.formula) from found.error
    except Unsatisfiable:
        raise ValueError(f"check_formula: f or its derivative by {wrt} is not defined (DomainError) at any point "
                         f"tried in the domain {_intervals_text({n: [i] for n, i in domain.items()})}; narrow the "
                         "domain to where they are defined") from None
    _check_meaningful(seen["largest"], rtol, atol, derivative)
    why = "" if seen["examples"] >= max_examples else _why_fewer(domain, region, seen["skipped"], max_examples)
    return FormulaReport(derivative, seen["examples"], seen["skipped"], seen["abs"], seen["rel"], max_examples,
                         region, why)


def _points(st: Any, domain: Mapping[str, Interval], region: Mapping[str, tuple[Interval, ...]]) -> Any:
    """The search's points: from ``region`` (where f and its derivative were found defined), but one in
    :data:`_EVERYWHERE` from the whole domain, lest a defined part the probes missed go untested; from the
    whole domain when ``region`` is empty. Shrinking moves toward the region's points."""
    whole = {name: st.floats(lo, hi, allow_nan=False) for name, (lo, hi) in domain.items()}
    if not region:
        return st.fixed_dictionaries(whole)
    inside = {name: st.one_of(*[st.floats(lo, hi, allow_nan=False) for lo, hi in parts])
              for name, parts in region.items()}

    @st.composite
    def points(draw: Any) -> dict:
        everywhere = draw(st.integers(0, _EVERYWHERE - 1)) == _EVERYWHERE - 1
        return {name: draw(whole[name] if everywhere else inside[name]) for name in domain}

    return points()


def _why_fewer(domain: Mapping[str, Interval], region: Mapping[str, tuple[Interval, ...]], skipped: int,
               asked: int) -> str:
    """Why the search compared fewer points than asked: the domain (or the part of it where f and its derivative
    were found defined) holds few points as floats, or hypothesis drew too few points where they are defined."""
    whole = {name: (interval,) for name, interval in domain.items()}
    if _capacity(whole) < 10 * asked:
        return f"the domain ({_intervals_text(whole)}) holds only {_count(_capacity(whole), 'point')}"
    if region and _capacity(region) < 10 * asked:
        return (f"f and its derivative were found defined only in {_intervals_text(region)}, which holds "
                f"{_count(_capacity(region), 'point')}")
    return (f"f and its derivative are defined on too little of the domain for hypothesis to find more points there "
            f"({_count(skipped, 'point')} drawn were outside)")
