"""Value: a scalar that records the operations applied to it, and reverse-mode differentiation over the
recorded graph (iterative: no recursion limit, any depth). Every derivative is a rule of :mod:`microgd.rules`
(or a node's micrograd-style ``_backward`` closure, a :class:`Closure`), and :func:`sweep` is the one place
that applies them: backward stores what it finds in ``.grad``. (The
package installs a faster backward on top, :mod:`microgd.compiled`, held equal to this one bit for bit.)

    >>> from microgd import Value
    >>> x = Value(2.0); y = x * x + x.tanh()
    >>> y.backward(); round(x.grad, 6)
    4.070651
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import numbers
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from math import isfinite
from operator import attrgetter
from typing import Any, NoReturn, Union

from . import rules
from .rules import OPS, DomainError, Op, RuleError, non_finite

Number = Union[int, float]
Operand = Union["Value", int, float]

__all__ = ["Value", "Closure", "DomainError", "RuleError", "sweep", "local_step", "backward_order", "backward_steps",
           "no_grad", "is_recording", "gradients", "grad"]

_recording: contextvars.ContextVar[bool] = contextvars.ContextVar("microgd_recording", default=True)
_stamps = itertools.count(0.0)  # creation order: every node is newer than its parents (floats: see Value)
_LEAF = ()  # the _p0 of a leaf (see Value)
_CONSTANT = object()  # the _rule of a Python number taking part in an op (a leaf never differentiated)
_stamp_of = attrgetter("_stamp")
_data_of = attrgetter("data")
_new = object.__new__


def _leaf_data(data: Any, op: Op | None = None) -> float:
    """Check and convert what a user hands to ``Value(...)``, or to ``op`` beside a Value: a finite real number.
    Anything else (micrograd's Value, a string) is refused here, rather than failing later inside backward."""
    if type(data) is not float:
        if isinstance(data, (str, bytes, Value, complex)) or not hasattr(data, "__float__"):
            if op is not None:
                raise rules.not_a_number(op.name, data)
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
            a, b = _const(other, op), self
        else:
            a, b = self, other if isinstance(other, Value) else _const(other, op)
        data = op.forward(a.data, b.data)
        if not isfinite(data):
            raise non_finite(op.name, data, (a, b))
        node = _new(Value)
        node.data = data
        node.grad = 0.0
        node.label = ""
        node._stamp = next(_stamps)
        if _recording.get():
            node._p0 = a
            node._p1 = b
            node._rule = op
        else:
            node._p0 = _LEAF
            node._p1 = None
            node._rule = None
        return node

    method.__name__, method.__qualname__ = name, f"Value.{name}"
    method.__doc__ = f"{'other' if reflected else 'self'} {op.name} {'self' if reflected else 'other'}"
    return method


class Value:
    """A scalar in a computation graph: ``data``, ``grad`` and how it was made.

    Compatible with micrograd's ``Value``: the same constructor, ``data``, ``grad``,
    operators, ``backward()``, ``_prev``, ``_op`` and ``_backward()``; an op added micrograd's way
    (``out = Value(data, (self,), 'sin')``, then ``out._backward = closure``) works in backward, ``gradients``,
    ``grad`` on numbers, the pictures and the page (see :class:`Closure`). Inputs must be finite real
    numbers (``Value(nan)`` is a ValueError, ``Value("a")`` a TypeError); an op outside its domain
    (``log(0)``, ``(-8) ** 0.5``, ``x / 0``, ``exp(1000)``) raises :class:`DomainError`.

        >>> a = Value(3.0, label="a"); b = a * a
        >>> b.backward(); a.grad
        6.0
    """

    # A node's parents are held in two slots rather than a tuple of their own (a 2-tuple is 56 bytes, more
    # than half a node): one parent is ``_p0`` (``_p1`` None), two are ``_p0`` and ``_p1``, none or more than
    # two are the tuple ``_p0`` (a leaf's is ``()``, :data:`_LEAF`; ``_p1`` None). ``_stamp`` is the node's
    # place in creation order, a float (24 bytes, an int above 256 takes 28): backward sorts by it.
    __slots__ = ("data", "grad", "label", "_rule", "_stamp", "_p0", "_p1")

    def __init__(self, data: Number, _children: tuple = (), _op: str = "", label: str = ""):
        self.data = _leaf_data(data)
        self.grad = 0.0
        self._p0: Any = _LEAF
        self._p1: Value | None = None
        self._rule: Any = None
        self._stamp: float = next(_stamps)
        self.label = label
        if _children:  # micrograd's way to make a node: Value(data, (a, b), '+'), then out._backward = closure
            children = tuple(_children)
            if not isinstance(_op, str):
                raise TypeError(f"Value(..., _op={_op!r}): the op's name must be a string")
            if not all(isinstance(c, Value) for c in children):
                raise RuleError(f"Value(..., _op={_op!r}): _children must be Values (wrap a number: Value(2.0)), "
                                f"got {children!r}")
            op: Op | Closure | None = OPS.get(_op)
            if op is None or (op.arity is not None and len(children) != op.arity):
                op = Closure(_op, None)  # its rule: the closure assigned next (micrograd's way)
            if _recording.get():
                _set_parents(self, children)
                self._rule = op

    # -- reading the graph (the public walk used by pictures, the page, explain, tape and check) --

    @property
    def op(self) -> str:
        """The name of the op that made this node ('' for a leaf)."""
        return self._rule.name if self._p0 is not _LEAF else ""

    @property
    def rule(self) -> Op | Closure | None:
        """The registry entry this node was made with (None for a leaf): views read the op from here, so
        a graph keeps its rules when an op is defined again. A node made micrograd's way (``Value(data,
        children, 'sin')`` and a ``_backward`` closure) has a :class:`Closure` instead."""
        return self._rule if self._p0 is not _LEAF else None

    @property
    def is_constant(self) -> bool:
        """True for a leaf made from a Python number taking part in an op (``2`` in ``x * 2``)."""
        return self._rule is _CONSTANT

    @property
    def parents(self) -> tuple[Value, ...]:
        """The nodes this one was computed from, in argument order, duplicates kept."""
        second = self._p1
        if second is not None:
            return (self._p0, second)
        first = self._p0
        return first if first.__class__ is tuple else (first,)

    _parents = parents  # the name the parents had when they were a slot (the sweep reads them by it)

    @property
    def _prev(self) -> set[Value]:  # micrograd's name for the parents
        return set(self.parents)

    @property
    def _op(self) -> str:  # micrograd's name for the op
        return self.op

    def local_grads(self) -> tuple[float, ...]:
        """d self / d parent for each parent, from the registry's rule: ``(x * y).local_grads() == (y, x)``."""
        return self.contributions(1.0)

    def contributions(self, upstream: float) -> tuple[float, ...]:
        """What backward adds to each parent's grad when this node's grad is ``upstream``: the rule's
        ``vjp(upstream, data, *parent data)``, exactly the call ``backward()`` makes (:func:`local_step`)."""
        return local_step(self, upstream) if self._p0 is not _LEAF else ()

    @property
    def _backward(self) -> Callable[[], Any]:
        """micrograd's per-node step, ``o._backward()``: adds this node's contribution to each parent's grad.
        On a node given a closure (``out._backward = closure``, micrograd's way to add an op) it is that
        closure itself."""
        rule = self._rule
        if rule.__class__ is Closure and rule.closure is not None:
            return rule.closure

        def step() -> None:
            for parent, c in zip(self.parents, self.contributions(self.grad)):
                parent.grad += c
        return step

    @_backward.setter
    def _backward(self, closure: Callable[[], Any]) -> None:
        """micrograd's way to give a node its derivative: a function of no arguments that adds to each
        input's ``.grad`` (reading ``out.grad``). It becomes this node's rule (:class:`Closure`)."""
        if not callable(closure):
            raise TypeError(f"_backward takes a function of no arguments (micrograd's closure), got "
                            f"{type(closure).__name__}: {closure!r}")
        if self._rule is _CONSTANT:
            raise AttributeError(f"{self!r} is a constant (a Python number in an op): it is never differentiated "
                                 "and takes no _backward")
        self._rule = Closure(self._rule.name if self._p0 is not _LEAF else "", closure)

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
        return _power(self, other if isinstance(other, Value) else _const(other, rules.powc))

    def __rpow__(self, other: Number) -> Value:  # other ** self: op cpow
        return _power(_const(other, rules.cpow), self)

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

    def sin(self) -> Value:
        """The sine of self (radians)."""
        return _unary(rules.sin, self)

    def cos(self) -> Value:
        """The cosine of self (radians)."""
        return _unary(rules.cos, self)

    def sqrt(self) -> Value:
        """The square root (self >= 0); its derivative at 0 is no number: backward there is a DomainError."""
        return _unary(rules.sqrt, self)

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
        try:  # all Values, the common case: no wrapping pass (and no other type has _own_data: see below)
            data = rules.weighted_sum.forward(*[v._own_data for v in parents])
        except AttributeError:  # numbers among them (or what is neither: refused, naming the op)
            parents = tuple(v if isinstance(v, Value) else _const(v, rules.weighted_sum) for v in parents)
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
        parents = [x if isinstance(x, Value) else _const(x, op) for x in inputs]
        return _power(*parents) if op is rules.power else _apply(op, *parents)

    def __float__(self) -> float:
        raise TypeError(f"a Value is not a float: Python's math functions would drop it from the graph. "
                        f"Use the Value's own ops (v.exp(), v.log(), v.tanh(), ...) or v.data for the number "
                        f"({self!r})")

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data}, grad={self.grad}{label})"

    # -- differentiation --

    def backward(self) -> None:
        """Fill ``.grad`` of every node with d self / d node, by the chain rule (:func:`sweep`).

        Iterative (no recursion limit), each node processed once, reuse summed exactly. Leaves
        *accumulate* across calls, as in PyTorch: this call's gradient is added to what a leaf held
        (so per-sample calls sum up: call ``zero_grad`` between steps); interior nodes hold this call's.
        A gradient that is not a finite number raises :class:`DomainError` naming the op.
        """
        for node, g in sweep(self).items():
            node.grad = g if node._p0 is not _LEAF else _accumulated(node, node.grad + g)


class Closure:
    """The rule of a node made micrograd's way: ``out = Value(data, (a, b), 'name')``, then ``out._backward =
    closure``, a function of no arguments that adds to each input's ``.grad`` (reading ``out.grad``).

    :func:`local_step` applies it over the graph's own floats, so backward, ``gradients``, ``grad`` on numbers,
    the pictures and the step-through page all run it: ``out.grad`` is set to the upstream gradient and each
    input's ``.grad`` to 0.0, the closure is called, each input's ``.grad`` is read as its contribution (an
    input given twice: its total at its first place, 0.0 at the others), and every ``.grad`` is put back. It
    has numbers, not a formula, so over any other number type (symbols for explain and the tape, Values for
    second derivatives) it is refused, naming the op. ``closure`` is None for a node made with a name that is
    no registry op (or with children the registry's op does not take) and given no ``_backward`` yet.
    """

    __slots__ = ("name", "closure")
    constants: tuple[int, ...] = ()  # read by the pictures, as an Op's
    arity = None

    def __init__(self, name: str, closure: Callable[[], Any] | None):
        self.name, self.closure = name, closure

    @property
    def symbol(self) -> str:
        """How pictures show the op: its name (``_backward`` for a node made with the name '')."""
        return self.name or "_backward"

    @staticmethod
    def vjp(*numbers: Any) -> NoReturn:
        """A closure has no vjp formula: it runs on the graph's own nodes, in :func:`local_step`."""
        raise RuleError("a micrograd-style _backward closure has no vjp formula: it runs on the graph's own nodes "
                        "(microgd.engine.local_step); define the op with microgd.define_op(...) for a formula")

    def __call__(self, *inputs: Any) -> NoReturn:
        """The op applied again, as the tape and explain apply each node's op to symbols: refused, naming it."""
        raise self.refusal(inputs)

    def refusal(self, numbers: Sequence[Any], inputs: int | None = None) -> RuleError:
        """Why this rule cannot run over ``numbers`` (those of a node with ``inputs`` inputs)."""
        if self.closure is None:
            known = OPS.get(self.name)
            why = (f"no op of microgd.rules.OPS is named {self.name!r}" if known is None else
                   f"microgd's op {self.name!r} takes {known.arity} input(s), this node has {inputs}")
            return RuleError(f"op {self.name!r} has no derivative: {why}, and the node was given no _backward. "
                             "Give it one micrograd's way (out._backward = _backward, a function adding to each "
                             "input's .grad), or define the op with microgd.define_op(...)")
        if any(isinstance(x, Value) for x in numbers):
            what = "second derivatives (gradients(create_graph=True), grad of grad)"
        elif all(isinstance(x, float) for x in numbers):
            what = "a sweep over numbers other than the graph's own floats"
        else:  # symbols: the tape and its batches, and explain, run the rules over them
            what = "formulas (explain, the tape)"
        return RuleError(f"op {self.name!r} is a micrograd-style _backward closure: it has numbers, not a formula, "
                         f"so {what} cannot use it; define it with microgd.define_op(...) to get every view "
                         "(backward, gradients, grad on numbers and the pictures run the closure as it is)")

    def __repr__(self) -> str:
        return f"<microgd _backward closure of op {self.name!r}>"


# The data slot under a second name, which no other type has: reading it costs what reading .data does, and an
# object that merely has a .data (micrograd's Value) fails there, as a number does, so it is never recorded.
Value._own_data = Value.__dict__["data"]  # type: ignore[attr-defined]


def _const(number: Any, op: Op | None = None) -> Value:
    """A Python number taking part in ``op``, as a leaf marked constant (never differentiated); anything else is
    refused, naming the op."""
    leaf = _new(Value)
    leaf.data = number if type(number) is float and isfinite(number) else _leaf_data(number, op)
    leaf.grad = 0.0
    leaf.label = ""
    leaf._stamp = next(_stamps)
    leaf._p0 = _LEAF
    leaf._p1 = None
    leaf._rule = _CONSTANT
    return leaf


def _power(base: Value, exponent: Value) -> Value:
    """``base ** exponent`` by the op that differentiates only what needs it (a constant never is): ``x ** 2``
    is op powc, ``2 ** x`` op cpow (whose derivative at ``0 ** x`` is 0), ``x ** y`` op pow."""
    op = rules.powc if exponent.is_constant else rules.cpow if base.is_constant else rules.power
    return _node(op, op.forward(base.data, exponent.data), (base, exponent))


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
        if len(parents) == 2:  # the parents' slots (see Value), filled here rather than by a call
            node._p0, node._p1 = parents
        else:
            node._p0, node._p1 = parents[0] if len(parents) == 1 else parents, None
        node._rule = op
    else:
        node._p0, node._p1, node._rule = _LEAF, None, None
    return node


def _set_parents(node: Value, parents: tuple[Value, ...]) -> None:
    """Give ``node`` its parents, in the slots that hold them (see :class:`Value`)."""
    if len(parents) == 2:
        node._p0, node._p1 = parents
    else:
        node._p0, node._p1 = (parents[0] if len(parents) == 1 else parents), None


def _unary(op: Op, a: Value) -> Value:
    """``op`` applied to one Value: every activation comes here (:func:`_node`, for one parent)."""
    data = op.forward(a.data)
    if not isfinite(data):
        raise non_finite(op.name, data, (a,))
    node = _new(Value)
    node.data = data
    node.grad = 0.0
    node.label = ""
    node._stamp = next(_stamps)
    if _recording.get():
        node._p0 = a
        node._p1 = None
        node._rule = op
    else:
        node._p0, node._p1, node._rule = _LEAF, None, None
    return node


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


def _reachable(root: Value, stop_at: Container[Value] = ()) -> set[Value]:
    """Every node reachable from ``root``, ``root`` included, not looking past the nodes in ``stop_at``."""
    seen = {root}
    found = [root]
    see, keep = seen.add, found.append
    for node in found:  # the list grows as the walk finds nodes (a for loop: see compiled._order)
        if node is root or node not in stop_at:
            first = node._p0  # the parents, read from their slots (see Value)
            if first.__class__ is tuple:
                for parent in first:
                    if parent not in seen:
                        see(parent)
                        keep(parent)
                continue
            if first not in seen:
                see(first)
                keep(first)
            second = node._p1
            if second is not None and second not in seen:
                see(second)
                keep(second)
    return seen


def backward_order(root: Value, stop_at: Container[Value] = ()) -> list[Value]:
    """The nodes whose rules backward applies, in its order: every node with parents that ``root`` depends
    on (not looking past ``stop_at``), newest first. Every node is newer than its parents, so a node comes
    after every node that uses it: its gradient is complete when its turn comes."""
    nodes = _reachable(root, stop_at)
    return sorted((v for v in nodes if v._p0 is not _LEAF and (v is root or v not in stop_at)), key=_stamp_of,
                  reverse=True)


def sweep(root: Value, seed: Any = 1.0, *, value: Callable[[Value], Any] = _data_of,
          finished: Callable[[Value, Any], Any] | None = None,
          step: Callable[[Value, Any, tuple], None] | None = None,
          stop_at: Container[Value] = ()) -> dict[Value, Any]:
    """The chain rule, applied once over ``root``'s graph: d root / d node for every node root depends on,
    by node, ``seed`` being d root / d root. This is the only place the rules are applied: ``backward``,
    ``gradients``, the step-through page, the tape's code and ``explain`` all run it, each over its own
    number type, given by ``value(node)``: the node's floats (the default), the nodes themselves (a
    differentiable gradient graph) or symbols (formulas, source code).

    ``finished(node, g)`` sees each node's complete gradient before its rule runs and returns what the
    rule gets (the tape names it); ``step(node, g, contributions)`` sees each rule applied (the page
    records it); nodes in ``stop_at`` are treated as leaves.

        >>> x = Value(3.0); y = x * x + x
        >>> sweep(y)[x]
        7.0
    """
    grads = {root: seed}
    for node in backward_order(root, stop_at):
        g = grads[node] if finished is None else finished(node, grads[node])
        contributions = local_step(node, g, value)
        if step is not None:
            step(node, g, contributions)
        for parent, c in zip(node._parents, contributions):
            grads[parent] = grads.get(parent, 0.0) + c
    return _finite_sums(grads)


def local_step(node: Value, upstream: Any, value: Callable[[Value], Any] = _data_of) -> tuple:
    """``node``'s rule applied once: what the chain rule adds to each input's gradient when ``node``'s is
    ``upstream``, i.e. ``vjp(upstream, node's value, *its inputs' values)``. The one call of a rule in
    microgd; the rule's contract (one finite number per input) is checked here, for every view.

        >>> x, y = Value(2.0), Value(5.0)
        >>> local_step(x * y, 1.0)
        (5.0, 2.0)
    """
    first, second = node._p0, node._p1  # node.parents, read here without a call (see Value)
    parents = first if first.__class__ is tuple else (first,) if second is None else (first, second)
    op, out, inputs = node._rule, value(node), list(map(value, parents))
    if not rules.is_finite(upstream):
        raise DomainError(f"backward: the gradient of {_named(node)} is {rules.number_of(upstream)!r}: the "
                          "contributions of its uses summed past the largest float")
    if op.__class__ is Closure:  # a micrograd-style node: its closure, run on the nodes themselves
        return _closure_step(node, op, upstream, out, inputs)
    try:
        contributions = op.vjp(upstream, out, *inputs)
    except Exception as error:
        kind = next((type(x).__name__ for x in (upstream, out, *inputs) if not isinstance(x, (int, float))), "float")
        raise rules.rule_failure(op, parents, error, kind) from error
    number_types: tuple[type, ...] = (int, float, type(upstream), type(out), *map(type, inputs))
    return rules.checked_contributions(op, contributions, parents, number_types)


def _closure_step(node: Value, rule: Any, upstream: Any, out: Any, inputs: list[Any]) -> tuple:
    """:func:`local_step` for a node whose rule is a :class:`Closure`: over the graph's own floats only, the
    closure run with ``node.grad = upstream`` and each input's grad 0.0, each input's grad read back as its
    contribution (an input given twice: its total at the first place, 0.0 at the others), every grad put back."""
    parents = node.parents
    own = (isinstance(upstream, (int, float)) and not isinstance(upstream, bool) and type(out) is float
           and out == node.data and all(type(x) is float and x == p.data for x, p in zip(inputs, parents)))
    if rule.closure is None or not own:
        raise rule.refusal((upstream, out, *inputs), len(parents))
    found = dict.fromkeys(parents, 0.0)
    held = [(v, v.grad) for v in (node, *found)]
    try:
        node.grad = upstream
        for parent in found:
            parent.grad = 0.0
        rule.closure()
        for parent in found:
            found[parent] = parent.grad
    except Exception as error:
        raise rules.rule_failure(rule, parents, error, "float") from error
    finally:
        for v, grad_before in held:
            v.grad = grad_before
    contributions = [found.pop(parent, 0.0) for parent in parents]
    return rules.checked_contributions(rule, contributions, parents, (int, float))


def _finite_sums(grads: dict[Value, Any]) -> dict[Value, Any]:
    """The sweep's gradients, each checked: a sum of finite contributions may pass the largest float."""
    for node, g in grads.items():
        if not rules.is_finite(g):
            raise DomainError(f"backward: the gradient of {_named(node)} is {rules.number_of(g)!r}: the "
                              "contributions of its uses summed past the largest float")
    return grads


def _named(node: Value) -> str:
    """A node in a message: its op and operands, or a leaf's number (and label)."""
    if node._p0 is not _LEAF:
        return rules.applied(node._rule, node.parents)
    return f"the leaf {node.data!r}{f' ({node.label})' if node.label else ''}"


def _accumulated(leaf: Value, total: float) -> float:
    """A leaf's grad after this backward's gradient is added to it, checked."""
    if not isfinite(total):
        raise DomainError(f"backward: the gradient of {_named(leaf)} is {total!r}: this call's gradient added to "
                          f"the {leaf.grad!r} it held passed the largest float")
    return total


def backward_steps(root: Value, upstream: float = 1.0) -> Iterator[tuple[Value, float, tuple[float, ...]]]:
    """The backward pass of ``root`` as data, without touching any ``.grad``: for each node with parents,
    in the order ``backward()`` uses, ``(node, its final gradient, its contributions to its parents)``,
    from the same rule calls (the sweep's steps). The pictures' step-through page is built from this.
    A rule that fails, or a gradient that is not a finite number, raises what ``backward()`` raises.

        >>> x = Value(3.0); y = x * x
        >>> [(node.op, g, c) for node, g, c in backward_steps(y)]
        [('*', 1.0, (3.0, 3.0))]
    """
    steps: list[tuple[Value, float, tuple[float, ...]]] = []
    sweep(root, upstream, step=lambda node, g, contributions: steps.append((node, g, contributions)))
    yield from steps


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
    grads = sweep(output, _const(1.0), value=_as_value) if create_graph else sweep(output)
    return [grads.get(x, 0.0) for x in inputs]


def _as_value(node: Value) -> Any:
    """A node as the number type of a differentiable gradient graph: itself, or a constant's plain number."""
    return node.data if node.is_constant else node


def _argument(a: Any, differentiated: bool) -> Any:
    """Argument ``a`` as :func:`grad` hands it to ``f``: a number as a Value (a leaf if ``differentiated``, else a
    constant, as a Python number in an op is: ``x ** n`` stays the power by a constant), a Value as it is (a
    constant to differentiate, as from an outer ``grad``, as a new leaf), anything else (a bool, a list) as it is."""
    if isinstance(a, Value):
        return Value(a.data) if differentiated and a.is_constant else a
    if differentiated:
        return Value(a)
    return _const(a) if isinstance(a, numbers.Real) and not isinstance(a, bool) else a


def grad(f: Callable[..., Any], argnums: int | tuple[int, ...] = 0) -> Callable[..., Any]:
    """The derivative of ``f`` with respect to argument ``argnums`` (an int or a tuple).

    ``f`` gets every argument as a Value, so it may use Value's ops on any of them (``(-y).exp()``): a number
    at a position not differentiated comes as a constant (a Python number in an op: never differentiated),
    other objects (a bool, a list) as they are. Called on numbers it returns floats; called on Values it builds
    a differentiable graph, so ``grad(grad(f))`` is the exact second derivative.

        >>> grad(lambda x: x * x * x)(2.0)
        12.0
        >>> grad(grad(lambda x: x * x * x))(2.0)
        12.0
        >>> grad(lambda x, y: x * (-y).exp())(3.0, 0.0)   # y is a Value too (not differentiated)
        1.0
    """
    wanted = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    def derivative(*args: Any) -> Any:
        for i in wanted:
            if not -len(args) <= i < len(args):
                raise IndexError(f"grad: argnums {i} is out of range for {len(args)} argument(s)")
        positions = [i % len(args) for i in wanted]
        create_graph = any(isinstance(a, Value) for a in args)
        args = tuple(_argument(a, i in positions) for i, a in enumerate(args))
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
