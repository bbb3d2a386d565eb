"""A faster backward, installed on top of the engine by the package: the same chain rule as
:func:`microgd.engine.sweep`, with each op's rule compiled instead of called. Each rule is run on symbols
and printed as Python, one line per input (the tape's way, for one node at a time), so the rule stays the
one source of each derivative: change a rule (a patched ``vjp``, an op defined again) and the next backward
compiles it again, since steps are found by the rule function itself. A rule that cannot run on symbols,
and an op with constant inputs (whose rule may test them), are called as written, on floats; a node given a
micrograd-style ``_backward`` closure (:class:`~microgd.engine.Closure`) runs the engine's own step for it,
:func:`~microgd.engine.local_step`.

Its results are the engine's, bit for bit (a test holds them equal on random graphs): it adds each
contribution to ``.grad`` in place, in the engine's order, each gradient starting from 0.0 as in the sweep,
and adds a leaf's old grad at the end, as the engine does. When anything goes wrong it runs the engine's own
backward, whose error names the op.

    >>> print(step_source(rules.multiply, 2))
    p0 = node._p0
    p1 = node._p1
    g = node.grad
    p0.grad += g * p1.data
    p1.grad += g * p0.data
"""

from __future__ import annotations

import linecache
from collections.abc import Callable
from itertools import count
from math import copysign, isfinite
from operator import attrgetter
from typing import Any

from . import engine, rules
from .codegen import Namespace
from .engine import Value
from .rules import Op
from .symbolic import Symbol

__all__ = ["step_source", "install", "reading_backward", "HOT", "MAX_ARITY"]

HOT = (rules.add, rules.multiply, rules.tanh, rules.subtract, rules.relu, rules.sigmoid)
"""The ops inlined in the loop, tested in this order: micrograd's graphs and nn's neurons are made of them.
Every other op's step is a compiled function, called from the loop."""

MAX_ARITY = 1024
"""Nodes with more parents run their rule as written: compiling a step costs time in proportion to its size
(about 20 ms at 1,024 parents, seconds at 100,000), while the rule's own call is cheap at such a width."""

reading_backward = Value.backward
"""The engine's own ``Value.backward``, the one a learner reads (this module replaces it with :func:`backward`)."""

Step = Callable[[Any], None]
_LOOP_NAMES = ("run", "order", "fail", "node", "vjp", "steps", "compiled", "error", "g", "out", "p0", "p1")
_sources = count()
_stamp_of, _grad_of = attrgetter("_stamp"), attrgetter("grad")


def step_source(op: Op, arity: int) -> str | None:
    """The statements that apply ``op``'s rule to ``node`` (a node of ``arity`` parents): each parent's
    grad gets its contribution. None when the rule cannot be compiled (it is called as written then)."""
    return _rule_code(op, arity, Namespace(_LOOP_NAMES))


def _rule_code(op: Op, arity: int, names: Namespace) -> str | None:
    """The step's statements; the ops and constants they use are added to ``names``."""
    if op.constants or arity > MAX_ARITY:
        return None
    g, out = Symbol.variable("g"), Symbol.variable("out")
    inputs = [Symbol.variable(f"x{i}") for i in range(arity)]
    try:
        contributions = op.vjp(g, out, *inputs)
    except Exception:  # a rule using something symbols do not support: it runs on floats
        return None
    if not isinstance(contributions, (tuple, list)) or len(contributions) != arity or \
            not all(isinstance(c, (Symbol, float, int)) and not isinstance(c, bool) for c in contributions):
        return None  # the engine reports the broken contract when the rule runs
    used = {s for c in contributions if isinstance(c, Symbol) for s in c.walk()}
    names.taken.update(f"p{i}" for i in range(arity))
    variables = {g: "g", out: "out", **{x: f"p{i}.data" for i, x in enumerate(inputs)}}
    if arity <= 2:  # the node's slots _p0 and _p1 (see Value); a parent whose number is not used is read once
        parents = [f"p{i}" if x in used else f"node._p{i}" for i, x in enumerate(inputs)]
        lines = [f"p{i} = node._p{i}" for i, x in enumerate(inputs) if x in used]
    else:  # the tuple _p0
        parents = [f"p{i}" for i in range(arity)]
        lines = [", ".join(parents) + " = node._p0"]
    if g in used:
        lines.append("g = node.grad")
    if out in used:
        lines.append("out = node.data")
    lines += [f"{p}.grad += {names.python(c, variables)}" for p, c in zip(parents, contributions)]
    return "\n".join(lines)


def _arity(node: Value) -> int:
    """How many parents ``node`` has (it has some), read off its slots."""
    first = node._p0
    return len(first) if first.__class__ is tuple else 1 if node._p1 is None else 2


def _bound(names: Namespace) -> dict[str, Any]:
    """The objects the generated code's names stand for: each op's forward, each constant."""
    return {**{name: op.forward for name, op in names.functions.items()}, **names.constants}


def _compile(source: str, namespace: dict[str, Any], name: str) -> Any:
    filename = f"<microgd backward {next(_sources)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def _indented(text: str, depth: int) -> str:
    return "\n".join("    " * depth + line for line in text.splitlines())


def _as_written(node: Value) -> None:
    """A rule the loop does not compile, called on floats. Its contract is checked where it is cheap (the count
    here, numbers and finiteness by the loop's check at the end); the engine's backward names what broke."""
    first, second = node._p0, node._p1  # the parents, in their slots (see Value)
    if second is not None:  # two parents, the common case (an op with a constant: x ** 2)
        contributions = node._rule.vjp(node.grad, node.data, first.data, second.data)
        if len(contributions) != 2:
            raise engine.RuleError("wrong number of contributions")  # fail() runs the engine, which names the op
        for parent, c in zip((first, second), contributions):
            parent.grad += c
        return
    parents = first if first.__class__ is tuple else (first,)
    contributions = node._rule.vjp(node.grad, node.data, *[p.data for p in parents])
    if len(contributions) != len(parents):
        raise engine.RuleError("wrong number of contributions")
    for parent, c in zip(parents, contributions):
        parent.grad += c


def _closure_step(node: Value) -> None:
    """A micrograd-style node (its rule a :class:`~microgd.engine.Closure`): the engine's own step, its
    contributions added as the sweep adds them."""
    for parent, c in zip(node.parents, engine.local_step(node, node.grad)):
        parent.grad += c


def compiled_step(op: Op | engine.Closure, arity: int) -> Step:
    """``op``'s rule for a node of ``arity`` parents as a function of the node."""
    if isinstance(op, engine.Closure):
        return _closure_step
    names = Namespace(_LOOP_NAMES)
    body = _rule_code(op, arity, names)
    if body is None:
        return _as_written
    return _compile(f"def run(node):\n{_indented(body, 1)}\n", _bound(names), "run")


class _Steps(dict):
    """Compiled steps by (rule function, number of parents), compiled on first use."""

    def step_for(self, node: Any) -> Step:
        vjp, arity = node._rule.vjp, _arity(node)
        try:
            found = self.get((vjp, arity))
        except TypeError:  # a rule object that cannot be a key
            return _as_written
        if found is None:
            found = self[vjp, arity] = compiled_step(node._rule, arity)
        return found


def _loop() -> Callable[[list, Callable[[Any, Exception], None]], None]:
    """``run(order, fail)``: apply every node's rule, in ``order``; on an exception, ``fail(node, error)``.

    The rules of :data:`HOT` are inlined, each behind a test that the op's rule is still the one compiled;
    the other rules' steps are compiled on first use."""
    names = Namespace(_LOOP_NAMES)
    branches: list[str] = []
    rules_by_name: dict[str, Any] = {}
    for k, op in enumerate(HOT):
        body = _rule_code(op, op.arity, names) if op.arity is not None else None
        if body is not None:
            rule = names.name(f"{op.name}_rule" if op.name.isidentifier() else "", f"rule{k}")
            rules_by_name[rule] = op.vjp
            branches.append(f"{'elif' if branches else 'if'} vjp is {rule}:\n{_indented(body, 1)}")
    arity = "len(p0) if p0.__class__ is tuple else 1 if node._p1 is None else 2"  # of _arity(node), inlined
    fallback = (f"p0 = node._p0\ntry:\n    compiled = steps[vjp, {arity}]\n"
                "except (KeyError, TypeError):\n    compiled = steps.step_for(node)\ncompiled(node)")
    dispatch = "\n".join([*branches, "else:\n" + _indented(fallback, 1)]) if branches else fallback
    source = ("def run(order, fail):\n    node = None\n    try:\n        for node in order:\n"
              f"            vjp = node._rule.vjp\n{_indented(dispatch, 3)}\n"
              "    except Exception as error:\n        fail(node, error)\n")
    return _compile(source, {**_bound(names), **rules_by_name, "steps": _Steps()}, "run")


_apply_rules = _loop()


def _order(root: Value) -> tuple[list[Value], set[Value]]:
    """The nodes with parents reachable from ``root``, newest first (the engine's order), each grad set to a
    new ``0.0`` object; and the leaves reached.

    An interior node is marked as reached by its grad itself: a float object of this call's own, which no
    other node can hold, so ``grad is zero`` is the test and setting the grad is the mark (no set needed).
    The walk is depth first (its order is nearly the sorted one, which the sort then finds quickly), a ``for``
    loop over the stack's pops: Python 3.11 specializes a function once it has run a few calls or ``for`` loop
    steps, and a ``while`` loop's steps do not count, which left the first backward calls of a process slow."""
    leaf = engine._LEAF
    if root._p0 is leaf:
        return [], {root}
    zero = float(0)  # a new float object on every call
    root.grad = zero
    order, stack = [root], [None, root]  # None: the bottom of the stack, where the walk ends
    leaves: set[Value] = set()
    keep, push, see = order.append, stack.append, leaves.add
    for node in iter(stack.pop, None):  # a node's parents: _p0 and _p1, or the tuple _p0 (see Value)
        second = node._p1
        parent = node._p0
        if second is None and parent.__class__ is tuple:
            for parent in node._p0:
                if parent._p0 is not leaf:
                    if parent.grad is not zero:
                        parent.grad = zero
                        keep(parent)
                        push(parent)
                elif parent not in leaves:
                    see(parent)
            continue
        if parent._p0 is not leaf:
            if parent.grad is not zero:
                parent.grad = zero
                keep(parent)
                push(parent)
        elif parent not in leaves:
            see(parent)
        if second is not None:
            if second._p0 is not leaf:
                if second.grad is not zero:
                    second.grad = zero
                    keep(second)
                    push(second)
            elif second not in leaves:
                see(second)
    order.sort(key=_stamp_of, reverse=True)
    return order, leaves


def backward(self: Value) -> None:
    """``Value.backward`` with compiled rules: the engine's gradients, faster (see the module docstring)."""
    order, leaves = _order(self)
    held = [(leaf, g) for leaf in leaves if (g := leaf.grad) or copysign(1.0, g) < 0.0]  # all but the 0.0s

    def fail(node: Value | None = None, error: Exception | None = None) -> None:
        """Leave it to the engine's own backward, whose error names the op: every leaf back to what it held."""
        for leaf in leaves:
            leaf.grad = 0.0
        for leaf, before in held:
            leaf.grad = before
        reading_backward(self)
        if error is not None:
            raise error

    for leaf, _ in held:
        leaf.grad = 0.0
    self.grad += 1.0
    _apply_rules(order, fail)
    for leaf, before in held:
        leaf.grad = before + leaf.grad
    if not _finite(sum(map(_grad_of, order)) + sum(map(_grad_of, leaves))):  # one check of every grad, at the end
        fail()  # raises, unless only the sum of every grad overflowed


def _finite(total: Any) -> bool:
    """A float and finite (a rule's Python arithmetic may have made a complex number, e.g. ``x ** 0.5``)."""
    return isinstance(total, (float, int)) and isfinite(total)


def install() -> None:
    """Make this module's :func:`backward` ``Value.backward`` (the package does it on import)."""
    backward.__doc__ = reading_backward.__doc__
    Value.backward = backward  # type: ignore[method-assign]
