"""Writing a fused tape's program: the layers :mod:`microgd.layers` found, and the other nodes as columns, printed
as straight-line Python (``FusedTape.source``), forward then backward; and the same program as a run executes it,
each block computed into working arrays kept from run to run (liveness, in-place steps, the chunk size).

A block holds a unit per row and a sample per column (feature-major), so a unit's column is a row of its
block, a view (``y_1 = y[0]``), and the sums over the batch run along rows (``G.sum(1)``, ``G @ X.T``).
"""

from __future__ import annotations

import itertools
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from . import rules
from .codegen import OPERATORS, Namespace
from .engine import Value, local_step
from .layers import _Block, _Graph, _Layer, _layers, _schedule
from .rules import Op
from .symbolic import Expr, Symbol
from .tape import Tape, _array, _compile, _guarded, _parameter_names, array_function

_INTERNAL = ("params", "_grads", "_n", "_xp", "_full", "_add_at", "_w", "_check", "_owned")  # the generated code's
_NAME = re.compile(r"(?<![.\w])[^\W\d]\w*")  # an identifier read in a line (not an attribute: ``.T``, ``.sum``)
_SMALLEST_CHUNK = 256  # a batch's chunks have at least this many samples (a run's Python costs some 50 µs)


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

    def _named(self, k: int, layer: _Layer) -> tuple[str, int, int, str | None]:
        """Names for the layer's arrays, from the labels of its nodes where they share one (``s_h``, ``h``); and
        the layer as :class:`~microgd.fused.FusedLayer` shows it: its sums' name, inputs, units, activation."""
        layer.sums.array = self._new(_stem([u.root.label for u in layer.units], ""), f"z{k}", varying=True)
        weights = [p.label for u in layer.units for p in u.weights]
        layer.weights = self._new(_stem(weights, ""), f"w{k}", varying=False).name
        layer.at_weights = self.names.name(f"at_{layer.weights}", "at")
        self.indices[layer.at_weights] = [[self.graph.captured[p] for p in u.weights] for u in layer.units]
        activation = layer.activation
        if activation is None:
            return layer.sums.array.name, len(layer.inputs), len(layer.units), None
        activation.array = self._new(_stem([a.label for a in activation.members], ""), f"a{k}", varying=True)
        op = activation.members[0].rule
        assert isinstance(op, Op)
        return layer.sums.array.name, len(layer.inputs), len(layer.units), op.name

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


# -- the run's helpers: _check, _owned -----------------------------------------------------------------------------

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
