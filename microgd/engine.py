"""Value: a scalar that records the operations applied to it, and reverse-mode
differentiation over the recorded graph (iterative: no recursion limit, any depth).

    >>> from microgd import Value
    >>> x = Value(2.0); y = x * x + x.tanh()
    >>> y.backward(); round(x.grad, 6)
    4.070651
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Union

from .rules import RULES, DomainError

Number = Union[int, float]
Operand = Union["Value", int, float]

__all__ = ["Value", "DomainError", "no_grad", "is_recording", "gradients", "grad"]

_recording = True  # switched off inside `no_grad()`


def _leaf_data(data) -> float:
    """Check and convert what a user hands to ``Value(...)``: a finite real number."""
    if type(data) is not float:
        if isinstance(data, (str, bytes, Value)) or not hasattr(data, "__float__") or isinstance(data, complex):
            raise TypeError(f"Value() takes a real number, got {type(data).__name__}: {data!r}")
        try:
            data = float(data)
        except OverflowError:
            raise ValueError(f"Value() takes a finite number, got {data!r}, too large for a float") from None
    if not math.isfinite(data):
        raise ValueError(f"Value() takes a finite number, got {data!r} (nan and inf are rejected at the door)")
    return data


class Value:
    """A scalar in a computation graph: ``data``, ``grad`` and how it was made.

    Compatible with micrograd's ``Value``: the same constructor, ``data``, ``grad``,
    operators and ``backward()``. Inputs must be finite real numbers (``Value(nan)``
    is a ValueError, ``Value("a")`` a TypeError); ops outside their domain
    (``log(0)``, ``(-8) ** 0.5``, ``x / 0``, ``exp(1000)``) raise :class:`DomainError`.

        >>> a = Value(3.0, label="a"); b = a * a
        >>> b.backward(); a.grad
        6.0
    """

    __slots__ = ("data", "grad", "_op", "_parents", "label")

    def __init__(self, data: Number, _children: tuple = (), _op: str = "", label: str = ""):
        if _children and _recording:
            self.data = data  # made by an op: already a float
            self._parents = _children
            self._op = _op
        else:
            self.data = data if _children else _leaf_data(data)
            self._parents = ()
            self._op = "" if _children else _op
        self.grad = 0.0
        self.label = label

    # -- reading the graph (the public walk used by viz, stepper and check) --

    @property
    def op(self) -> str:
        """The op that made this node: '' for a leaf, 'const' for a wrapped number."""
        return self._op

    @property
    def parents(self) -> tuple:
        """The nodes this one was computed from, in argument order, duplicates kept."""
        return self._parents

    @property
    def _prev(self) -> set:  # micrograd's name for the parents
        return set(self._parents)

    @property
    def _backward(self):  # micrograd's per-node closure: microgd nodes have none
        raise AttributeError(_NO_CLOSURES)

    @_backward.setter
    def _backward(self, closure) -> None:
        raise AttributeError(_NO_CLOSURES)

    def local_grads(self) -> tuple:
        """d self / d parent for each parent, from the rule table: ``(x * y).local_grads() == (y, x)``."""
        if not self._parents:
            return ()
        return RULES[self._op].vjp(1.0, self.data, *[p.data for p in self._parents])

    def topo(self) -> list:
        """Every node of the graph once, parents before children, ``self`` last.

        ``reversed(v.topo())`` is the exact order in which ``v.backward()`` applies the rules.
        """
        return _backward_order(self)[::-1]

    # -- ops: forward on floats here, every derivative in rules.RULES --

    def __add__(self, other: Operand) -> Value:
        other = other if isinstance(other, Value) else _const(other)
        return Value(self.data + other.data, (self, other), "+")

    def __sub__(self, other: Operand) -> Value:
        other = other if isinstance(other, Value) else _const(other)
        return Value(self.data - other.data, (self, other), "-")

    def __mul__(self, other: Operand) -> Value:
        other = other if isinstance(other, Value) else _const(other)
        return Value(self.data * other.data, (self, other), "*")

    def __truediv__(self, other: Operand) -> Value:
        other = other if isinstance(other, Value) else _const(other)
        return _apply("/", self, other)

    def __pow__(self, other: Operand) -> Value:
        if isinstance(other, Value):
            return _apply("powc" if other._op == "const" else "pow", self, other)
        return _apply("powc", self, _const(other))

    def __neg__(self) -> Value:
        return _apply("neg", self)

    def __radd__(self, other: Operand) -> Value:  # other + self
        return _const(other) + self

    def __rsub__(self, other: Operand) -> Value:  # other - self
        return _const(other) - self

    def __rmul__(self, other: Operand) -> Value:  # other * self
        return _const(other) * self

    def __rtruediv__(self, other: Operand) -> Value:  # other / self
        return _const(other) / self

    def __rpow__(self, other: Operand) -> Value:  # other ** self
        return _apply("pow", _const(other), self)

    def exp(self) -> Value:
        return _apply("exp", self)

    def log(self) -> Value:
        return _apply("log", self)

    def tanh(self) -> Value:
        return _apply("tanh", self)

    def sigmoid(self) -> Value:
        return _apply("sigmoid", self)

    def relu(self) -> Value:
        return _apply("relu", self)

    def __abs__(self) -> Value:
        return _apply("abs", self)

    abs = __abs__

    @staticmethod
    def dot(weights: list, inputs: list, bias: Operand) -> Value:
        """``sum(w * x) + bias`` as one node (a neuron's weighted sum): ``Value.dot([w1, w2], [x1, x2], b)``."""
        if len(weights) != len(inputs):
            raise ValueError(f"dot: {len(weights)} weights but {len(inputs)} inputs")
        return _apply("dot", *[v if isinstance(v, Value) else _const(v) for v in (*weights, *inputs, bias)])

    def __float__(self) -> float:
        return self.data

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data}, grad={self.grad}{label})"

    # -- differentiation --

    def backward(self) -> None:
        """Fill ``.grad`` of every node with d self / d node, by the chain rule.

        Iterative (no recursion limit), each node processed once, reuse summed exactly.
        Leaves *accumulate* across calls, as in PyTorch (so per-sample calls sum up:
        call ``zero_grad`` between steps); interior nodes hold the latest call's gradient.
        """
        order = _backward_order(self, leaves=False)
        for node in order:
            if node._parents:
                node.grad = 0.0
        self.grad += 1.0
        rules = RULES
        try:
            for node in order:
                parents = node._parents
                if len(parents) == 2:  # the common case, unrolled
                    a, b = parents
                    da, db = rules[node._op].vjp(node.grad, node.data, a.data, b.data)
                    a.grad += da
                    b.grad += db
                elif parents:
                    contribution = rules[node._op].vjp(node.grad, node.data, *[p.data for p in parents])
                    for parent, c in zip(parents, contribution):
                        parent.grad += c
        except (ArithmeticError, ValueError) as error:
            raise _backward_error(node, error) from error
        except KeyError:
            raise _missing_rule(node) from None


_NO_CLOSURES = "microgd nodes carry no _backward closures; every op's derivative is a rule in microgd.rules.RULES"


def _const(number) -> Value:
    """A Python number taking part in an op, as a leaf marked 'const' (never differentiated)."""
    return Value(number, (), "const")


def _apply(op: str, *parents: Value) -> Value:
    """Run ``op``'s forward from the rule table on the parents' data and record the node."""
    return Value(RULES[op].forward(*[p.data for p in parents]), parents, op)


def _backward_order(root: Value, leaves: bool = True) -> list:
    """Every node reachable from ``root`` once, each after all of its consumers (root first).

    Backward needs no order among leaves (they pass nothing on): ``leaves=False`` leaves them out.
    """
    consumers: dict = {}
    stack = [root]
    while stack:
        for parent in stack.pop()._parents:
            if parent in consumers:
                consumers[parent] += 1
            elif leaves or parent._parents:
                consumers[parent] = 1
                stack.append(parent)
    order = [root]
    for node in order:  # Kahn's algorithm: `order` grows while we walk it
        for parent in node._parents:
            if parent in consumers:
                left = consumers[parent] - 1
                consumers[parent] = left
                if not left:
                    order.append(parent)
    return order


def _missing_rule(node: Value) -> TypeError:
    return TypeError(f"backward: no derivative rule for op {node._op!r}: {_NO_CLOSURES}")


def _backward_error(node: Value, error: Exception) -> DomainError:
    operands = ", ".join(repr(p.data) for p in node._parents)
    return DomainError(f"backward of {node._op}({operands}) failed: {error}")


class no_grad:
    """Context manager: ops inside record no graph (parameter updates, inference).

        >>> with no_grad():
        ...     y = Value(2.0) * 3
        >>> y.parents
        ()
    """

    def __enter__(self) -> no_grad:
        global _recording
        self._was_recording, _recording = _recording, False
        return self

    def __exit__(self, *exc_info) -> None:
        global _recording
        _recording = self._was_recording


def is_recording() -> bool:
    """False inside ``no_grad()``."""
    return _recording


def gradients(output: Value, inputs: Iterable[Value], create_graph: bool = False) -> list:
    """d output / d input for each input, without touching any ``.grad``.

    With ``create_graph=True`` the gradients are Values that are themselves
    differentiable (higher order); otherwise floats.

        >>> x = Value(3.0)
        >>> gradients(x * x, [x])
        [6.0]
    """
    if create_graph and not _recording:
        raise RuntimeError("gradients(create_graph=True) cannot build a graph inside no_grad()")
    adjoint: dict = {output: _const(1.0) if create_graph else 1.0}
    node = output
    try:
        for node in _backward_order(output, leaves=False):
            parents = node._parents
            if not parents or node not in adjoint:
                continue
            if create_graph:
                args = [p.data if p._op == "const" else p for p in parents]
                contribution = RULES[node._op].vjp(adjoint[node], node, *args)
            else:
                contribution = RULES[node._op].vjp(adjoint[node], node.data, *[p.data for p in parents])
            for parent, c in zip(parents, contribution):
                if create_graph and parent._op == "const":
                    continue
                adjoint[parent] = adjoint[parent] + c if parent in adjoint else c
    except (ArithmeticError, ValueError) as error:
        raise _backward_error(node, error) from error
    except KeyError:
        raise _missing_rule(node) from None
    return [adjoint.get(x, 0.0) for x in inputs]


def grad(f: Callable, argnums: int | tuple[int, ...] = 0) -> Callable:
    """The derivative of ``f`` with respect to argument ``argnums`` (an int or a tuple).

    Called on numbers it returns floats; called on Values it builds a
    differentiable graph, so ``grad(grad(f))`` is the exact second derivative.

        >>> grad(lambda x: x * x * x)(2.0)
        12.0
        >>> grad(grad(lambda x: x * x * x))(2.0)
        12.0
    """
    wanted = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    def derivative(*args):
        for i in wanted:
            if not -len(args) <= i < len(args):
                raise IndexError(f"grad: argnums {i} is out of range for {len(args)} argument(s)")
        positions = [i % len(args) for i in wanted]
        create_graph = any(isinstance(a, Value) for a in args)
        args = [a if i not in positions or isinstance(a, Value) else Value(a) for i, a in enumerate(args)]
        if create_graph and not _recording:
            raise RuntimeError("grad() on Values cannot build a graph inside no_grad()")
        out = f(*args)
        if isinstance(out, Value):
            found = gradients(out, [args[i] for i in positions], create_graph)
        elif isinstance(out, (int, float)):
            found = [0.0] * len(positions)  # f does not depend on its arguments
        else:
            raise TypeError(f"grad: f must return a Value or a number, got {type(out).__name__}")
        return found[0] if isinstance(argnums, int) else tuple(found)

    return derivative
