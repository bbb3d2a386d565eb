"""Value: a scalar that records the operations applied to it, and reverse-mode differentiation over the
recorded graph (iterative: no recursion limit, any depth). Every derivative comes from :mod:`microgd.rules`;
backward applies the rules through a loop compiled from them (:mod:`microgd.compiled`).

    >>> from microgd import Value
    >>> x = Value(2.0); y = x * x + x.tanh()
    >>> y.backward(); round(x.grad, 6)
    4.070651
"""

from __future__ import annotations

import contextvars
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from math import isfinite
from operator import attrgetter
from typing import Any, Union

from . import compiled, rules
from .rules import OPS, DomainError, Op, non_finite

Number = Union[int, float]
Operand = Union["Value", int, float]

__all__ = ["Value", "DomainError", "RuleError", "no_grad", "is_recording", "gradients", "grad"]

_recording: contextvars.ContextVar[bool] = contextvars.ContextVar("microgd_recording", default=True)
_stamps = itertools.count()  # creation order: every node is newer than its parents
_CONSTANT = object()  # the _rule of a Python number taking part in an op (a leaf never differentiated)
_stamp_of = attrgetter("_stamp")
_grad_of = attrgetter("grad")
_data_of = attrgetter("data")
_new = object.__new__
_apply_rules = compiled.backward_loop()  # backward's loop: every node's rule, compiled from the registry


class RuleError(TypeError):
    """An op's vjp rule broke the registry's contract (e.g. returned the wrong number of entries)."""


def _leaf_data(data: Any) -> float:
    """Check and convert what a user hands to ``Value(...)``: a finite real number."""
    if type(data) is not float:
        if isinstance(data, (str, bytes, Value, complex)) or not hasattr(data, "__float__"):
            raise TypeError(f"Value() takes a real number, got {type(data).__name__}: {data!r}")
        try:
            data = float(data)
        except OverflowError:
            raise ValueError(f"Value() takes a finite number, got {data!r}, too large for a float") from None
    if not isfinite(data):
        raise ValueError(f"Value() takes a finite number, got {data!r} (nan and inf are rejected at the door)")
    return data


def _operator(op: Op, name: str, reflected: bool = False) -> Callable[[Value, Operand], Value]:
    """Value's method ``name``: ``self <op> other`` (``other <op> self`` if ``reflected``), ``other`` a Value
    or a number. The node is made right here, without a further call: this is the hot path of every graph."""
    def method(self: Value, other: Operand) -> Value:
        if reflected:  # Python calls ``__radd__`` & co. with the number that stood on the left
            a, b = _const(other), self  # type: ignore[arg-type]
        else:
            a, b = self, other if isinstance(other, Value) else _const(other)
        data = op.forward(a.data, b.data)
        if not isfinite(data):
            raise non_finite(op.name, data, (a, b))
        node = _new(Value)
        node.data = data
        node.grad = 0.0
        node.label = ""
        node._stamp = next(_stamps)
        if _recording.get():
            node._parents = (a, b)
            node._rule = op
        else:
            node._parents = ()
            node._rule = None
        return node

    method.__name__, method.__qualname__ = name, f"Value.{name}"
    method.__doc__ = f"{'other' if reflected else 'self'} {op.name} {'self' if reflected else 'other'}"
    return method


class Value:
    """A scalar in a computation graph: ``data``, ``grad`` and how it was made.

    Compatible with micrograd's ``Value``: the same constructor, ``data``, ``grad``,
    operators, ``backward()``, ``_prev``, ``_op`` and ``_backward()``. Inputs must be finite real
    numbers (``Value(nan)`` is a ValueError, ``Value("a")`` a TypeError); an op outside its domain
    (``log(0)``, ``(-8) ** 0.5``, ``x / 0``, ``exp(1000)``) raises :class:`DomainError`.

        >>> a = Value(3.0, label="a"); b = a * a
        >>> b.backward(); a.grad
        6.0
    """

    __slots__ = ("data", "grad", "_parents", "_rule", "_stamp", "label")

    def __init__(self, data: Number, _children: tuple = (), _op: str = "", label: str = ""):
        self.data = _leaf_data(data)
        self.grad = 0.0
        self._parents: tuple[Value, ...] = ()
        self._rule: Any = None
        self._stamp = next(_stamps)
        self.label = label
        if _children:  # micrograd's internal way to make a node: Value(data, (a, b), '+')
            op, children = OPS.get(_op), tuple(_children)
            if op is None:
                raise RuleError(f"Value(..., _op={_op!r}): no op of that name in microgd.rules.OPS; "
                                "add one with microgd.define_op")
            if (op.arity is not None and len(children) != op.arity) or not all(isinstance(c, Value) for c in children):
                raise RuleError(f"Value(..., _op={_op!r}): the op takes {op.arity or 'any number of'} Value(s) as "
                                f"_children, got {children!r}")
            if _recording.get():
                self._parents, self._rule = children, op

    # -- reading the graph (the public walk used by pictures, the page, explain, tape and check) --

    @property
    def op(self) -> str:
        """The name of the op that made this node ('' for a leaf); its entry is ``microgd.rules.OPS[v.op]``."""
        return self._rule.name if self._parents else ""

    @property
    def is_constant(self) -> bool:
        """True for a leaf made from a Python number taking part in an op (``2`` in ``x * 2``)."""
        return self._rule is _CONSTANT

    @property
    def parents(self) -> tuple[Value, ...]:
        """The nodes this one was computed from, in argument order, duplicates kept."""
        return self._parents

    @property
    def _prev(self) -> set[Value]:  # micrograd's name for the parents
        return set(self._parents)

    @property
    def _op(self) -> str:  # micrograd's name for the op
        return self.op

    def local_grads(self) -> tuple[float, ...]:
        """d self / d parent for each parent, from the registry's rule: ``(x * y).local_grads() == (y, x)``."""
        return self.contributions(1.0)

    def contributions(self, upstream: float) -> tuple[float, ...]:
        """What backward adds to each parent's grad when this node's grad is ``upstream``: the rule's
        ``vjp(upstream, data, *parent data)``, exactly the call ``backward()`` makes."""
        if not self._parents:
            return ()
        return tuple(self._rule.vjp(upstream, self.data, *[p.data for p in self._parents]))

    @property
    def _backward(self) -> Callable[[], None]:
        """micrograd's per-node step, ``o._backward()``: adds this node's contribution to each parent's grad."""
        def step() -> None:
            for parent, c in zip(self._parents, self.contributions(self.grad)):
                parent.grad += c
        return step

    @_backward.setter
    def _backward(self, closure: object) -> None:
        raise AttributeError("microgd nodes carry no _backward closures: every op's derivative is a rule in the "
                             "registry (microgd.rules.OPS); add an op with microgd.define_op")

    def topo(self) -> list[Value]:
        """Every node of the graph once, parents before children, ``self`` last.

        ``reversed(v.topo())`` is the exact order in which ``v.backward()`` applies the rules.
        """
        return sorted(_reachable(self), key=_stamp_of)

    # -- ops: each applies its registry entry --

    __add__ = _operator(rules.add, "__add__")
    __radd__ = _operator(rules.add, "__radd__", reflected=True)
    __sub__ = _operator(rules.subtract, "__sub__")
    __rsub__ = _operator(rules.subtract, "__rsub__", reflected=True)
    __mul__ = _operator(rules.multiply, "__mul__")
    __rmul__ = _operator(rules.multiply, "__rmul__", reflected=True)
    __truediv__ = _operator(rules.divide, "__truediv__")
    __rtruediv__ = _operator(rules.divide, "__rtruediv__", reflected=True)

    def __pow__(self, other: Operand) -> Value:
        """``x ** 2`` (a number exponent: op ``powc``) or ``x ** y`` (a Value exponent: op ``pow``)."""
        if isinstance(other, Value):
            return _apply(rules.powc if other.is_constant else rules.power, self, other)
        return _apply(rules.powc, self, _const(other))

    def __rpow__(self, other: Number) -> Value:  # other ** self
        return _apply(rules.power, _const(other), self)

    def __neg__(self) -> Value:
        return _unary(rules.negate, self)

    def exp(self) -> Value:
        """e ** self."""
        return _unary(rules.exp, self)

    def log(self) -> Value:
        """The natural logarithm (self > 0)."""
        return _unary(rules.log, self)

    def tanh(self) -> Value:
        return _unary(rules.tanh, self)

    def sigmoid(self) -> Value:
        """1 / (1 + e ** -self), computed stably."""
        return _unary(rules.sigmoid, self)

    def relu(self) -> Value:
        """max(self, 0); its derivative at 0 is 0, as in PyTorch."""
        return _unary(rules.relu, self)

    def __abs__(self) -> Value:
        return _unary(rules.absolute, self)

    abs = __abs__

    @staticmethod
    def weighted_sum(weights: Sequence[Operand], inputs: Sequence[Operand], bias: Operand) -> Value:
        """``w_1 x_1 + ... + w_n x_n + bias`` as one node (a neuron's sum of products).

            >>> Value.weighted_sum([Value(2.0), 3.0], [1.0, Value(4.0)], 1.0).data
            15.0
        """
        if len(weights) != len(inputs):
            raise ValueError(f"weighted_sum: {len(weights)} weights but {len(inputs)} inputs")
        parents: tuple[Any, ...] = (*weights, *inputs, bias)
        try:  # all Values, the common case: no wrapping pass
            data = rules.weighted_sum.forward(*[v.data for v in parents])
        except AttributeError:  # some are numbers
            parents = tuple(v if isinstance(v, Value) else _const(v) for v in parents)
            data = rules.weighted_sum.forward(*map(_data_of, parents))
        return _node(rules.weighted_sum, data, parents)

    @classmethod
    def _microgd_apply_op(cls, op: Op, inputs: tuple) -> Value:
        """How a registry op called on Values records a node (``sin(Value(0.5))``)."""
        if len(inputs) == 1:  # an activation: the one input is the Value that brought us here
            return _unary(op, inputs[0])
        for i in op.constants:
            if isinstance(inputs[i], Value) and not inputs[i].is_constant:
                raise TypeError(f"{op.name}: input {i + 1} is a constant of the op and must be a number, "
                                f"got a Value")
        return _apply(op, *[x if isinstance(x, Value) else _const(x) for x in inputs])

    def __float__(self) -> float:
        raise TypeError(f"a Value is not a float: Python's math functions would drop it from the graph. "
                        f"Use the Value's own ops (v.exp(), v.log(), v.tanh(), ...) or v.data for the number "
                        f"({self!r})")

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data}, grad={self.grad}{label})"

    # -- differentiation --

    def backward(self) -> None:
        """Fill ``.grad`` of every node with d self / d node, by the chain rule.

        Iterative (no recursion limit), each node processed once, reuse summed exactly.
        Leaves *accumulate* across calls, as in PyTorch (so per-sample calls sum up:
        call ``zero_grad`` between steps); interior nodes hold the latest call's gradient.
        A gradient that is not a finite number raises :class:`DomainError` naming the op.
        """
        order, leaves = _interior_order(self)
        self.grad += 1.0
        _apply_rules(order, _raise_rule_failure_of)
        if not isfinite(sum(map(_grad_of, order)) + sum(map(_grad_of, leaves))):  # one check of every grad, at the end
            _raise_non_finite_gradient(order, leaves)


def _const(number: Number) -> Value:
    """A Python number taking part in an op, as a leaf marked constant (never differentiated)."""
    if type(number) is float and isfinite(number):  # the common case, without Value()'s checks
        leaf = _new(Value)
        leaf.data = number
        leaf.grad = 0.0
        leaf.label = ""
        leaf._stamp = next(_stamps)
        leaf._parents = ()
    else:
        leaf = Value(number)
    leaf._rule = _CONSTANT
    return leaf


def _node(op: Op, data: float, parents: tuple[Value, ...]) -> Value:
    """The node for ``op`` applied to ``parents`` (a plain leaf inside ``no_grad()``)."""
    if not isfinite(data):
        raise non_finite(op.name, data, parents)
    node = _new(Value)
    node.data = data
    node.grad = 0.0
    node.label = ""
    node._stamp = next(_stamps)
    if _recording.get():
        node._parents, node._rule = parents, op
    else:
        node._parents, node._rule = (), None
    return node


def _unary(op: Op, a: Value) -> Value:
    """``op`` applied to one Value: every activation comes here."""
    return _node(op, op.forward(a.data), (a,))


def value_function(op: Op) -> Callable[..., Value]:
    """``op`` as a function of Values that records its node directly: what ``op(v)`` does, without the
    registry's dispatch on the inputs' type (for code that applies one op many times: a neuron's activation).

        >>> value_function(rules.tanh)(Value(0.0))
        Value(data=0.0, grad=0.0)
    """
    return functools.partial(_unary if op.arity == 1 else _apply, op)


def _apply(op: Op, *parents: Value) -> Value:
    if op.arity is not None and len(parents) != op.arity:
        raise TypeError(f"{op.name} takes {op.arity} input(s), got {len(parents)}")
    return _node(op, op.forward(*map(_data_of, parents)), parents)


def _reachable(root: Value) -> set[Value]:
    """Every node reachable from ``root``, ``root`` included."""
    seen = {root}
    stack = [root]
    while stack:
        for parent in stack.pop()._parents:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _interior_order(root: Value) -> tuple[list[Value], set[Value]]:
    """The nodes with parents reachable from ``root``, newest first (a valid backward order, since every
    node is newer than its parents), their grads set to 0; and the leaves reached.

    An interior node is marked as reached by its grad itself: it is set to a new 0.0 object, which no
    other node can hold, so ``grad is zero`` is the test and zeroing the grad is the mark."""
    if not root._parents:
        return [], {root}
    zero = float(0)  # a new float object on every call
    root.grad = zero
    order, stack = [root], [root]
    leaves: set[Value] = set()
    keep, push, pop, see = order.append, stack.append, stack.pop, leaves.add
    while stack:
        for parent in pop()._parents:
            if parent._parents:
                if parent.grad is not zero:
                    parent.grad = zero
                    keep(parent)
                    push(parent)
            elif parent not in leaves:
                see(parent)
    order.sort(key=_stamp_of, reverse=True)
    return order, leaves


def backward_steps(root: Value, upstream: float = 1.0) -> Iterator[tuple[Value, float, tuple[float, ...]]]:
    """The backward pass of ``root`` as data, without touching any ``.grad``: for each node with parents,
    in the order ``backward()`` uses, ``(node, its final gradient, its contributions to its parents)``,
    from the same rule calls. The pictures' step-through page is built from this. A rule that fails, or
    a gradient that is not a finite number, raises what ``backward()`` raises (:class:`DomainError`
    naming the op, :class:`RuleError`).

        >>> x = Value(3.0); y = x * x
        >>> [(node.op, g, c) for node, g, c in backward_steps(y)]
        [('*', 1.0, (3.0, 3.0))]
    """
    order, _ = _interior_order_untouched(root)
    grads = {root: upstream}
    for node in order:
        g = grads.get(node, 0.0)
        try:
            contribution = node.contributions(g)
        except Exception as error:
            _raise_rule_failure(node, error, g)
        for k, (parent, c) in enumerate(zip(node._parents, contribution)):
            grads[parent] = grads.get(parent, 0.0) + c
            if not isfinite(grads[parent]):
                raise DomainError(f"backward of {_describe(node)}: its contribution to input {k + 1} is {c!r} "
                                  f"and makes that input's gradient {grads[parent]!r}, not a finite number")
        yield node, g, contribution


def _interior_order_untouched(root: Value) -> tuple[list[Value], set[Value]]:
    nodes = _reachable(root)
    return sorted((v for v in nodes if v._parents), key=_stamp_of, reverse=True), nodes


def _describe(node: Value) -> str:
    return f"{node.op}({', '.join(repr(p.data) for p in node._parents)})"


def _raise_rule_failure_of(node: Value, error: Exception) -> None:
    """What backward's loop calls when ``node``'s rule raised ``error``."""
    _raise_rule_failure(node, error, node.grad)


def _raise_rule_failure(node: Value, error: Exception, upstream: float) -> None:
    """Report an exception raised while applying ``node``'s rule: a broken contract or a domain error
    (with the op and operands), or else the rule's own error, unchanged."""
    try:
        returned = node._rule.vjp(upstream, node.data, *[p.data for p in node._parents])
    except Exception:
        returned = None
    if returned is not None and (not isinstance(returned, (tuple, list)) or len(returned) != len(node._parents)):
        raise _wrong_length(node, returned) from error
    if isinstance(error, ArithmeticError):  # DomainError, ZeroDivisionError, OverflowError in the rule's arithmetic
        raise DomainError(f"backward of {_describe(node)}: the derivative is not a finite number "
                          f"({error})") from error
    raise error


def _wrong_length(node: Value, returned: Any) -> RuleError:
    n = len(node._parents)
    if not isinstance(returned, (tuple, list)):
        return RuleError(f"the vjp rule of op {node.op!r} returned a {type(returned).__name__}, not a tuple of "
                         f"{n} entries (one contribution per input)")
    return RuleError(f"the vjp rule of op {node.op!r} returned {len(returned)} entries for {n} "
                     f"inputs (one contribution per input, in order)")


def _raise_non_finite_gradient(order: list[Value], leaves: set[Value]) -> None:
    """Name the first rule (in backward's order) whose contribution was inf or nan, or the node whose
    gradient overflowed when contributions were summed. Nothing to report if every grad is finite."""
    for node in order:
        if not isfinite(node.grad):
            raise DomainError(f"backward: the gradient of {_describe(node)} summed to {node.grad!r}, "
                              "past the largest float")
        for k, c in enumerate(node.contributions(node.grad)):
            if not isfinite(c):
                raise DomainError(f"backward of {_describe(node)}: its contribution to input {k + 1} is {c!r}, "
                                  f"not a finite number (its gradient is {node.grad!r})")
    for leaf in leaves:
        if not isfinite(leaf.grad):
            raise DomainError(f"backward: the gradient of the leaf {leaf!r} is not a finite number "
                              "(contributions summed past the largest float)")


class no_grad:
    """Context manager: ops inside record no graph (parameter updates, inference).

    The switch is per thread and per asyncio task, as in PyTorch: one thread's ``no_grad()``
    never stops another thread's graph.

        >>> with no_grad():
        ...     y = Value(2.0) * 3
        >>> y.parents
        ()
    """

    def __enter__(self) -> no_grad:
        self._token = _recording.set(False)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _recording.reset(self._token)


def is_recording() -> bool:
    """False inside ``no_grad()`` (in this thread or task)."""
    return _recording.get()


def gradients(output: Value, inputs: Iterable[Value], create_graph: bool = False) -> list[Any]:
    """d output / d input for each input, without touching any ``.grad``.

    With ``create_graph=True`` the gradients are Values that are themselves
    differentiable (higher order); otherwise floats.

        >>> x = Value(3.0)
        >>> gradients(x * x, [x])
        [6.0]
    """
    if create_graph and not _recording.get():
        raise RuntimeError("gradients(create_graph=True) cannot build a graph inside no_grad()")
    order, _ = _interior_order_untouched(output)
    adjoint: dict[Value, Any] = {output: _const(1.0) if create_graph else 1.0}
    node = output
    try:
        for node in order:
            if node not in adjoint:
                continue
            parents = node._parents
            if create_graph:
                args = [p.data if p.is_constant else p for p in parents]
                contribution = node._rule.vjp(adjoint[node], node, *args)
            else:
                contribution = node._rule.vjp(adjoint[node], node.data, *[p.data for p in parents])
            for parent, c in zip(parents, contribution, strict=True):
                if create_graph and parent.is_constant:
                    continue
                adjoint[parent] = adjoint[parent] + c if parent in adjoint else c
    except Exception as error:
        upstream = adjoint.get(node, 0.0)
        _raise_rule_failure(node, error, upstream.data if isinstance(upstream, Value) else upstream)
    found = [adjoint.get(x, 0.0) for x in inputs]
    for g in found:
        if not isfinite(g.data if isinstance(g, Value) else g):
            _raise_non_finite_adjoint(order, adjoint)
    return found


def _raise_non_finite_adjoint(order: list[Value], adjoint: dict) -> None:
    for node in order:
        g = adjoint.get(node, 0.0)
        g = g.data if isinstance(g, Value) else g
        for k, c in enumerate(node.contributions(g)):
            if not isfinite(c):
                raise DomainError(f"gradients: backward of {_describe(node)}: its contribution to input {k + 1} "
                                  f"is {c!r}, not a finite number")
    raise DomainError("gradients: a gradient grew past the largest float")


def grad(f: Callable[..., Any], argnums: int | tuple[int, ...] = 0) -> Callable[..., Any]:
    """The derivative of ``f`` with respect to argument ``argnums`` (an int or a tuple).

    Called on numbers it returns floats; called on Values it builds a
    differentiable graph, so ``grad(grad(f))`` is the exact second derivative.

        >>> grad(lambda x: x * x * x)(2.0)
        12.0
        >>> grad(grad(lambda x: x * x * x))(2.0)
        12.0
    """
    wanted = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    def derivative(*args: Any) -> Any:
        for i in wanted:
            if not -len(args) <= i < len(args):
                raise IndexError(f"grad: argnums {i} is out of range for {len(args)} argument(s)")
        positions = [i % len(args) for i in wanted]
        create_graph = any(isinstance(a, Value) for a in args)
        args = tuple(a if i not in positions or isinstance(a, Value) else Value(a) for i, a in enumerate(args))
        if create_graph and not _recording.get():
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
