"""A tape's layers as matrix products: the traced graph re-organised so that the sums of a layer run as one
matrix product and its activation as one array op, forward and backward, while the rest of the graph runs as
:meth:`Tape.batch <microgd.tape.Tape.batch>` runs it, one array of shape (batch,) per scalar (a *column*).
Made by :meth:`Tape.fused() <microgd.tape.Tape.fused>`; the program it runs is straight-line Python, shown
as ``source``.

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

A block holds a unit per row and a sample per column (feature-major), so a unit's column is a row of its
block, a view (``y_1 = y[0]``), and the sums over the batch run along rows (``G.sum(1)``, ``G @ X.T``).

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

**Running it.** A run computes the lines of ``source``, the same operations on the same operands, but puts
each block it makes into an array it no longer needs: one an earlier line made and no later line reads, or one
kept from the run before. So ``h = tanh(s_h)`` goes into ``s_h``'s array (on numpy, where the op's array form
is one ufunc), and ``d * (1.0 - h * h)`` is ``h * h`` into ``h``'s array (read no more), then ``1.0 -`` it,
then ``d *`` it; what another op's array form makes takes the memory its predecessor of the run before has just
given back; so a training loop asks the system for no new memory per step (new memory costs a page fault per
4 kB, more than the arithmetic at 10,000 samples). On numpy a large batch runs in equal chunks whose
working arrays fit a core's cache (about 1 MB), the values put side by side and the gradients added (on torch,
chunks of 16 MB only bound the memory kept); a FusedTape keeps the working arrays of its last four batch (or
chunk) sizes. The arguments and ``params`` are only read, and the arrays a run returns are the caller's.
``_program.text(True)`` shows the program as a run executes it.

**Numbers.** A matrix product adds in its own order (and a large batch's chunks add their gradients), so
values and gradients agree with ``Tape.batch`` to rounding, not to the last bit. Only the gradients that reach
a captured Value are computed (``Tape.batch`` computes the arguments' too, and refuses one that is not finite).
Every value, gradient, argument and parameter is checked finite, as ``Tape.batch`` checks (numpy raises where a
value that is not finite is made; the products and, on torch, the lines where an inf may vanish are checked
where made).

    >>> from microgd.nn import MLP
    >>> from microgd.losses import squared_error
    >>> from microgd.tape import trace
    >>> model = MLP(2, [3, 1], activations=["tanh", "linear"], seed=1)
    >>> def loss(x, z):
    ...     return squared_error(model(x), z)
    >>> print(trace(loss, [0.5, -1.0], 0.25).fused().source, end="")
    def loss(x, z, params):
        w_h = params[at_w_h]
        b_h = params[at_b_h]
        s_h = w_h @ x.T + b_h[:, None]
        h = tanh(s_h)
        w_y = params[at_w_y]
        b_y = params[at_b_y]
        y = w_y @ h + b_y[:, None]
        y_1 = y[0]
        v0 = y_1 - z
        L = v0 ** 2.0
        _grads = _xp.zeros_like(params)
        d_v0 = 2.0 * v0
        d_y = d_v0[None]
        _grads[at_w_y] += d_y @ h.T
        _grads[at_b_y] += d_y.sum(1)
        d_h = w_y.T * d_y
        d_s_h = d_h * (1.0 - h * h)
        _grads[at_w_h] += d_s_h @ x
        _grads[at_b_h] += d_s_h.sum(1)
        return L, _grads
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import re
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from . import rules
from . import tape as taping
from .codegen import OPERATORS, Namespace
from .engine import DomainError, Value, local_step
from .rules import Op
from .symbolic import Expr, Symbol
from .tape import (
    Tape,
    _accumulating,
    _argument_array,
    _array,
    _array_module,
    _batch_size,
    _compile,
    _guarded,
    _is_tensor,
    _parameter_names,
    _per_sample,
    _shape,
    _store,
    array_function,
)

__all__ = ["FusedTape", "FusedLayer", "install"]

_INTERNAL = ("params", "_grads", "_n", "_xp", "_full", "_add_at", "_w", "_check", "_owned")  # the generated code's
_NAME = re.compile(r"(?<![.\w])[^\W\d]\w*")  # an identifier read in a line (not an attribute: ``.T``, ``.sum``)
_CHUNK_BYTES = {"numpy": 1 << 20, "torch": 1 << 24}
"""A batch runs in chunks whose working arrays take about this much: on numpy a core's L2 cache (a pass over an
array in it is twice as fast); on torch, whose calls cost more and which may run on a GPU, only a bound on the
memory a FusedTape keeps."""
_SMALLEST_CHUNK = 256  # ... of at least this many samples (a run's Python costs some 50 µs)
_KEPT_SIZES = 4  # a FusedTape keeps its working arrays for this many batch (or chunk) sizes


@dataclass(frozen=True)
class FusedLayer:
    """One fused layer of a :class:`FusedTape`: ``units`` sums over the same ``inputs`` inputs, run as the
    matrix product named ``name`` in the source, then ``activation`` (an op's name) on the whole block, if any.

        >>> FusedLayer("s_h", inputs=64, units=32, activation="relu")
        FusedLayer(name='s_h', inputs=64, units=32, activation='relu')
    """

    name: str
    inputs: int
    units: int
    activation: str | None


class FusedTape:
    """A :class:`~microgd.tape.Tape` with its layers fused into matrix products (see the module's docstring);
    made by ``tape.fused()`` (its ``tape``). ``source`` is the program, ``layers`` what was fused, :meth:`batch`
    runs it like ``Tape.batch`` and :meth:`run` on arrays of parameters, for a training loop that keeps them in
    arrays.

        >>> import numpy as np
        >>> from microgd.nn import MLP
        >>> from microgd.tape import trace
        >>> model = MLP(2, [4, 1], seed=0)
        >>> fused = trace(lambda x: model(x), [0.5, -1.0]).fused()
        >>> values, grads = fused.run((np.array([[0.5, -1.0], [1.0, 2.0]]),), np.ones(len(fused.tape.captured)))
        >>> values.tolist(), grads.shape                     # every weight 1.0: 4 relu(x1 + x2 + 1) + 1
        ([3.0, 17.0], (17,))
    """

    def __init__(self, tape: Tape):
        self.tape = tape
        program = _Program(tape)
        self.layers: list[FusedLayer] = program.layers
        self.source: str = program.source
        self._program = program
        self._runs: dict[tuple[str, str], _Compiled] = {}
        self._kept: dict[tuple[str, str, int], list[Any]] = {}  # (module, device, batch size): working arrays
        self._keeping = threading.Lock()
        self._shapes = [_shape(s) for s in tape.structures]  # each argument's sample shape (None: none fits)

    def run(self, arrays: Sequence[Any], params: Any) -> tuple[Any, Any]:
        """f's value for each sample of a batch, and the batch's sum of the gradients of the captured Values, at
        the numbers ``params``: a 1-D float64 array (numpy, or a torch tensor) in ``tape.captured``'s order.
        ``arrays``: one array per argument of f, leading batch axis, as for ``Tape.batch``. Returns an array of
        shape (batch,) and an array of ``params``'s shape, on the arrays' module and device; reads and writes
        no Value. A value, gradient, argument or parameter that is not finite raises DomainError (Tape.batch
        replays the batch to name the sample)."""
        if not isinstance(arrays, (tuple, list)):
            raise TypeError(f"fused.run: arrays must be a tuple of arrays, one per argument of f, got "
                            f"{type(arrays).__name__}")
        xp, device, batches, size = self._arrays(tuple(arrays), params, "fused.run")
        numbers = _array(xp, params, device)
        count = len(self.tape.captured)
        if tuple(numbers.shape) != (count,):
            raise ValueError(f"fused.run: params should be a 1-D array of the {count} captured Values' numbers "
                             f"(tape.captured's order), got shape {tuple(numbers.shape)}")
        return self._computed(xp, device, batches, size, numbers)

    def batch(self, *arrays: Any) -> Any:
        """f's value for each sample of a batch, as :meth:`Tape.batch <microgd.tape.Tape.batch>` gives it (to
        rounding: a matrix product adds in its own order): numpy arrays, nested lists or torch tensors, leading
        batch axis. Captured Values' ``.grad`` get the batch's sum of their gradients. A sample outside an op's
        domain, or whose values leave the finite floats, raises DomainError naming the sample."""
        xp, device, batches, size = self._arrays(arrays, None, "tape.batch")
        captured = self.tape.captured
        try:
            values, grads = self._computed(xp, device, batches, size, _array(xp, [p.data for p in captured], device))
        except DomainError as error:
            self.tape._name_sample(batches, size)
            raise DomainError("tape.batch: a value or gradient is not finite, although every sample alone is fine: "
                              "a sum over the batch passed the largest float") from error
        sums = grads.tolist()
        with _accumulating:
            _store(captured, [p.grad + g for p, g in zip(captured, sums)])
        return values

    def _arrays(self, arrays: tuple, params: Any, who: str) -> tuple[Any, Any, list[Any], int]:
        """The array module (torch if any array is a tensor), the device, the arguments as float64 arrays and
        the batch size, each argument checked as ``Tape.batch`` checks it."""
        size = self._numpy_batch_size(arrays, params)
        if size is not None:
            return sys.modules["numpy"], None, list(arrays), size
        structures = self.tape.structures
        if len(arrays) != len(structures):
            raise TypeError(f"{who}: takes {len(structures)} array(s), one per argument of f, got {len(arrays)}")
        xp = _array_module((*arrays, params))
        device = next((a.device for a in (*arrays, params) if _is_tensor(a)), None)
        try:
            batches = [_argument_array(xp, a, device, f"argument {i + 1}") for i, a in enumerate(arrays)]
            return xp, device, batches, _batch_size(batches, structures)
        except (TypeError, ValueError) as error:
            raise type(error)(str(error).replace("tape.batch:", f"{who}:", 1)) from None

    def _numpy_batch_size(self, arrays: tuple, params: Any) -> int | None:
        """The batch size if every argument is already what ``Tape.batch``'s checks make of it, a float64 numpy
        array of its traced shape, and ``params`` is None or a numpy array (the common case, seen in a few
        attribute reads); else None, and the arguments go through those checks."""
        numpy = sys.modules.get("numpy")
        if numpy is None or len(arrays) != len(self._shapes) or not (params is None or type(params) is numpy.ndarray):
            return None
        float64, sizes = numpy.dtype(numpy.float64), set()
        for a, shape in zip(arrays, self._shapes):
            if type(a) is not numpy.ndarray or a.dtype is not float64 or not a.ndim or a.shape[1:] != shape:
                return None
            sizes.add(a.shape[0])
        return sizes.pop() if len(sizes) == 1 else None

    def _computed(self, xp: Any, device: Any, batches: list[Any], size: int, params: Any) -> tuple[Any, Any]:
        """The values and the gradients' sums: the program run on the whole batch, or on equal chunks of it whose
        working arrays fit a cache (values put side by side, gradients added), and everything checked finite."""
        where = (xp.__name__, str(device))
        compiled = self._runs.get(where)
        if compiled is None:
            compiled = self._runs[where] = self._program.compiled(xp, device)
        parts = -(-size // compiled.chunk(_CHUNK_BYTES.get(xp.__name__, 1 << 24)))
        try:
            with _running(xp):
                if parts <= 1:
                    value, grads = self._chunk(compiled, xp, device, batches, size, params)
                    values = _per_sample(xp, value, size, device)
                else:
                    values = xp.empty(size, dtype=xp.float64, **({} if device is None else {"device": device}))
                    ends = [size * k // parts for k in range(parts + 1)]
                    for start, stop in itertools.pairwise(ends):
                        value, part = self._chunk(compiled, xp, device, [b[start:stop] for b in batches],
                                                  stop - start, params)
                        values[start:stop] = value
                        grads = part if start == 0 else grads + part
                finite = all(_finite(xp, a) for a in (values, grads, params, *batches))
        except ArithmeticError:  # numpy raises where a value that is not finite is made; _check, where it is seen
            finite = False
        if not finite:
            raise DomainError("fused.run: a value or gradient is not finite in this batch (a sample outside an op's "
                              "domain, or numbers past the largest float): Tape.batch names the sample")
        return values, grads

    def _chunk(self, compiled: _Compiled, xp: Any, device: Any, batches: list[Any], size: int, params: Any
               ) -> tuple[Any, Any]:
        """One run of the program, on working arrays kept from an earlier run of this size (or new ones), which
        it keeps for the next if it succeeds."""
        key = (xp.__name__, str(device), size)
        with self._keeping:
            work = self._kept.pop(key, None)
        if work is None:
            work = compiled.arrays(xp, device, size)
        value, grads = compiled.run(*batches, params, work)
        with self._keeping:
            self._kept[key] = work
            while len(self._kept) > _KEPT_SIZES:
                del self._kept[next(iter(self._kept))]
        return value, grads


def install() -> None:
    """Make :class:`FusedTape` what ``Tape.fused()`` returns (the package does it on import)."""
    taping._fusing = FusedTape


def _running(xp: Any) -> Any:
    """numpy raises on overflow, division by zero and invalid results (nan), so they are caught where made;
    torch records no autograd graph (a run writes into arrays of its own, which autograd refuses)."""
    if xp.__name__ == "numpy":
        return xp.errstate(over="raise", divide="raise", invalid="raise", under="ignore")
    return xp.no_grad() if xp.__name__ == "torch" else contextlib.nullcontext()


def _finite(xp: Any, a: Any) -> bool:
    """Every number of ``a`` (an array, or a plain number) finite. On torch, whose ``isfinite(a).all()`` is slow,
    a finite sum says so at once; only a sum that is not finite (an inf or nan, or finite numbers adding past the
    largest float) looks again, at ``0.0 * a``: 0.0 for a finite number, nan for any other."""
    if isinstance(a, float):
        return math.isfinite(a)
    if xp.__name__ == "torch":
        return math.isfinite(a.sum()) or math.isfinite((0.0 * a).sum())
    return bool(xp.isfinite(a).all())


def _owner(xp: Any) -> Callable[..., Any]:
    """``_owned(result, *inputs)`` in a run: what an op's array form returned, if it is a new float64 array of
    its own (C order, writable, not a view, none of the op's inputs), else a copy that is; so that a run may
    later write into it."""
    if xp.__name__ == "torch":
        def owned(a: Any, *inputs: Any) -> Any:
            if (a.dtype == xp.float64 and a._base is None and a.is_contiguous() and not a.requires_grad
                    and all(a is not x for x in inputs)):
                return a
            return a.to(dtype=xp.float64, memory_format=xp.contiguous_format, copy=True)
    else:
        def owned(a: Any, *inputs: Any) -> Any:
            if (isinstance(a, xp.ndarray) and a.dtype == xp.float64 and a.base is None and a.flags.c_contiguous
                    and a.flags.writeable and all(a is not x for x in inputs)):
                return a
            return xp.array(a, dtype=xp.float64)
    return owned


def _checker(xp: Any) -> Callable[[Any], None]:
    """``_check(a)`` in a run: FloatingPointError unless every number of ``a`` is finite."""
    def check(a: Any) -> None:
        if not _finite(xp, a):
            raise FloatingPointError
    return check


# -- reading the graph ---------------------------------------------------------------------------------------------

class _Graph:
    """The traced graph as fusing reads it: its nodes in order, which depend on the arguments (vary over the
    batch) and which on the captured Values (have a gradient), and each node's uses."""

    def __init__(self, tape: Tape):
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


def _stem(labels: Sequence[str], fallback: str) -> str:
    """The name ``labels`` share (h1, h2, ... -> h; w_h1_1, w_h1_2, ... -> w_h1), else ``fallback``."""
    if not labels or not all(labels):
        return fallback
    shared = "".join(c[0] for c in itertools.takewhile(lambda c: len(set(c)) == 1, zip(*labels)))
    return shared.rstrip("0123456789_") or fallback


def _leaf_count(structure: Any) -> int:
    return 1 if structure is None else sum(map(_leaf_count, structure))


def _tuple(texts: list[str]) -> str:
    """Python's tuple display of the items, without the parentheses: ``a,`` for one."""
    return f"{texts[0]}," if len(texts) == 1 else ", ".join(texts)


# -- writing the program -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Product:
    """``left @ right``: a matrix product; ``left * right`` (broadcast) when its sums have one term each."""

    left: str
    right: str
    inner: int

    def __str__(self) -> str:
        return f"{self.left} {'*' if self.inner == 1 else '@'} {self.right}"


@dataclass(frozen=True)
class _Stack:
    """Columns as the rows of a block."""

    columns: tuple[str, ...]

    def __str__(self) -> str:
        return f"_xp.stack(({_tuple(list(self.columns))}))"


@dataclass(frozen=True)
class _Call:
    """An op's array form on a block (an activation); a run makes its result an array of its own (``_owned``),
    or computes it into one when the form is a numpy ufunc of its input."""

    text: str
    op: Op
    input: str

    def __str__(self) -> str:
        return self.text


Term = Union[_Product, _Stack, _Call, Symbol, str]


@dataclass(eq=False)
class _Line:
    """One line of the program: ``text`` as ``source`` shows it, and the names it makes. A line that makes a
    block of ``units`` rows gives its value as ``terms`` added left to right (a product, a stack, a rule's
    expression, a bias), so that a run may compute it into an array of its own. ``view_of``: the line makes
    views of that name's array (a block's rows). ``fresh``: what it makes is a new array, never an array it
    reads (an op's array form may return its input: ``linear``)."""

    text: str
    made: tuple[str, ...] = ()
    units: int = 0
    terms: tuple[Term, ...] = ()
    view_of: str | None = None
    fresh: bool = True


class _Program:
    """The fused program of a tape, printed as Python: forward item by item (a column is the node's op on
    columns, a block one array op), then backward in reverse order (a column's rule as the sweep applies it,
    a block's rule on its whole gradient), then each captured Value's gradient summed over the batch."""

    def __init__(self, tape: Tape):
        graph = _Graph(tape)
        layers, absorbed = _layers(graph)
        self.graph, self.order = graph, _schedule(graph, layers, absorbed)
        self.names = Namespace(reserved=_INTERNAL)
        self.variables: dict[Symbol, str] = {}
        self.varying: set[str] = set()  # names whose arrays have one number per sample
        self.lines: list[_Line] = []
        self.products: set[str] = set()  # names made by a matrix product: checked finite on every run
        self.guarded: set[str] = set()  # names read where an inf or nan may vanish: checked on torch
        self.symbol: dict[Value, Expr] = {}
        self.indices: dict[str, list] = {}  # name: the positions in params it gathers
        self.biases: dict[str, list[list[float]]] = {}  # name: the constants added to a layer's sums, one a row
        self.grads: dict[Value, Expr] = {}
        self.parts: dict[int, list[Term]] = {}  # id of a _Block: what its gradient adds up
        self.uses_size = False
        self.arguments = self._argument_arrays(tape)
        for layer in layers:
            layer.source = self._source(layer)
        self.columns = self._read_as_columns()
        self.layers = [self._named(k, layer) for k, layer in enumerate(layers, 1)]
        self._write(tape)

    # -- the program's shape --

    def _argument_arrays(self, tape: Tape) -> list[tuple[Symbol, Any, list[Value]]]:
        """Per argument of f: its array's name, its nesting and its leaves."""
        arguments, start = [], 0
        for i, (name, structure) in enumerate(zip(_parameter_names(tape.f, len(tape.structures)), tape.structures)):
            leaves = self.graph.args[start:start + _leaf_count(structure)]
            start += len(leaves)
            arguments.append((self._new(name, f"a{i}", varying=True), structure, leaves))
        return arguments

    def _source(self, layer: _Layer) -> tuple[str, Any]:
        """Where a layer's inputs come from: a whole block, a whole argument (its index), or stacked columns."""
        inputs = list(layer.inputs)
        for item in self.order:
            if isinstance(item, _Block) and item.members == inputs:
                return "block", item
        for i, (_, structure, leaves) in enumerate(self.arguments):
            if structure is not None and leaves == inputs:
                return "argument", i
        return "stacked", None

    def _read_as_columns(self) -> set[Value]:
        """The nodes the program reads one by one: the inputs of columns and of stacked layer inputs, the output."""
        read = {self.graph.out}
        for item in self.order:
            if isinstance(item, Value):
                read.update(item.parents)
            elif item is item.layer.sums and item.layer.source[0] == "stacked":
                read.update(item.layer.inputs)
        return read

    def _named(self, k: int, layer: _Layer) -> FusedLayer:
        """Names for the layer's arrays, from the labels of its nodes where they share one (``s_h``, ``h``)."""
        layer.sums.array = self._new(_stem([u.root.label for u in layer.units], ""), f"z{k}", varying=True)
        weights = [p.label for u in layer.units for p in u.weights]
        layer.weights = self._new(_stem(weights, ""), f"w{k}", varying=False).name
        layer.at_weights = self.names.name(f"at_{layer.weights}", "at")
        self.indices[layer.at_weights] = [[self.graph.captured[p] for p in u.weights] for u in layer.units]
        activation = layer.activation
        if activation is None:
            return FusedLayer(layer.sums.array.name, len(layer.inputs), len(layer.units), None)
        activation.array = self._new(_stem([a.label for a in activation.members], ""), f"a{k}", varying=True)
        op = activation.members[0].rule
        assert isinstance(op, Op)
        return FusedLayer(layer.sums.array.name, len(layer.inputs), len(layer.units), op.name)

    # -- lines --

    def _new(self, wanted: str, fallback: str, varying: bool) -> Symbol:
        name = self.names.name(wanted, fallback)
        symbol = Symbol.variable(name)
        self.variables[symbol] = name
        if varying:
            self.varying.add(name)
        return symbol

    def _python(self, expr: Expr) -> str:
        if isinstance(expr, Symbol):
            self.guarded |= _guarded(expr)
        return self.names.python(expr, self.variables)

    def _varies(self, expr: Expr) -> bool:
        return isinstance(expr, Symbol) and any(s.name in self.varying for s in expr.walk() if s.is_variable)

    def _emit(self, text: str, *made: str, view_of: str | None = None) -> None:
        self.lines.append(_Line(text, made, view_of=view_of))

    def _block_line(self, name: str, terms: list[Term], units: int) -> None:
        """``name = t1 + t2 + ...``: a block of ``units`` rows."""
        texts = [self._python(t) if isinstance(t, (Symbol, float)) else str(t) for t in terms]
        if len(terms) > 1:
            texts = [f"({text})" if isinstance(t, Symbol) and not t.is_variable else text
                     for t, text in zip(terms, texts)]
        self.lines.append(_Line(f"{name} = {' + '.join(texts)}", (name,), units, tuple(terms)))

    def _let(self, expr: Expr, wanted: str, fallback: str) -> Expr:
        """``expr`` itself if a number or a variable, else a new line ``name = expr`` and that name."""
        if not isinstance(expr, Symbol) or expr.is_variable:
            return expr
        symbol = self._new(wanted, fallback, self._varies(expr))
        fresh = expr.op in OPERATORS  # Python's operators make new arrays; an op's array form may not
        self.lines.append(_Line(f"{symbol.name} = {self._python(expr)}", (symbol.name,), fresh=fresh))
        return symbol

    def _unpack(self, names: list[str], array: str, by_row: bool, view_of: str | None = None) -> None:
        """The columns of an array as views (``_`` for those not wanted): a block's rows (``a, b, c = h``), an
        argument's columns (``a, b = x.T``)."""
        made = [n for n in names if n != "_"]
        if len(names) == 1:
            self._emit(f"{names[0]} = {array}{'[0]' if by_row else '[:, 0]'}", *made, view_of=view_of)
        else:
            self._emit(f"{', '.join(names)} = {array}{'' if by_row else '.T'}", *made, view_of=view_of)

    def _value(self, v: Value) -> Expr:
        """``v`` as the rules' number type here: its symbol (a constant's plain number)."""
        return v.data if v in self.graph.constants else self.symbol[v]

    def _gradient_name(self, v: Value) -> str:
        expr = self.symbol.get(v)
        return f"d_{expr.name}" if isinstance(expr, Symbol) and expr.is_variable else "d"

    # -- forward --

    def _write(self, tape: Tape) -> None:
        self._head()
        numbering = iter(range(len(self.graph.nodes)))
        for item in self.order:
            if isinstance(item, Value):
                expr = item.rule(*map(self._value, item.parents))  # type: ignore[misc]  # a column has its op
                self.symbol[item] = self._let(expr, item.label, f"v{next(numbering)}")
            elif item is item.layer.sums:
                self._sums(item.layer)
            else:
                self._activation(item)
        value = self._python(self._value(self.graph.out))
        self._emit("_grads = _xp.zeros_like(params)", "_grads")
        if self.graph.out in self.graph.graded:
            self._backward()
        self.arrays = [a.name for a, _, _ in self.arguments]
        if self.uses_size:
            self.lines.insert(0, _Line(f"_n = len({self.arrays[0]})", ("_n",)))
        self.function = Namespace(self.names.taken).name(getattr(tape.f, "__name__", ""), "f")
        self.value = value
        self.source = self.text(run=False)

    def _head(self) -> None:
        """Each argument's columns unpacked where the program reads them one by one, then each captured Value
        read one by one."""
        for array, structure, leaves in self.arguments:
            if structure is None:
                self.symbol[leaves[0]] = array
            elif any(leaf in self.columns for leaf in leaves):
                columns = [self._new(leaf.label, f"{array.name}{j}", True) for j, leaf in enumerate(leaves, 1)]
                self.symbol.update(zip(leaves, columns))
                nested = not all(s is None for s in structure)
                self._unpack([c.name for c in columns], f"{array.name}.reshape(len({array.name}), -1)" if nested
                             else array.name, by_row=False)
        for p, k in self.graph.captured.items():
            if p in self.columns:
                symbol = self.symbol[p] = self._new(p.label, f"p{k}", varying=False)
                self._emit(f"{symbol.name} = params[{k}]", symbol.name)

    def _sums(self, layer: _Layer) -> None:
        """``Z = W @ X + b[:, None]``: the weights and biases gathered from ``params``, then one product."""
        units, z = layer.units, layer.sums.array.name
        self._emit(f"{layer.weights} = params[{layer.at_weights}]", layer.weights)
        layer.inputs_array, layer.inputs_by_sample = self._inputs(layer)
        terms: list[Term] = [_Product(layer.weights, layer.inputs_array, len(layer.inputs))]
        if units[0].bias is not None:
            bias = self._new(_stem([u.bias.label for u in units if u.bias], ""), f"b_{z}", varying=False).name
            layer.at_bias = self.names.name(f"at_{bias}", "at")
            self.indices[layer.at_bias] = [self.graph.captured[u.bias] for u in units if u.bias]
            self._emit(f"{bias} = params[{layer.at_bias}]", bias)
            terms.append(f"{bias}[:, None]")
        if units[0].constant is not None:
            constants = self.names.name(f"c_{z}", "c")
            self.biases[constants] = [[u.constant.data] for u in units if u.constant]
            terms.append(constants)
        self._block_line(z, terms, len(units))
        self.products.add(z)
        self._columns_of(layer.sums)

    def _inputs(self, layer: _Layer) -> tuple[str, str]:
        """The layer's inputs as an (n, batch) array and as a (batch, n) one: a block, an argument, or their
        columns stacked."""
        kind, source = layer.source
        if kind == "block":
            return source.array.name, f"{source.array.name}.T"
        if kind == "argument":
            array, structure, _ = self.arguments[source]
            if all(s is None for s in structure):
                return f"{array.name}.T", array.name
            flat = self._new(f"{array.name}_flat", "flat", varying=True).name
            self._emit(f"{flat} = {array.name}.reshape(len({array.name}), -1)", flat)
            return f"{flat}.T", flat
        stacked = self._new(f"in_{layer.sums.array.name}", "inputs", varying=True).name
        columns = tuple(self._python(self._value(x)) for x in layer.inputs)
        self._block_line(stacked, [_Stack(columns)], len(columns))
        return stacked, f"{stacked}.T"

    def _activation(self, block: _Block) -> None:
        """``H = op(Z)``: the op's array form on the whole block."""
        op = block.members[0].rule
        assert isinstance(op, Op)
        name, text = block.array.name, self._python(op(block.layer.sums.array))
        call = _Call(text, op, block.layer.sums.array.name)
        self.lines.append(_Line(f"{name} = {text}", (name,), len(block.members), (call,)))
        self._columns_of(block)

    def _columns_of(self, block: _Block) -> None:
        """The block's members as columns (its rows), where the program reads them one by one."""
        if any(m in self.columns for m in block.members):
            array = block.array.name
            columns = [self._new(m.label, f"{array}_{j}", True) for j, m in enumerate(block.members, 1)]
            self.symbol.update(zip(block.members, columns))
            self._unpack([c.name for c in columns], array, by_row=True, view_of=array)

    # -- backward --

    def _backward(self) -> None:
        self.grads[self.graph.out] = 1.0
        for item in reversed(self.order):
            if isinstance(item, Value):
                self._column_backward(item)
            else:
                self._block_backward(item)
        for p, k in self.graph.captured.items():
            if p in self.grads:
                g = self._let(self.grads.pop(p), self._gradient_name(p), "d")
                if self._varies(g):
                    self._emit(f"_grads[{k}] += {self._python(g)}.sum()")
                else:
                    self.uses_size = True
                    self._emit(f"_grads[{k}] += _n * {self._python(g)}")

    def _add(self, v: Value, contribution: Expr) -> None:
        if v in self.graph.graded:
            self.grads[v] = self.grads.get(v, 0.0) + contribution

    def _column_backward(self, v: Value) -> None:
        """The node's rule applied to its gradient, as the engine's sweep applies it."""
        if v in self.grads:
            g = self._let(self.grads.pop(v), self._gradient_name(v), "d")
            for parent, c in zip(v.parents, local_step(v, g, self._value)):
                self._add(parent, c)

    def _block_backward(self, block: _Block) -> None:
        """The block's gradient, then its rule: the activation's on the whole block, or the layer's contraction."""
        g = self._block_gradient(block)
        layer = block.layer
        if g is None:
            return
        if block is layer.activation:
            member, h, z = block.members[0], block.array, layer.sums.array
            (c,) = local_step(member, g, lambda v: h if v is member else z)
            if isinstance(c, Symbol):
                self.parts.setdefault(id(layer.sums), []).append(c)
        else:
            self._contraction(layer, g.name)

    def _block_gradient(self, block: _Block) -> Symbol | None:
        """What reads the block as a whole and its members' gradients as columns (its rows), added up."""
        parts = self.parts.pop(id(block), [])
        columns = [self.grads.pop(m, None) for m in block.members]
        name = f"d_{block.array.name}"
        if any(c is not None for c in columns):
            texts = [self._column(c, m) for c, m in zip(columns, block.members)]
            if len(texts) == 1 and not parts:  # one row: a view of the column
                g = self._new(name, "d", varying=True)
                self._emit(f"{g.name} = {texts[0]}[None]", g.name,
                           view_of=texts[0] if texts[0].isidentifier() else None)
                return g
            parts.append(_Stack(tuple(texts)))
        if not parts:
            return None
        if len(parts) == 1 and isinstance(parts[0], Symbol) and parts[0].is_variable:
            return parts[0]
        g = self._new(name, "d", varying=True)
        self._block_line(g.name, parts, len(block.members))
        return g

    def _column(self, g: Expr | None, member: Value) -> str:
        """A member's gradient as a column: its line's name, or a number spread over the batch."""
        g = self._let(0.0 if g is None else g, self._gradient_name(member), "d")
        if self._varies(g):
            return self._python(g)
        self.uses_size = True
        return f"_full(_n, {self._python(g)})"

    def _contraction(self, layer: _Layer, g: str) -> None:
        """The rules' products summed over the batch and the units: dW = G @ X.T, db = G.sum(1), dX = W.T @ G."""
        self._scatter(layer.at_weights, f"{g} @ {layer.inputs_by_sample}")
        if layer.at_bias:
            self._scatter(layer.at_bias, f"{g}.sum(1)")
        kind, source = layer.source
        back = _Product(f"{layer.weights}.T", g, len(layer.units))
        if kind == "block":
            self.parts.setdefault(id(source), []).append(back)
        elif kind == "stacked" and any(x in self.graph.graded for x in layer.inputs):
            d = self._new(f"d_{layer.inputs_array}", "d", varying=True).name
            self._block_line(d, [back], len(layer.inputs))
            self.products.add(d)
            columns = [self._new(self._gradient_name(x), "d", True) if x in self.graph.graded else None
                       for x in layer.inputs]
            self._unpack([c.name if c is not None else "_" for c in columns], d, by_row=True, view_of=d)
            for x, c in zip(layer.inputs, columns):
                if c is not None:
                    self._add(x, c)

    def _scatter(self, at: str, expr: str) -> None:
        """``_grads[at] += expr``; where a position comes twice, added at each (numpy's add.at)."""
        positions = list(_flattened(self.indices[at]))
        if len(set(positions)) == len(positions):
            self._emit(f"_grads[{at}] += {expr}")
        else:
            self._emit(f"_add_at(_grads, {at}, {expr})")

    # -- the program's text and code --

    def text(self, run: bool, torch: bool = False) -> str:
        """The program: as ``source`` shows it, or (``run``) as a run executes it on numpy or torch arrays (see
        :class:`_Run`)."""
        if run:
            return _Run(self, torch).text
        body = [f"    {line.text}" for line in self.lines]
        head = f"def {self.function}({', '.join([*self.arrays, 'params'])}):"
        return "\n".join([head, *body, f"    return {self.value}, _grads"]) + "\n"

    def checked(self, torch: bool) -> set[str]:
        """The lines whose values a run checks: the products (numpy raises where any other array op makes an
        inf or nan); on torch, which raises nowhere, also each line read where an inf may vanish and each line
        read nowhere, as the tape's torch batch checks its lines."""
        if not torch:
            return set(self.products)
        read = {"_grads", *_NAME.findall(self.value)}
        made: set[str] = set()
        for line in self.lines:
            read.update(set(_NAME.findall(line.text)) - set(line.made))
            made.update(line.made)
        return self.products | self.guarded | (made - read)

    def namespace(self, xp: Any, device: Any) -> dict[str, Any]:
        """What the program's names stand for on arrays of module ``xp`` on ``device``: ops bound to their array
        forms, positions and constants made arrays there, the helpers."""
        namespace: dict[str, Any] = {name: array_function(op, xp) for name, op in self.names.functions.items()}
        namespace.update(self.names.constants)
        namespace.update({name: _positions(xp, p, device) for name, p in self.indices.items()})
        namespace.update({name: _array(xp, c, device) for name, c in self.biases.items()})
        namespace.update(_xp=xp, _full=_filler(xp, device), _add_at=_adder(xp), _check=_checker(xp),
                         _owned=_owner(xp))
        return namespace

    def compiled(self, xp: Any, device: Any) -> _Compiled:
        """The program as a run executes it, for arrays of module ``xp`` on ``device``."""
        run = _Run(self, xp.__name__ == "torch")
        namespace = self.namespace(xp, device)
        exec(_compile(run.text), namespace)
        return _Compiled(namespace[self.function], run.slots)


# -- how a run executes the program ----------------------------------------------------------------------------------

_STEPS = {rules.add: ("+", "add"), rules.subtract: ("-", "subtract"), rules.multiply: ("*", "multiply"),
          rules.divide: ("/", "divide")}


@dataclass
class _Compiled:
    """The program's run function for one array module, and the working arrays it takes (its last argument,
    ``_w``): per slot, the rows of its arrays, and whether the run's first use of it is an op's array form
    (which makes its own array: the slot starts empty)."""

    run: Callable[..., Any]
    slots: list[tuple[int, bool]]

    def chunk(self, budget: int) -> int:
        """The most samples a run takes at once, so that its working arrays take about ``budget`` bytes."""
        return max(_SMALLEST_CHUNK, budget // max(1, 8 * sum(units for units, _ in self.slots)))

    def arrays(self, xp: Any, device: Any, size: int) -> list[Any]:
        """New working arrays for a batch of ``size``."""
        if xp.__name__ == "torch":
            return [None if empty else xp.empty((units, size), dtype=xp.float64, device=device)
                    for units, empty in self.slots]
        return [None if empty else xp.empty((units, size)) for units, empty in self.slots]


class _Run:
    """The program as a run executes it: ``source``'s lines, the same operations on the same operands in the
    same order, but each block computed into an array of the run's own (``out=``, in place), then its checks,
    then ``del`` for each name read no more.

    A *slot* of the working arrays ``_w`` holds, line after line, the blocks of one shape: a block goes into a
    slot that no name reads any more (its array made by an earlier line, or kept from the run before), or, for a
    rule's elementwise expression, one whose last reader is this very line if the expression reads it no more
    once it writes there (``h * h`` may go into ``h``'s array: ``h`` is read in that step, then never); of
    those, the one used last (its memory likeliest in the cache). Names whose arrays may be one array (a block
    and its rows; a column an op's array form made and what it read, for the form may return its input) are
    one *group*, and a slot is free when its group is read no more. A block the returned value reads (a view of
    it) is made afresh each run, since the caller keeps it. An activation whose array form is a numpy ufunc of
    its input (``xp.tanh(x)``: :func:`_ufunc`) is computed into a slot too, its input's if read no more. What
    another op's array form makes on a block goes into the slot by reference: the slot first lets its old array
    go, so that the op's new one takes its memory (an allocator gives a freed block of the size asked for), and
    ``_owned`` copies a result that is not a new float64 array of its own (the form returned its input, a view,
    another type), so that writing into it later touches nothing else."""

    def __init__(self, program: _Program, torch: bool):
        self.program, self.torch = program, torch
        lines = program.lines
        self.made = made = {n: i for i, line in enumerate(lines) for n in line.made}
        reads = [_names(line.text, made) - set(line.made) for line in lines]
        returned = _names(program.value, made) | {"_grads"}
        self.parent = {n: n for n in made}
        for line, read in zip(lines, reads):
            for name in line.made:
                if line.view_of in made:
                    self._join(name, line.view_of)
                if not line.fresh:
                    for r in read:
                        self._join(name, r)
        self.end = end = len(lines)
        last = dict(made)  # each name's last reader (its own line if none; ``end``: the returned value)
        for i, read in enumerate(reads):
            last.update(dict.fromkeys(read, i))
        last.update(dict.fromkeys(returned, end))
        self.members: dict[str, set[str]] = {}
        self.group_last: dict[str, int] = {}
        for name, i in last.items():
            root = self._find(name)
            self.members.setdefault(root, set()).add(name)
            self.group_last[root] = max(self.group_last.get(root, -1), i)
        self.slots: list[tuple[int, bool]] = []
        self.holding: list[str | None] = []  # the group in each slot
        self.used: list[int] = []  # the last line that read or wrote each slot's array
        self.slot_of: dict[str, int] = {}  # names whose array is a slot's
        checked = program.checked(torch)
        ending: dict[int, list[str]] = {}
        for name, i in last.items():
            ending.setdefault(i, []).append(name)
        body = []
        for i, (line, read) in enumerate(zip(lines, reads)):
            body += self._lowered(i, line)
            for name in read | set(line.made):
                if name in self.slot_of:
                    self.used[self.slot_of[name]] = i
            if line.view_of in self.slot_of:
                self.slot_of.update(dict.fromkeys(line.made, self.slot_of[line.view_of]))
            body += [f"_check({name})" for name in line.made if name in checked]
            done = sorted(ending.get(i, []))
            if done:
                body.append(f"del {', '.join(done)}")
        head = f"def {program.function}({', '.join([*program.arrays, 'params', '_w'])}):"
        tail = f"return {program.value}, _grads"
        self.text = "\n".join([head, *(f"    {s}" for s in [*body, tail])]) + "\n"

    def _find(self, name: str) -> str:
        while self.parent[name] != name:
            self.parent[name] = name = self.parent[self.parent[name]]
        return name

    def _join(self, a: str, b: str) -> None:
        self.parent[self._find(a)] = self._find(b)

    def _lowered(self, i: int, line: _Line) -> list[str]:
        """The line's statements."""
        if not line.terms or self.group_last[self._find(line.made[0])] == self.end:
            return [line.text]  # no block, or one the caller keeps (the returned value is a view of it)
        name, first = line.made[0], line.terms[0]
        ufunc = None if self.torch or not isinstance(first, _Call) else _ufunc(first.op)
        if ufunc is not None:  # an array of the run's: the input's own, if it is read no more
            assert isinstance(first, _Call)
            k = next((k for k in self._ending(i, line.units) if first.input in self.members[self.holding[k] or ""]),
                     None)
            if k is None:
                k = self._slot(i, line, empty=False)
            else:
                self._take(k, name)
            return [f"{name} = _xp.{ufunc}({first.input}, out=_w[{k}])"]
        if isinstance(first, _Call):
            k = self._slot(i, line, empty=True)
            inputs = sorted(_names(first.text, self.made))
            return [f"_w[{k}] = None", f"{name} = _w[{k}] = _owned({', '.join([first.text, *inputs])})"]
        rest = [f"{name} += {self._term(t)}" for t in line.terms[1:]]
        if isinstance(first, Symbol):
            for k in self._ending(i, line.units):
                steps = _InPlace(name, f"_w[{k}]", self.program._python, self.torch).steps(first)
                holding = self.holding[k]
                if holding is not None and self._keeps_apart(steps, rest, self.members[holding]):
                    self._take(k, name)
                    return [*(s for s, _ in steps), *rest]
        k = self._slot(i, line, empty=False)
        out = f"_w[{k}]"
        if isinstance(first, _Product) and first.inner == 1 and not self.torch:
            # numpy's einsum makes an outer product twice as fast as broadcasting: the same products (0.0 for -0.0)
            steps = [(f'{name} = _xp.einsum("i,j->ij", {first.left}[:, 0], {first.right}[0], out={out})', True)]
        elif isinstance(first, _Product):
            function = "multiply" if first.inner == 1 else "matmul"
            steps = [(f"{name} = _xp.{function}({first.left}, {first.right}, out={out})", True)]
        elif isinstance(first, _Stack):
            steps = [(f"{name} = _xp.stack(({_tuple(list(first.columns))}), out={out})", True)]
        else:
            assert isinstance(first, Symbol)
            steps = _InPlace(name, out, self.program._python, self.torch).steps(first)
        return [*(s for s, _ in steps), *rest]

    def _term(self, term: Term) -> str:
        return self.program._python(term) if isinstance(term, Symbol) else str(term)

    def _ending(self, i: int, units: int) -> list[int]:
        """The slots of ``units`` rows whose group's last reader is line ``i``, the one used last first."""
        found = [k for k, ((n, _), group) in enumerate(zip(self.slots, self.holding))
                 if n == units and group is not None and self.group_last[group] == i]
        return sorted(found, key=self.used.__getitem__, reverse=True)

    @staticmethod
    def _keeps_apart(steps: list[tuple[str, bool]], rest: list[str], group: set[str]) -> bool:
        """No name of ``group`` (whose array the steps write into) is read after the first step that writes."""
        first = next((k for k, (_, writes) in enumerate(steps) if writes), len(steps))
        later = [s for s, _ in steps[first + 1:]] + rest
        return not any(group & set(_NAME.findall(s)) for s in later)

    def _slot(self, i: int, line: _Line, empty: bool) -> int:
        """A slot for the line's block: of those whose group is read no more, the one used last; or a new one
        (``empty``: its first array is what the line's op makes)."""
        free = [k for k, ((units, _), group) in enumerate(zip(self.slots, self.holding))
                if units == line.units and (group is None or self.group_last[group] < i)]
        if free:
            k = max(free, key=self.used.__getitem__)
        else:
            k = len(self.slots)
            self.slots.append((line.units, empty))
            self.holding.append(None)
            self.used.append(i)
        self._take(k, line.made[0])
        return k

    def _take(self, k: int, name: str) -> None:
        self.holding[k] = self._find(name)
        self.slot_of[name] = k


class _InPlace:
    """A rule's expression on blocks as steps that write into one array, ``out``, where its arithmetic allows:
    ``d * (1.0 - h * h)`` is ``h * h`` into ``out``, then ``1.0 -`` it, then ``d *`` it. Each step is one of the
    expression's own operations on the same operands, so the numbers are the expression's to the bit: ``a + b``
    may run as ``b += a`` (IEEE addition and multiplication commute exactly), and on torch, whose functions take
    no number first, ``a - b`` as ``b *= -1.0`` then ``b += a`` (IEEE's ``a - b`` is ``a + -b``). An op's call is
    computed as written (its array form makes its own array, never written to); a second array needed at once
    (``(a * b) * (c * d)``) is a new one, as is ``2.0 / b`` on torch."""

    def __init__(self, name: str, out: str, python: Callable[[Expr], str], torch: bool):
        self.name, self.out, self.python, self.torch = name, out, python, torch
        self.written = False
        self.temps = 0
        self.list: list[tuple[str, bool]] = []  # (statement, whether it writes into out)

    def steps(self, expr: Symbol) -> list[tuple[str, bool]]:
        text, holder = self._value(expr)
        if holder != self.name:
            self.list.append((f"{self.name} = {text}", False))
        temps = [f"_t{k}" for k in range(1, self.temps + 1)]
        if temps:
            self.list.append((f"del {', '.join(temps)}", False))
        return self.list

    def _value(self, e: Expr) -> tuple[str, str | None]:
        """The expression's text (a name, a number, a call) or, computed into an array of the run's own, that
        array's name."""
        if not isinstance(e, Symbol) or e.is_variable or (e.op not in _STEPS and e.op is not rules.negate):
            return self.python(e), None
        if e.op is rules.negate:
            text, holder = self._value(e.args[0])
            if holder:
                return self._step(f"{holder} *= -1.0", holder)
            return self._new("negative", [text])
        a, b = e.args
        (ta, ha), (tb, hb) = self._value(a), self._value(b)
        symbol, function = _STEPS[e.op]
        if ha:
            return self._step(f"{ha} {symbol}= {tb}", ha)
        if hb and e.op in (rules.add, rules.multiply):
            return self._step(f"{hb} {symbol}= {ta}", hb)
        number = not isinstance(a, Symbol)
        if hb and not self.torch:
            return self._step(f"_xp.{function}({ta}, {hb}, out={hb})", hb)
        if hb and e.op is rules.subtract:
            self._step(f"{hb} *= -1.0", hb)
            return self._step(f"{hb} += {ta}", hb)
        if hb:
            return self._fresh(f"({ta}) / {hb}") if number else self._step(f"_xp.divide({ta}, {hb}, out={hb})", hb)
        if not (self.torch and number):
            return self._new(function, [ta, tb])
        if e.op in (rules.add, rules.multiply):
            return self._new(function, [tb, ta])
        if e.op is rules.subtract:
            holder = self._new("negative", [tb])[1]
            assert holder is not None
            return self._step(f"{holder} += {ta}", holder)
        return self._fresh(f"({ta}) / ({tb})")

    def _step(self, text: str, holder: str) -> tuple[str, str]:
        self.list.append((text, holder == self.name))
        return holder, holder

    def _new(self, function: str, args: list[str]) -> tuple[str, str | None]:
        """``function(*args)`` into ``out`` if nothing is there yet, else into a new array."""
        if not self.written:
            self.written = True
            self.list.append((f"{self.name} = _xp.{function}({', '.join(args)}, out={self.out})", True))
            return self.name, self.name
        return self._fresh(f"_xp.{function}({', '.join(args)})")

    def _fresh(self, text: str) -> tuple[str, str]:
        self.temps += 1
        temp = f"_t{self.temps}"
        self.list.append((f"{temp} = {text}", False))
        return temp, temp


def _ufunc(op: Op) -> str | None:
    """The name of the numpy ufunc that ``op``'s array form calls on its input and returns, and nothing else
    (``lambda xp, x: xp.tanh(x)``), read by running the form on a recorder of numpy's attributes: so that a run
    may compute it into an array of its own (``out=``); else None."""
    numpy = sys.modules.get("numpy")
    if numpy is None or op.array is None or op.arity != 1:
        return None
    probe, result, calls = numpy.ones((1, 1)), object(), []

    class Recorder:
        def __getattr__(self, name: str) -> Any:
            def call(*args: Any, **kwargs: Any) -> object:
                calls.append((name, args, kwargs))
                return result
            return call

    try:
        returned = op.array(Recorder(), probe)
    except Exception:  # the form does more than call numpy on its input
        return None
    if returned is not result or len(calls) != 1:
        return None
    name, args, kwargs = calls[0]
    function = getattr(numpy, name, None)
    if (isinstance(function, numpy.ufunc) and function.nin == 1 and function.nout == 1 and len(args) == 1
            and args[0] is probe and not kwargs):
        return name
    return None


def _names(text: str, known: dict[str, int]) -> set[str]:
    """The names of ``known`` that ``text`` reads."""
    return {name for name in _NAME.findall(text) if name in known}


def _flattened(positions: list) -> Iterable[int]:
    for p in positions:
        if isinstance(p, list):
            yield from p
        else:
            yield p


def _positions(xp: Any, positions: list, device: Any) -> Any:
    if xp.__name__ == "torch":
        return xp.as_tensor(positions, dtype=xp.long, device=device)
    return xp.asarray(positions, dtype=xp.intp)


def _filler(xp: Any, device: Any) -> Callable[[int, Any], Any]:
    """``_full(n, c)``: a number (the same for every sample) as a column of ``n``."""
    if xp.__name__ == "torch":
        return lambda n, c: xp.as_tensor(c, dtype=xp.float64, device=device).expand(n)
    return lambda n, c: xp.full(n, c, dtype=float)


def _adder(xp: Any) -> Callable[[Any, Any, Any], Any]:
    """``_add_at(grads, positions, values)``: each value added at its position, a position given twice twice."""
    if xp.__name__ == "torch":
        return lambda grads, at, values: grads.index_put_((at,), values, accumulate=True)
    return xp.add.at
