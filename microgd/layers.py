"""Finding the layers in a traced graph: which sums of a tape's graph are the units of a layer, run as one matrix
product, and which one-input op applied to all of them is its activation, run as one array op; then the order in
which :mod:`microgd.fused_program` writes the layers' blocks and the other nodes' columns.

**What fuses.**

* A *layer*: ``m`` units summing products over the same inputs ``x_1 ... x_n`` (the same nodes in the same
  order: the tape's arguments, earlier nodes, a fused block's columns, each depending on the arguments), each
  unit with its own weights, Values the tape captured (parameters). A unit is a ``weighted_sum`` node (a
  microgd neuron's sum) whose bias is a parameter or a constant, or a hand-built sum: a tree of ``+`` whose
  leaves are terms ``w * x`` (the parameter on either side) and at most one parameter and one constant as
  bias (micrograd's ``sum((wi*xi for ...), b)``, or ``sum(...)`` starting from 0), its inner nodes used
  nowhere else. The layer runs as ``Z = W @ X + b[:, None]``, ``W`` (m, n) and ``b`` gathered from the
  parameters by index arrays made once.
* An *activation*: one one-input registry op (relu, tanh, sigmoid, exp, ...) applied to every unit of a
  layer: one call on the (m, batch) block. Its backward is the op's own rule, run on the blocks' symbols, so
  it prints as array code.
* Everything else runs as columns: forward by each op's array form, backward by its rule run on symbols, as
  the tape's own lines do (the loss, a softmax built from exp, log and sums, cross_entropy's pick of the
  label's logit: a ``weighted_sum`` whose weights are computed, not parameters).

**The contraction.** The matrix products are the rules' own backward, summed over the batch and the units:
the rule of ``weighted_sum`` gives ``(g x_1 ... g x_n, g w_1 ... g w_n, g)`` for ``(w_1 ... w_n, x_1 ... x_n, b)``,
whose sums are ``dW = G @ X.T``, ``dX = W.T @ G``, ``db = G.sum(1)``. So when the FusedTape is made, the rule
of every node a layer absorbs (``weighted_sum``, or a hand-built unit's ``+`` and ``*``) is run on symbols
and must give exactly that form (``(g y, g x)`` for ``x * y``, ``(g, g)`` for ``x + y``); a node whose rule
gives anything else stays a column. (With one term to a sum, the product is a broadcast ``*``: the same
products, none added.)

**What does not fuse**, and runs as columns instead: a weight or bias that is not a captured Value (a
constant weight, a computed one), an input that is a parameter or does not depend on the arguments, sums
written with ``-`` or with a constant factor (``2 * w * x``), a sum whose inner nodes are used elsewhere, a
lone product ``w * x``; an activation that only some units of a layer have (for those units), an op of more
than one input applied to a block (``x ** 2``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

from . import rules
from .engine import Value, local_step
from .rules import Op
from .symbolic import Symbol


class _Traced(Protocol):
    """What fusing reads of a :class:`~microgd.tape.Tape` (which stands above this module): its graph (the
    output, the arguments' leaves, the constants) and its captured Values."""

    _graph: tuple[Value, list[Value], set[Value]]
    captured: list[Value]


class _Graph:
    """The traced graph as fusing reads it: its nodes in order, which depend on the arguments (vary over the
    batch) and which on the captured Values (have a gradient), and each node's uses."""

    def __init__(self, tape: _Traced):
        out, args, constants = tape._graph
        self.out, self.args = out, args
        self.nodes = out.topo()
        self.position = {v: k for k, v in enumerate(self.nodes)}
        self.captured = {p: k for k, p in enumerate(tape.captured)}
        self.constants = constants | {v for v in self.nodes if v.is_constant}
        self.varying: set[Value] = set(args)
        self.graded: set[Value] = set(tape.captured)
        self.consumers: dict[Value, list[Value]] = {v: [] for v in self.nodes}
        for v in self.nodes:
            for p in v.parents:
                self.consumers[p].append(v)
            if any(p in self.varying for p in v.parents):
                self.varying.add(v)
            if any(p in self.graded for p in v.parents):
                self.graded.add(v)

    def used_once(self, v: Value) -> bool:
        return len(self.consumers[v]) == 1


@dataclass
class _Unit:
    """One sum of a layer: ``root`` computes ``w . x + bias + constant``; ``inner``: a hand-built sum's other nodes."""

    root: Value
    weights: list[Value]
    inputs: tuple[Value, ...]
    bias: Value | None = None
    constant: Value | None = None
    inner: list[Value] = field(default_factory=list)


@dataclass(eq=False)
class _Block:
    """An (m, batch) array of the fused program: a layer's sums, or the activation applied to them."""

    members: list[Value]
    layer: _Layer
    array: Symbol = field(init=False)  # its name in the program


@dataclass(eq=False)
class _Layer:
    """Units over the same inputs, and what the program calls its arrays."""

    units: list[_Unit]
    sums: _Block = field(init=False)
    activation: _Block | None = None
    source: tuple[str, Any] = ("stacked", None)  # where its inputs come from: see _Program._source
    weights: str = ""  # the gathered weights' name, and its positions' name
    at_weights: str = ""
    at_bias: str = ""
    inputs_array: str = ""  # the inputs as an (n, batch) array, and as a (batch, n) one
    inputs_by_sample: str = ""

    def __post_init__(self) -> None:
        self.sums = _Block([u.root for u in self.units], self)

    @property
    def inputs(self) -> tuple[Value, ...]:
        return self.units[0].inputs


Item = Union[Value, _Block]  # what the program computes in one go: a column (a node) or a block


def _unit(v: Value, graph: _Graph) -> _Unit | None:
    """The layer unit ``v`` computes, if it is one and the rules of its nodes have the contraction's form."""
    if v.rule is rules.weighted_sum:
        unit = _weighted_sum_unit(v, graph)
    elif v.rule is rules.add:
        unit = _hand_built_unit(v, graph)
    else:
        return None
    return unit if unit is not None and all(map(_contracts, [v, *unit.inner])) else None


def _weighted_sum_unit(v: Value, graph: _Graph) -> _Unit | None:
    n = len(v.parents) // 2
    weights, inputs, bias = list(v.parents[:n]), v.parents[n:2 * n], v.parents[-1]
    if not n or not all(w in graph.captured for w in weights) or not all(x in graph.varying for x in inputs):
        return None
    if bias in graph.captured:
        return _Unit(v, weights, inputs, bias=bias)
    return _Unit(v, weights, inputs, constant=bias) if bias in graph.constants else None


def _hand_built_unit(root: Value, graph: _Graph) -> _Unit | None:
    """A tree of ``+`` over terms ``w * x``, a bias and a constant, read left to right (iteratively: a long
    chain is deep)."""
    unit = _Unit(root, [], ())
    inputs, ends = [], []
    stack = [root]
    while stack:
        v = stack.pop()
        inside = v is root or graph.used_once(v)
        term = _term(v, graph) if inside and v.rule is rules.multiply else None
        if inside and v.rule is rules.add:
            stack += reversed(v.parents)
        elif term is not None:
            unit.weights.append(term[0])
            inputs.append(term[1])
        elif v in graph.captured or v in graph.constants:
            ends.append(v)
            continue
        else:
            return None
        if v is not root:
            unit.inner.append(v)
    biases = [v for v in ends if v in graph.captured]
    constants = [v for v in ends if v not in graph.captured]
    if not inputs or len(biases) > 1 or len(constants) > 1:
        return None
    unit.inputs, unit.bias, unit.constant = tuple(inputs), next(iter(biases), None), next(iter(constants), None)
    return unit


def _term(v: Value, graph: _Graph) -> tuple[Value, Value] | None:
    """``(w, x)`` for a product of a captured Value and an input, either way round."""
    a, b = v.parents
    if a in graph.captured and b in graph.varying:
        return a, b
    return (b, a) if b in graph.captured and a in graph.varying else None


def _contracts(node: Value) -> bool:
    """The node's rule, run on symbols, gives the contraction's form: ``g`` times the other factor for each
    factor of a product, ``g`` for each term of a sum."""
    symbols = {p: Symbol.variable(f"a{i}") for i, p in enumerate(dict.fromkeys(node.parents))}
    symbols[node] = Symbol.variable("out")
    g = Symbol.variable("g")
    got = local_step(node, g, symbols.__getitem__)
    inputs = [symbols[p] for p in node.parents]
    if node.rule is rules.weighted_sum:
        n = len(inputs) // 2
        expected = [*(g * x for x in inputs[n:2 * n]), *(g * w for w in inputs[:n]), g]
    elif node.rule is rules.multiply:
        expected = [g * inputs[1], g * inputs[0]]
    else:
        expected = [g, g]
    return all(a is b for a, b in zip(got, expected))


def _layers(graph: _Graph) -> tuple[list[_Layer], set[Value]]:
    """The layers of the graph (units over the same inputs with the same kind of bias), in the order their
    first units were made, and the nodes their units absorb."""
    absorbed: set[Value] = set()
    units = []
    for v in reversed(graph.nodes):  # a sum before its inner nodes, which it absorbs
        unit = None if v in absorbed else _unit(v, graph)
        if unit is not None:
            units.append(unit)
            absorbed.update(unit.inner)
    groups: dict[tuple, list[_Unit]] = {}
    for unit in reversed(units):
        key = (tuple(map(id, unit.inputs)), unit.bias is None, unit.constant is None)
        groups.setdefault(key, []).append(unit)
    layers = [_Layer(group) for group in groups.values()]
    for layer in layers:
        members = _activation(layer, graph)
        if members:
            layer.activation = _Block(members, layer)
    return layers, absorbed


def _activation(layer: _Layer, graph: _Graph) -> list[Value]:
    """One node per unit applying the same one-input op to the unit's sum (the first such op of the first
    unit that every unit has, and whose rule gives a symbol), or none."""
    found: list[dict[Op, Value]] = []
    for unit in layer.units:
        ops: dict[Op, Value] = {}
        for c in graph.consumers[unit.root]:
            if isinstance(c.rule, Op) and c.rule.arity == 1:
                ops.setdefault(c.rule, c)
        found.append(ops)
    for op, first in found[0].items():
        if all(op in ops for ops in found) and _block_rule(first):
            return [ops[op] for ops in found]
    return []


def _block_rule(node: Value) -> bool:
    """The activation's rule, run on symbols, gives a symbol or 0 (a number would not be a block)."""
    (c,) = local_step(node, Symbol.variable("g"), lambda v: Symbol.variable("out" if v is node else "x"))
    return isinstance(c, Symbol) or c == 0.0


def _schedule(graph: _Graph, layers: list[_Layer], absorbed: set[Value]) -> list[Item]:
    """Every column and block once, each after what it reads, otherwise in the order the graph was made."""
    item_of: dict[Value, Item] = {}
    for layer in layers:
        for block in (layer.sums, layer.activation):
            if block is not None:
                item_of.update(dict.fromkeys(block.members, block))
    for v in graph.nodes:
        if v.parents and v not in item_of and v not in absorbed:
            item_of[v] = v

    def reads(item: Item) -> set[Item]:
        if isinstance(item, Value):
            return {item_of[p] for p in item.parents if p in item_of}
        if item is item.layer.activation:
            return {item.layer.sums}
        return {item_of[x] for x in item.layer.inputs if x in item_of}

    def made(item: Item) -> int:
        return graph.position[item] if isinstance(item, Value) else max(map(graph.position.__getitem__, item.members))

    items = list(dict.fromkeys(item_of.values()))
    waiting = {item: reads(item) for item in items}
    readers: dict[Item, list[Item]] = {item: [] for item in items}
    for item, read in waiting.items():
        for r in read:
            readers[r].append(item)
    ready = [(made(item), k, item) for k, (item, read) in enumerate(waiting.items()) if not read]
    heapq.heapify(ready)
    order: list[Item] = []
    while ready:
        _, _, item = heapq.heappop(ready)
        order.append(item)
        for reader in readers[item]:
            waiting[reader].discard(item)
            if not waiting[reader]:
                heapq.heappush(ready, (made(reader), len(order), reader))
    assert len(order) == len(items), "fused: layers that read each other"
    return order
