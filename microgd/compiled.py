"""The eager engine's backward loop, compiled from the registry: each op's vjp rule run on symbols and
printed as Python, one line per input (the tape's way, for one node at a time), so that backward applies
a rule without calling it. The rule stays the one source of each derivative: change a rule (a patched
``vjp``, an op redefined) and the next backward compiles it again, since steps are found by the rule
function itself. A rule that cannot run on symbols, and an op with constant inputs (whose rule may test
them), run as written, called on floats.

    >>> print(step_source(rules.multiply, 2))
    p0, p1 = node._parents
    g = node.grad
    p0.grad += g * p1.data
    p1.grad += g * p0.data
"""

from __future__ import annotations

import linecache
import re
from collections.abc import Callable
from itertools import count
from typing import Any

from . import rules
from .rules import Op
from .symbolic import Expr, Symbol

__all__ = ["step_source", "backward_loop", "HOT", "MAX_ARITY"]

HOT = (rules.add, rules.multiply, rules.tanh, rules.subtract, rules.relu, rules.sigmoid)
"""The ops inlined in the loop, tested in this order: micrograd's graphs and nn's neurons are made of them.
Every other op's step is a compiled function, called from the loop."""

MAX_ARITY = 1024
"""Nodes with more parents run their rule as written: compiling a step costs time in proportion to its size
(about 20 ms at 1,024 parents, seconds at 100,000), while the written rule's loop is cheap at such a width."""

Step = Callable[[Any], None]
Code = tuple[str, dict[str, Callable[..., Any]]]  # statements, and the helper ops they call by name
# every name the generated code uses besides the helper ops: a helper op called like one of them is not compiled
_TAKEN = {"node", "g", "out", "vjp", "order", "fail", "steps", "compiled", "error", "run", "apply_rule",
          "len", "KeyError", "TypeError", "Exception"}
_sources = count()


def step_source(op: Op, arity: int) -> str | None:
    """The statements that apply ``op``'s rule to ``node`` (a node of ``arity`` parents): each parent's
    grad gets its contribution. None when the rule cannot be compiled (it runs as written then)."""
    code = _rule_code(op, arity)
    return None if code is None else code[0]


def _rule_code(op: Op, arity: int) -> Code | None:
    if op.constants or arity > MAX_ARITY:
        return None
    g, out = Symbol.variable("g"), Symbol.variable("out")
    inputs = [Symbol.variable(f"x{i}") for i in range(arity)]
    try:
        contributions = op.vjp(g, out, *inputs)
    except Exception:  # a rule using something symbols do not support: it runs on floats
        return None
    if not isinstance(contributions, tuple) or len(contributions) != arity or \
            not all(isinstance(c, (Symbol, float, int)) and not isinstance(c, bool) for c in contributions):
        return None  # the engine reports the broken contract when the rule runs
    used = {s for c in contributions if isinstance(c, Symbol) for s in c.walk()}
    helpers = {s.op.name: s.op.forward for s in used if s.op is not None and s.op.function}
    if any(name in _TAKEN or re.fullmatch(r"(p|rule)\d+", name) for name in helpers):
        return None  # a helper op whose name the generated code uses for something else
    names = {x: f"p{i}.data" for i, x in enumerate(inputs)}
    parents = ", ".join(f"p{i}" for i in range(arity)) + ("," if arity == 1 else "")
    lines = [f"{parents} = node._parents"]
    if g in used:
        lines.append("g = node.grad")
    if out in used:
        lines.append("out = node.data")
    lines += [f"p{i}.grad += {_python(c, names)}" for i, c in enumerate(contributions)]
    return "\n".join(lines), helpers


def _python(expr: Expr, names: dict[Symbol, str]) -> str:
    return expr.formula(names) if isinstance(expr, Symbol) else repr(float(expr))


def _compile(source: str, namespace: dict[str, Any], name: str) -> Any:
    filename = f"<microgd backward {next(_sources)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def _indented(text: str, depth: int) -> str:
    return "\n".join("    " * depth + line for line in text.splitlines())


def _rule_as_written(node: Any) -> None:
    """A rule called on floats: one contribution per parent, checked."""
    parents = node._parents
    contribution = node._rule.vjp(node.grad, node.data, *[p.data for p in parents])
    if len(contribution) != len(parents):
        raise ValueError("wrong number of contributions")  # the engine's fail() names the op (RuleError)
    for parent, c in zip(parents, contribution):
        parent.grad += c


def compiled_step(op: Op, arity: int) -> Step:
    """``op``'s rule for a node of ``arity`` parents as a function of the node (its rule as written when
    it cannot be compiled)."""
    code = _rule_code(op, arity)
    if code is None:
        return _rule_as_written
    body, helpers = code
    return _compile(f"def apply_rule(node):\n{_indented(body, 1)}\n", helpers, "apply_rule")


class _Steps(dict):
    """Compiled steps by (rule function, number of parents), compiled on first use."""

    def step_for(self, node: Any) -> Step:
        vjp, arity = node._rule.vjp, len(node._parents)
        try:
            found = self.get((vjp, arity))
        except TypeError:  # a rule object that cannot be a key: run it as written
            return _rule_as_written
        if found is None:
            found = self[vjp, arity] = compiled_step(node._rule, arity)
        return found


def backward_loop() -> Callable[[list, Callable[[Any, Exception], None]], None]:
    """``run(order, fail)``: apply every node's rule, in ``order``; on an exception, ``fail(node, error)``.

    The rules of :data:`HOT` are inlined, each behind a test that the op's rule is still the one compiled;
    the other rules' steps are compiled on first use."""
    branches: list[str] = []
    namespace: dict[str, Any] = {}
    for k, op in enumerate(HOT):
        code = _rule_code(op, op.arity) if op.arity is not None else None
        if code is not None:
            body, helpers = code
            namespace.update(helpers)
            namespace[f"rule{k}"] = op.vjp
            branches.append(f"{'elif' if branches else 'if'} vjp is rule{k}:  # {op.name}\n{_indented(body, 1)}")
    namespace["steps"] = _Steps()
    fallback = ("try:\n    compiled = steps[vjp, len(node._parents)]\n"
                "except (KeyError, TypeError):\n    compiled = steps.step_for(node)\ncompiled(node)")
    dispatch = "\n".join([*branches, "else:\n" + _indented(fallback, 1)]) if branches else fallback
    source = ("def run(order, fail):\n    node = None\n    try:\n        for node in order:\n"
              f"            vjp = node._rule.vjp\n{_indented(dispatch, 3)}\n"
              "    except Exception as error:\n        fail(node, error)\n")
    return _compile(source, namespace, "run")
