"""Hypothesis strategies for testing gradients: scalar Values, random expression graphs, random MLPs.

Each strategy yields the object together with what is needed to evaluate it numerically,
so a test can hold the engine against plain-float arithmetic or finite differences:

    >>> from hypothesis import given
    >>> from microgd.check import gradcheck
    >>> from microgd.testing import expressions
    >>> @given(expressions(ops=("*", "tanh", "log"), max_depth=3))
    ... def test_engine_matches_finite_differences(e):
    ...     assert gradcheck(e.build, *e.inputs, order=2)
    >>> test_engine_matches_finite_differences()
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from hypothesis import assume
from hypothesis import strategies as st

from .engine import Value
from .nn import MLP

__all__ = ["values", "expressions", "mlps", "Expression", "Network", "OPS"]

# op -> number of operands drawn from earlier nodes
_ARITY = {"+": 2, "-": 2, "*": 2, "/": 2, "pow": 2, "neg": 1, "powc": 1, "exp": 1, "log": 1, "tanh": 1,
          "sigmoid": 1, "relu": 1, "abs": 1, "dot": 5}
OPS = tuple(_ARITY)
_POWERS = (2, 3, 0.5, -1.5)  # constant exponents for "powc"; the non-integer ones get a positive base
_KINKED = ("relu", "abs")


def _check_range(min_value: float, max_value: float, who: str) -> None:
    if not (math.isfinite(min_value) and math.isfinite(max_value) and min_value <= max_value):
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

def _sigmoid(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _apply(op: str, args: list, power, exp, log, tanh, sigmoid, relu, dot):
    """One node, written once for Values and floats alike; each op kept inside its domain."""
    a = args[0]
    if op == "+":
        return a + args[1]
    if op == "-":
        return a - args[1]
    if op == "*":
        return a * args[1]
    if op == "/":
        return a / (1 + args[1] * args[1])
    if op == "pow":
        return (a * a + 1) ** args[1]
    if op == "powc":
        return (a if power == int(power) else a * a + 1) ** power
    if op == "neg":
        return -a
    if op == "log":
        return log(a * a + 1)
    if op == "abs":
        return abs(a)
    if op == "dot":
        return dot(args[:2], args[2:4], args[4])
    return {"exp": exp, "tanh": tanh, "sigmoid": sigmoid, "relu": relu}[op](a)


_ON_VALUES = dict(exp=Value.exp, log=Value.log, tanh=Value.tanh, sigmoid=Value.sigmoid, relu=Value.relu,
                  dot=Value.dot)
_ON_FLOATS = dict(exp=math.exp, log=math.log, tanh=math.tanh, sigmoid=_sigmoid, relu=lambda x: max(x, 0.0),
                  dot=lambda w, x, b: w[0] * x[0] + w[1] * x[1] + b)


def _text(op: str, names: list, power) -> str:
    a = names[0]
    binary = {"+": f"{a} + {names[-1]}", "-": f"{a} - {names[-1]}", "*": f"{a} * {names[-1]}",
              "/": f"{a} / (1 + {names[-1]}*{names[-1]})", "pow": f"({a}*{a} + 1) ** {names[-1]}"}
    if op in binary:
        return binary[op]
    if op == "powc":
        return f"{a} ** {power}" if power == int(power) else f"({a}*{a} + 1) ** {power}"
    if op == "log":
        return f"log({a}*{a} + 1)"
    if op == "dot":
        return f"dot([{names[0]}, {names[1]}], [{names[2]}, {names[3]}], {names[4]})"
    return f"-{a}" if op == "neg" else f"{op}({a})"


@dataclass(frozen=True)
class Expression:
    """A random computation graph over ``len(inputs)`` variables x0, x1, ...

    ``build(*args)`` runs it on Values (or numbers) and returns a Value; ``evaluate(*floats)``
    runs the same arithmetic on plain floats; ``inputs`` is the drawn point; ``text`` the
    program, one node per line (``n2 = tanh(n0)``), the output last.
    """

    nodes: tuple  # (op, operand indices, constant exponent or None); indices < n_vars are inputs
    inputs: tuple[float, ...]

    def _run(self, args: Sequence, impl: dict) -> list:
        """Every node's result (inputs first), then the output: the last node plus every unused node."""
        results = list(args)
        for op, operands, power in self.nodes:
            results.append(_apply(op, [results[i] for i in operands], power, **impl))
        used = {i for _, operands, _ in self.nodes for i in operands}
        n = len(self.inputs)
        out = results[-1]
        for k in range(n, len(results) - 1):
            if k not in used:
                out = out + results[k]
        return results + [out]

    def build(self, *args) -> Value:
        """The graph on Values: ``e.build(*map(Value, e.inputs))``."""
        if len(args) != len(self.inputs):
            raise TypeError(f"this expression takes {len(self.inputs)} arguments, got {len(args)}")
        return self._run(args, _ON_VALUES)[-1]

    def evaluate(self, *args: float) -> float:
        """The same arithmetic on plain floats."""
        return self._run([float(a) for a in args], _ON_FLOATS)[-1]

    @property
    def text(self) -> str:
        """The program, one ``nK = ...`` line per node, then ``out = ...``."""
        n = len(self.inputs)
        names = [f"x{i}" for i in range(n)] + [f"n{k}" for k in range(len(self.nodes))]
        lines = [f"n{k} = {_text(op, [names[i] for i in operands], power)}"
                 for k, (op, operands, power) in enumerate(self.nodes)]
        used = {i for _, operands, _ in self.nodes for i in operands}
        sinks = [names[-1]] + [names[k] for k in range(n, len(names) - 1) if k not in used]
        return "\n".join(lines + ["out = " + " + ".join(sinks)])

    def __repr__(self) -> str:
        return f"Expression(inputs={self.inputs!r}, program={self.text.replace(chr(10), '; ')!r})"


def _well_conditioned(e: Expression, bound: float, margin: float) -> bool:
    """Finite and within ``bound`` everywhere, with every relu/abs operand at least ``margin`` from its kink."""
    try:
        results = e._run(e.inputs, _ON_FLOATS)
    except (ArithmeticError, ValueError):
        return False
    n = len(e.inputs)
    for op, operands, _ in e.nodes:
        if op in _KINKED and abs(results[operands[0]]) < margin:
            return False
    return all(abs(r) <= bound for r in results[n:])


def expressions(ops: Sequence[str] = OPS, max_depth: int = 3, n_vars: int = 2, max_nodes: int = 6,
                min_value: float = -3.0, max_value: float = 3.0) -> st.SearchStrategy[Expression]:
    """Random computation graphs over ``ops`` with node reuse, at most ``max_depth`` ops deep.

    Each of 1..``max_nodes`` nodes applies an op to earlier nodes or to the inputs x0..x{n_vars-1}
    (drawn in ``[min_value, max_value]``), so nodes are shared; the output is the last node plus
    every node nothing else used. Ops stay inside their domains by construction: ``log(a*a + 1)``,
    ``a / (1 + b*b)``, ``(a*a + 1) ** b``, non-integer constant powers of ``a*a + 1``. Draws whose
    values exceed 100 in size, or that put a relu/abs operand within 1e-4 of its kink, are
    rejected, so finite differences are accurate at the drawn point.

        >>> from hypothesis import given
        >>> @given(expressions(ops=("+", "*", "exp", "sigmoid"), max_depth=2, n_vars=3))
        ... def test_forward_matches_floats(e):
        ...     assert abs(e.build(*map(Value, e.inputs)).data - e.evaluate(*e.inputs)) < 1e-9
        >>> test_forward_matches_floats()
    """
    unknown = [op for op in ops if op not in _ARITY]
    if unknown or not ops:
        problem = f"unknown ops {unknown!r}" if unknown else "no ops given"
        raise ValueError(f"expressions: {problem} (choose from {', '.join(OPS)})")
    if max_depth < 1 or n_vars < 1 or max_nodes < 1:
        raise ValueError(f"expressions: max_depth, n_vars and max_nodes must be >= 1, "
                         f"got {max_depth}, {n_vars}, {max_nodes}")
    _check_range(min_value, max_value, "expressions")
    ops = tuple(ops)

    @st.composite
    def draw_expression(draw) -> Expression:
        depths = [0] * n_vars
        nodes = []
        for _ in range(draw(st.integers(1, max_nodes))):
            op = draw(st.sampled_from(ops))
            usable = [i for i, d in enumerate(depths) if d < max_depth]
            operands = tuple(draw(st.sampled_from(usable)) for _ in range(_ARITY[op]))
            power = draw(st.sampled_from(_POWERS)) if op == "powc" else None
            nodes.append((op, operands, power))
            depths.append(1 + max(depths[i] for i in operands))
        point = st.floats(min_value, max_value, allow_nan=False, allow_infinity=False)
        e = Expression(tuple(nodes), tuple(draw(point) for _ in range(n_vars)))
        assume(_well_conditioned(e, bound=100.0, margin=1e-4))
        return e

    return draw_expression()


# -- MLPs ----------------------------------------------------------------------------------------

_ACTIVATIONS = {"sigmoid": _sigmoid, "tanh": math.tanh, "relu": lambda s: max(s, 0.0), "linear": lambda s: s}


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
            act = _ACTIVATIONS[name]
            rows = [[next(it) for _ in range(nin + 1)] for _ in range(nout)]
            a = [act(sum(w * v for w, v in zip(row, a)) + row[-1]) for row in rows]
        return sum(0.5 * (y - t) ** 2 for y, t in zip(a, self.target))


def mlps(max_inputs: int = 3, hidden_layers: tuple[int, int] = (1, 3), max_width: int = 4, max_outputs: int = 2,
         activations: Sequence[str] = ("sigmoid", "tanh"), weight_range: float = 2.0) -> st.SearchStrategy[Network]:
    """Random MLPs: 1..``max_inputs`` inputs, a number of hidden layers in ``hidden_layers``, each
    1..``max_width`` wide, 1..``max_outputs`` outputs, one activation per layer from ``activations``,
    weights and biases in ``[-weight_range, weight_range]``, input in [-1, 1], target in [0, 1].

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
    lo, hi = hidden_layers
    if not (1 <= max_inputs and 0 <= lo <= hi and 1 <= max_width and 1 <= max_outputs):
        raise ValueError(f"mlps: need max_inputs, max_width, max_outputs >= 1 and 0 <= low <= high hidden layers, "
                         f"got {max_inputs}, {hidden_layers}, {max_width}, {max_outputs}")
    if not (math.isfinite(weight_range) and weight_range > 0):
        raise ValueError(f"mlps: weight_range must be a finite number > 0, got {weight_range!r}")
    unknown = [a for a in activations if a not in _ACTIVATIONS]
    if unknown or not activations:
        problem = f"unknown activations {unknown!r}" if unknown else "no activations given"
        raise ValueError(f"mlps: {problem} (choose from {', '.join(_ACTIVATIONS)})")

    @st.composite
    def draw_network(draw) -> Network:
        nin = draw(st.integers(1, max_inputs))
        widths = draw(st.lists(st.integers(1, max_width), min_size=lo, max_size=hi))
        sizes = (nin, *widths, draw(st.integers(1, max_outputs)))
        acts = tuple(draw(st.sampled_from(tuple(activations))) for _ in sizes[1:])
        weight = st.floats(-weight_range, weight_range, allow_nan=False)
        weights = [[draw(st.lists(weight, min_size=fan_in + 1, max_size=fan_in + 1)) for _ in range(fan_out)]
                   for fan_in, fan_out in zip(sizes, sizes[1:])]
        x = draw(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=nin, max_size=nin))
        target = draw(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=sizes[-1], max_size=sizes[-1]))
        model = MLP(nin, list(sizes[1:]), activations=list(acts), weights=weights)
        return Network(model, tuple(x), tuple(target), sizes, acts)

    return draw_network()
