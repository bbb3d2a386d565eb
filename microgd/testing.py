"""Hypothesis strategies for testing gradients: scalar Values, random expression graphs, random MLPs.

Each strategy yields the object together with what is needed to evaluate it numerically,
so a test can hold the engine against plain-float arithmetic or finite differences. Ops, their
arity and the intervals their inputs are drawn from all come from the op registry
(:data:`microgd.rules.OPS`), so an op made with ``define_op`` is drawn like a built-in:

    >>> from hypothesis import given
    >>> from microgd.check import gradcheck
    >>> from microgd.testing import expressions
    >>> @given(expressions(ops=("*", "tanh", "log"), max_depth=3))
    ... def test_engine_matches_finite_differences(e):
    ...     assert gradcheck(e.build, *e.inputs, order=2)
    >>> test_engine_matches_finite_differences()
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from . import checks
from .engine import Value
from .nn import MLP, activation_names
from .rules import OPS, Op, Piece, add, multiply, render, sigmoid, subtract

__all__ = ["values", "expressions", "mlps", "Expression", "Network"]

Node = tuple[str, tuple[int, ...], tuple[float, ...]]  # op name, operand indices, the op's constants


def _check_range(min_value: float, max_value: float, who: str) -> None:
    if not (checks.is_real(min_value) and checks.is_real(max_value) and math.isfinite(min_value)
            and math.isfinite(max_value) and min_value <= max_value):
        raise ValueError(f"{who}: need finite min_value <= max_value, got {min_value!r}, {max_value!r}")


def values(min_value: float = -3.0, max_value: float = 3.0) -> st.SearchStrategy[Value]:
    """Leaf Values with finite data in ``[min_value, max_value]``.

        >>> from hypothesis import given
        >>> @given(values(0.5, 2.0))
        ... def test_log_derivative(v):
        ...     v.log().backward()
        ...     assert abs(v.grad - 1 / v.data) < 1e-12
        >>> test_log_derivative()
    """
    _check_range(min_value, max_value, "values")
    return st.floats(min_value, max_value, allow_nan=False, allow_infinity=False).map(Value)


# -- expressions ---------------------------------------------------------------------------------

def _into(interval: tuple[float, float], a: Any) -> Any:
    """``a`` (any real) mapped into ``interval`` with registry ops, so it works on Values and floats alike:
    ``lo + a*a``, ``hi - a*a`` or ``lo + (hi - lo) * sigmoid(a)``."""
    lo, hi = interval
    if math.isinf(lo) and math.isinf(hi):
        return a
    if math.isinf(hi):
        return add(lo, multiply(a, a))
    if math.isinf(lo):
        return subtract(hi, multiply(a, a))
    return add(lo, multiply(hi - lo, sigmoid(a)))


def _into_text(interval: tuple[float, float], a: str) -> str:
    lo, hi = interval
    if math.isinf(lo) and math.isinf(hi):
        return a
    if math.isinf(hi):
        return f"({lo!r} + {a}*{a})"
    if math.isinf(lo):
        return f"({hi!r} - {a}*{a})"
    return f"({lo!r} + {hi - lo!r}*sigmoid({a}))"


def _inputs(op: Op, operands: Sequence[Any], constants: Iterable[Any], into: Any) -> list[Any]:
    """The op's inputs: each drawn operand mapped into its domain interval, each constant in its place."""
    inputs, drawn, fixed = [], iter(operands), iter(constants)
    for i, interval in enumerate(op.domain):
        inputs.append(next(fixed) if i in op.constants else into(interval, next(drawn)))
    return inputs


@dataclass(frozen=True)
class Expression:
    """A random computation graph over ``len(inputs)`` variables x0, x1, ...

    ``build(*args)`` runs it on Values (or numbers) and returns a Value; ``evaluate(*floats)``
    runs the same registry ops on plain floats; ``inputs`` is the drawn point; ``text`` the
    program, one node per line in the formula language (``n2 = tanh(n0)``), the output last.
    """

    nodes: tuple[Node, ...]
    inputs: tuple[float, ...]

    def _run(self, args: Sequence[Any]) -> list[Any]:
        """Every node's result (inputs first), then the output: the last node plus every unused node."""
        results = list(args)
        for name, operands, constants in self.nodes:
            op = OPS[name]
            results.append(op(*_inputs(op, [results[i] for i in operands], constants, _into)))
        out = results[-1]
        for k in self._unused():
            out = out + results[k]
        return [*results, out]

    def _unused(self) -> list[int]:
        used = {i for _, operands, _ in self.nodes for i in operands}
        n = len(self.inputs)
        return [k for k in range(n, n + len(self.nodes) - 1) if k not in used]

    def build(self, *args: Any) -> Value:
        """The graph on Values: ``e.build(*map(Value, e.inputs))``."""
        if len(args) != len(self.inputs):
            raise TypeError(f"this expression takes {len(self.inputs)} arguments, got {len(args)}")
        return self._run(args)[-1]

    def evaluate(self, *args: float) -> float:
        """The same ops on plain floats."""
        return self._run([float(a) for a in args])[-1]

    @property
    def text(self) -> str:
        """The program, one ``nK = ...`` line per node, then ``out = ...``."""
        n = len(self.inputs)
        names = [f"x{i}" for i in range(n)] + [f"n{k}" for k in range(len(self.nodes))]
        lines = []
        for k, (name, operands, constants) in enumerate(self.nodes):
            op = OPS[name]
            pieces = [Piece(text) for text in _inputs(op, [names[i] for i in operands], map(repr, constants),
                                                      _into_text)]
            lines.append(f"n{k} = {render(op.formula, pieces)}")
        sinks = [names[-1], *(names[k] for k in self._unused())]
        return "\n".join([*lines, "out = " + " + ".join(sinks)])

    def __repr__(self) -> str:
        return f"Expression(inputs={self.inputs!r}, program={self.text.replace(chr(10), '; ')!r})"


def _well_conditioned(e: Expression, bound: float, margin: float) -> bool:
    """Finite and within ``bound`` everywhere, with every operand at least ``margin`` from its op's kinks."""
    try:
        results = e._run(e.inputs)
    except (ArithmeticError, ValueError):
        return False
    for name, operands, constants in e.nodes:
        op = OPS[name]
        if op.kinks:
            for x in _inputs(op, [results[i] for i in operands], constants, _into):
                if any(abs(x - kink) < margin for kink in op.kinks):
                    return False
    return all(abs(r) <= bound for r in results[len(e.inputs):])


def _constant_choices(interval: tuple[float, float]) -> list[float]:
    """Round numbers in ``interval`` to use as an op's constant (e.g. the exponent of ``x ** 2``)."""
    lo, hi = max(interval[0], -4.0), min(interval[1], 4.0)
    return [k / 2 for k in range(math.ceil(2 * lo), math.floor(2 * hi) + 1)] or [lo]


def expressions(ops: Sequence[str] | None = None, max_depth: int = 3, n_vars: int = 2, max_nodes: int = 6,
                min_value: float = -3.0, max_value: float = 3.0) -> st.SearchStrategy[Expression]:
    """Random computation graphs over ``ops`` (default: every op in the registry) with node reuse, at
    most ``max_depth`` ops deep.

    Each of 1..``max_nodes`` nodes applies an op to earlier nodes or to the inputs x0..x{n_vars-1}
    (drawn in ``[min_value, max_value]``), so nodes are shared; the output is the last node plus
    every node nothing else used. Each operand is mapped into the interval the registry gives for
    that input (``log(0.5 + a*a)``, ``a / (1 + b*b)``), an op's constants are round numbers from
    theirs. Draws whose values exceed 100 in size, or that put an operand within 1e-4 of its op's
    kinks (relu and abs at 0), are rejected, so finite differences are accurate at the drawn point.

        >>> from hypothesis import given
        >>> @given(expressions(ops=("+", "*", "exp", "sigmoid"), max_depth=2, n_vars=3))
        ... def test_forward_matches_floats(e):
        ...     assert abs(e.build(*map(Value, e.inputs)).data - e.evaluate(*e.inputs)) < 1e-9
        >>> test_forward_matches_floats()
    """
    names = tuple(OPS) if ops is None else tuple(ops)
    unknown = [op for op in names if op not in OPS]
    if unknown or not names:
        problem = f"unknown ops {unknown!r}" if unknown else "no ops given"
        raise ValueError(f"expressions: {problem} (choose from {', '.join(OPS)})")
    for option, n in (("max_depth", max_depth), ("n_vars", n_vars), ("max_nodes", max_nodes)):
        checks.whole(n, f"expressions: {option}", 1)
    _check_range(min_value, max_value, "expressions")

    @st.composite
    def draw_expression(draw: Any) -> Expression:
        depths = [0] * n_vars
        nodes: list[Node] = []
        for _ in range(draw(st.integers(1, max_nodes))):
            op = OPS[draw(st.sampled_from(names))]
            usable = [i for i, d in enumerate(depths) if d < max_depth]
            drawn = len(op.domain) - len(op.constants)
            operands = tuple(draw(st.sampled_from(usable)) for _ in range(drawn))
            constants = tuple(draw(st.sampled_from(_constant_choices(op.domain[i]))) for i in op.constants)
            nodes.append((op.name, operands, constants))
            depths.append(1 + max(depths[i] for i in operands))
        point = st.floats(min_value, max_value, allow_nan=False, allow_infinity=False)
        e = Expression(tuple(nodes), tuple(draw(point) for _ in range(n_vars)))
        assume(_well_conditioned(e, bound=100.0, margin=1e-4))
        return e

    return draw_expression()


# -- MLPs ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Network:
    """A random MLP with an input ``x`` and a ``target``, and the same network on plain floats.

    ``loss()`` is the engine's ``1/2 sum (y_k - target_k)^2`` through ``model(x)``;
    ``float_loss(params)`` the same loss on floats for a flat parameter list in
    ``model.parameters()`` order; ``params()`` the model's current parameters as floats.
    """

    model: MLP
    x: tuple[float, ...]
    target: tuple[float, ...]
    sizes: tuple[int, ...]
    activations: tuple[str, ...]

    def params(self) -> list[float]:
        """The model's parameters as floats, in ``model.parameters()`` order."""
        return [p.data for p in self.model.parameters()]

    def loss(self) -> Value:
        """``1/2 sum (y_k - target_k)^2`` through the model, on the engine."""
        out = self.model(list(self.x))
        outputs = out if isinstance(out, list) else [out]
        total = 0.5 * (outputs[0] - self.target[0]) ** 2
        for y, t in zip(outputs[1:], self.target[1:]):
            total = total + 0.5 * (y - t) ** 2
        return total

    def float_loss(self, params: Sequence[float]) -> float:
        """The same loss on plain floats, for ``params`` laid out as ``model.parameters()``."""
        it = iter(params)
        a = list(self.x)
        for nin, nout, name in zip(self.sizes, self.sizes[1:], self.activations):
            rows = [[next(it) for _ in range(nin + 1)] for _ in range(nout)]
            a = [OPS[name](sum(w * v for w, v in zip(row, a)) + row[-1]) for row in rows]
        return sum(0.5 * (y - t) ** 2 for y, t in zip(a, self.target))


def mlps(max_inputs: int = 3, hidden_layers: tuple[int, int] = (1, 3), max_width: int = 4, max_outputs: int = 2,
         activations: Sequence[str] = ("sigmoid", "tanh"), weight_range: float = 2.0) -> st.SearchStrategy[Network]:
    """Random MLPs: 1..``max_inputs`` inputs, a number of hidden layers in ``hidden_layers``, each
    1..``max_width`` wide, 1..``max_outputs`` outputs, one activation per layer from ``activations``
    (registry ops of one input, "linear" among them), weights and biases in ``[-weight_range, weight_range]``,
    input in [-1, 1], target in [0, 1].

        >>> from hypothesis import given, settings
        >>> from microgd import gradients
        >>> from microgd.check import numeric_gradient
        >>> @settings(max_examples=10)
        ... @given(mlps())
        ... def test_backprop(net):
        ...     engine = gradients(net.loss(), net.model.parameters())
        ...     numeric = numeric_gradient(lambda *p: net.float_loss(p), *net.params())
        ...     assert all(abs(e - n) < 1e-6 for e, n in zip(engine, numeric))
        >>> test_backprop()
    """
    for option, n in (("max_inputs", max_inputs), ("max_width", max_width), ("max_outputs", max_outputs)):
        checks.whole(n, f"mlps: {option}", 1)
    lo = checks.whole(hidden_layers[0], "mlps: hidden_layers[0]", 0)
    hi = checks.whole(hidden_layers[1], "mlps: hidden_layers[1]", lo)
    checks.number(weight_range, "mlps: weight_range", above=0)
    choices = activation_names()
    unknown = [a for a in activations if a not in choices]
    if unknown or not activations:
        problem = f"unknown activations {unknown!r}" if unknown else "no activations given"
        raise ValueError(f"mlps: {problem} (choose from {', '.join(choices)})")

    @st.composite
    def draw_network(draw: Any) -> Network:
        nin = draw(st.integers(1, max_inputs))
        widths = draw(st.lists(st.integers(1, max_width), min_size=lo, max_size=hi))
        sizes = (nin, *widths, draw(st.integers(1, max_outputs)))
        acts = tuple(draw(st.sampled_from(tuple(activations))) for _ in sizes[1:])
        weight = st.floats(-weight_range, weight_range, allow_nan=False)
        weights = [[draw(st.lists(weight, min_size=fan_in + 1, max_size=fan_in + 1)) for _ in range(fan_out)]
                   for fan_in, fan_out in itertools.pairwise(sizes)]
        x = draw(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=nin, max_size=nin))
        target = draw(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=sizes[-1], max_size=sizes[-1]))
        model = MLP(nin, list(sizes[1:]), activations=list(acts), weights=weights)
        return Network(model, tuple(x), tuple(target), sizes, acts)

    return draw_network()
