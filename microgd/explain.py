"""Derivations: the chain rule written out as formulas, with the engine's numbers beside them.

:func:`explain` runs the engine's one sweep (:func:`~microgd.engine.sweep`) over symbols
(:mod:`microgd.symbolic`), so every local derivative it prints is the very rule ``backward()`` runs, as a
formula, applied by the very chain rule: there is no second table of derivatives and no second backward.
Piecewise ops print as such (relu's derivative is ``[s > 0]``, abs's ``sign(s)``), not as the branch taken
at this point. A rule that breaks the registry's contract, or does not run on symbols (it calls
``math.*``), raises the engine's :class:`~microgd.engine.RuleError` naming the op.

    >>> from microgd import Value, explain
    >>> w, x, t = Value(0.5, label="w"), Value(0.1, label="x"), Value(0.3, label="t")
    >>> sop = w * x; sop.label = "sop"
    >>> predicted = sop.sigmoid(); predicted.label = "predicted"
    >>> error = (predicted - t) ** 2; error.label = "error"
    >>> d = explain(error, wrt=w)
    >>> print(d)
    ∂error/∂w = ∂error/∂predicted · ∂predicted/∂sop · ∂sop/∂w
              = 2(predicted − t) · predicted(1 − predicted) · x
              = 0.4250 · 0.2498 · 0.1000
              = 0.0106
    >>> d.formula(w)
    '2.0 * (sigmoid(w * x) - t) * sigmoid(w * x) * (1.0 - sigmoid(w * x)) * x'

**Names.** Labelled nodes are written by their labels (made into identifiers, and unique: a second node
labelled ``w`` is ``w_2``). An unlabelled node is inlined: its forward expression is substituted where it is
used, as ``predicted − t`` is above. It gets a generated name instead (``v1``, ``v2``, ...; an unlabelled
root is ``f``), listed under "where" with its definition, when it is used more than once, or when inlining
would make an expression bigger than ``inline`` (counting its ops, names and numbers; default 16, so
``0.5(σ(w1·x1 + w2·x2 + b) − z)²`` is one expression; ``inline=0`` names every node). Constants are numbers.

**Forms.** When every leaf asked for has one path from the root through the named nodes, each derivative
is one chain, a factor per step (above). Otherwise the derivation is a list of adjoint (delta) equations
in backward's order, ``δ_n = Σ δ_c · ∂c/∂n`` over the consumers ``c`` of ``n``: one for each node whose δ
is a sum or is used more than once, while a δ used once is substituted where it is used, so that a
network reads as in the textbook (``δ_s_o = (y − z) · y(1 − y)``, ``δ_s_h1 = δ_s_o · w_o1 · a_h1(1 − a_h1)``).
Each leaf's derivative comes right after the last δ it needs, as its gradient is final there.

**Numbers.** A factor's value is the same sweep run on the engine's floats; each δ and each derivative is
the gradient ``backward()`` computes (the sweep from the root, as backward runs it; no ``.grad`` changes).

**Rules.** Each node's op is the one it was made with (``node.rule``), never looked up by name, so a graph
built before an op is defined again is explained with its own rule.

**Size.** At most ``max_equations`` equations are printed (default :data:`MAX_EQUATIONS`, 40), then a note
says how many were left out; ``explain(root, wrt=leaf)`` asks for one leaf. :meth:`Derivation.formula` writes
out the closed form with every intermediate substituted, which grows fast with reuse: beyond
``MAX_FORMULA_OPS`` ops it is a ValueError (read the equations instead, or compile the graph with
:func:`microgd.tape.trace`).
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, count
from typing import Union

from . import checks
from .engine import Value, sweep
from .rules import ATOM, OPS, PREFIX, PRODUCT
from .symbolic import Expr, Symbol, printed

__all__ = ["explain", "Derivation", "Equation", "Factor", "MAX_FORMULA_OPS", "MAX_EQUATIONS", "INLINE"]

MAX_EQUATIONS = 40
"""The most equations :func:`explain` prints by default (``max_equations=None`` prints all)."""
INLINE = 16
"""The largest expression (ops, names and numbers) :func:`explain` writes inline by default."""
MAX_FORMULA_OPS = 20_000
"""The most ops :meth:`Derivation.formula` writes out (the closed form of a graph with much reuse is huge)."""

_WIDTH = 80  # an equation whose stages fit in this many characters is printed on one line


@dataclass(frozen=True)
class Factor:
    """One factor of a term: a local derivative (``symbol`` ∂c/∂n, its formula and its value by the same
    rule on the engine's floats), or ``δ_c``, the δ of a node whose own equation comes earlier."""

    symbol: str
    symbol_latex: str
    text: str
    latex: str
    value: float
    precedence: int = ATOM  # of the formula, as in microgd.rules (a sum is put in parentheses in a product)
    is_one: bool = False  # a local derivative that is exactly 1, left out of products
    mentions: tuple[str, ...] = ()  # the names of the nodes it is about or its formula uses


@dataclass(frozen=True)
class Equation:
    """``lhs = Σ over terms of the product of their factors``; ``value`` is the engine's gradient.
    ``lhs`` is ``δ_n`` (the root's derivative with respect to the node n) or ``∂root/∂leaf``."""

    lhs: str
    lhs_latex: str
    terms: tuple[tuple[Factor, ...], ...]
    value: float


Wrt = Union[Value, Iterable[Value], None]


def explain(root: Value, wrt: Wrt = None, *, inline: int = INLINE, max_equations: int | None = MAX_EQUATIONS,
            digits: int = 4) -> Derivation:
    """The derivation of ``root``'s gradient with respect to ``wrt``: a leaf, a list of leaves, or None
    for every labelled leaf of the graph (every leaf if none is labelled; constants never). See the module
    docstring for its form, names and limits.

        >>> from microgd import Value
        >>> a, b = Value(2.0, label="a"), Value(-1.5, label="b")
        >>> print(explain(a.relu() * b.abs()))
        ∂f/∂a = |b|·[a > 0] = 1.5000
        ∂f/∂b = relu(a)·sign(b) = −2.0000
        where f = relu(a)·|b|
    """
    if not isinstance(root, Value):
        raise TypeError(f"explain: root must be a Value, got {type(root).__name__}: {root!r}")
    for option, given, least in (("inline", inline, 0), ("max_equations", max_equations, 1), ("digits", digits, 1)):
        if given is not None or option != "max_equations":
            checks.whole(given, f"explain: {option}", least)
    graph = _Graph(root, inline)
    leaves = _leaves(graph, wrt)
    form, equations = _equations(graph, leaves)
    shown = equations if max_equations is None else equations[:max_equations]
    return Derivation(graph, leaves, form, shown, len(equations) - len(shown), digits)


class Derivation:
    """The derivation of a root's gradient, made by :func:`explain`: print it (:meth:`text`, as ``str``),
    show it in Jupyter (LaTeX), get a derivative's closed form (:meth:`formula`) or read its parts:
    ``equations``, ``form`` ("chain" or "delta"), ``wrt``, ``omitted`` (equations past ``max_equations``)."""

    def __init__(self, graph: _Graph, wrt: list[Value], form: str, equations: list[Equation], omitted: int,
                 digits: int):
        self._graph, self.wrt, self.form = graph, tuple(wrt), form
        self.equations, self.omitted, self._digits = tuple(equations), omitted, digits

    @property
    def root(self) -> Value:
        """The Value whose gradient is derived."""
        return self._graph.root

    def name(self, node: Value) -> str:
        """The name ``node`` has in this derivation (its label, or a generated ``v3``)."""
        if node not in self._graph.names:
            raise ValueError(f"explain: {node!r} has no name in this derivation (it is inlined, a constant, or "
                             f"not in the graph; explain(root, inline=0) names every node)")
        return self._graph.names[node]

    def local(self, node: Value, parent: Value) -> Factor:
        """The local derivative ∂node/∂parent as a factor, its formula over the named nodes and its value.

            >>> from microgd import Value
            >>> s = Value(0.5, label="s"); y = s.sigmoid(); y.label = "y"
            >>> f = explain(y).local(y, s)
            >>> f.symbol, f.text, round(f.value, 4)
            ('∂y/∂s', 'y(1 − y)', 0.235)
        """
        if node not in self._graph.names or not node.parents or parent not in self._graph.local(node):
            raise ValueError(f"explain: {parent!r} is not an input of {node!r} between named nodes of this "
                             "derivation (explain(root, inline=0) names every node)")
        return self._graph.factor(node, parent)

    def formula(self, w: Value) -> str:
        """The closed form of d root / d ``w`` in the formula language (also Python, given the registry's
        functions), every intermediate substituted: it can be evaluated on its own at any point."""
        graph = self._graph
        if not isinstance(w, Value) or w not in graph.index or w.parents or w.is_constant:
            raise ValueError(f"Derivation.formula: {w!r} is not a leaf of this graph (constants excluded)")
        derivative = graph.closed_forms()[w]  # every leaf of the graph is reached from the root
        if not isinstance(derivative, Symbol):
            return repr(float(derivative))
        size = _size(derivative)
        if size > MAX_FORMULA_OPS:
            raise ValueError(f"Derivation.formula: d {graph.names[graph.root]}/d {graph.names[w]} written out has "
                             f"{size:,} ops (more than MAX_FORMULA_OPS = {MAX_FORMULA_OPS:,}); read the equations "
                             "(print the derivation) or compile the graph with microgd.tape.trace")
        return derivative.formula()

    def text(self) -> str:
        """The derivation in Unicode math, one equation after another (the same as ``str(d)``): a blank line
        before each δ, and between chains that take more than a line."""
        lines: list[str] = []
        before: list[str] = []
        for equation in self.equations:
            these = _lay_out(equation, "text", self._digits)
            if lines and (equation.lhs.startswith("δ") or (self.form == "chain" and len(these) + len(before) > 2)):
                lines.append("")
            lines += these
            before = these
        lines += _where(self._graph, self.equations, "text")
        if self.omitted:
            lines.append(self._note())
        return "\n".join(lines)

    def latex(self) -> str:
        r"""The derivation as a LaTeX ``aligned`` block, one row per line of :meth:`text`."""
        rows = [row for equation in self.equations for row in _lay_out(equation, "latex", self._digits)]
        rows += _where(self._graph, self.equations, "latex")
        if self.omitted:
            rows.append(r"&\ldots\ \text{" + self._note().removeprefix("… ").replace("_", r"\_") + "}")
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def _note(self) -> str:
        return (f"… {self.omitted} more equation{'s' * (self.omitted > 1)} not shown (explain(root, wrt=leaf) "
                "for one leaf, max_equations=None for all)")

    def __str__(self) -> str:
        return self.text()

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"

    def _repr_markdown_(self) -> str:
        return f"$$\n{self.latex()}\n$$"

    def __repr__(self) -> str:
        names = ", ".join(self._graph.names[w] for w in self.wrt)
        return f"<Derivation of {self._graph.names[self.root]} by {names}: {self.form} form, " \
               f"{len(self.equations)} equation(s)>"


# -- the graph as the derivation sees it ------------------------------------------------------------

class _Graph:
    """Which nodes are named, each node's expression over the named nodes, each named node's local
    derivatives with respect to the named nodes it is computed from, and the engine's gradients."""

    def __init__(self, root: Value, inline: int):
        self.root = root
        self.nodes = root.topo()
        self.index = {v: i for i, v in enumerate(self.nodes)}
        uses = Counter(p for v in self.nodes for p in v.parents)
        named = {v for v in self.nodes if not v.is_constant and (not v.parents or v.label or uses[v] > 1)}
        named.add(root)
        size: dict[Value, int] = {}  # of v's expression, its unnamed inputs inlined: ops, names and numbers
        for v in self.nodes:
            if v.parents:
                inner = [p for p in v.parents if p.parents and p not in named]
                size[v] = 1 + len(v.parents) - len(inner) + sum(size[p] for p in inner)
                if size[v] > inline:
                    named.update(inner)
                    size[v] = 1 + len(v.parents)
        self.names = _names(self.nodes, named, root)
        self.sym: dict[Value, Expr] = {}
        for v in self.nodes:
            if v.is_constant:
                self.sym[v] = v.data
            elif v in self.names:
                self.sym[v] = Symbol.variable(self.names[v])
            else:
                self.sym[v] = self.definition(v)
        self.grads = sweep(root)  # backward's gradients
        self._local: dict[Value, dict[Value, tuple[Expr, float]]] = {}
        self._closed: dict[Value, Expr] | None = None

    def definition(self, v: Value) -> Expr:
        """``v``'s op applied to its inputs' expressions (named inputs as variables)."""
        return _forward(v, [self.sym[p] for p in v.parents])

    def latex_name(self, v: Value) -> str:
        return printed(self.sym[v], "latex").text

    def local(self, node: Value) -> dict[Value, tuple[Expr, float]]:
        """For a named node: ∂node/∂m for each named node m it is computed from, through the unnamed
        nodes it inlines, as (formula, value): the sweep from ``node``, stopping at the other named nodes,
        run over symbols and over the engine's floats."""
        found = self._local.get(node)
        if found is None:
            symbolic = sweep(node, 1.0, value=self.sym.__getitem__, stop_at=self.names)
            numeric = sweep(node, 1.0, stop_at=self.names)
            found = self._local[node] = {m: (symbolic[m], numeric[m]) for m in symbolic
                                         if m in self.names and m is not node}
        return found

    def factor(self, node: Value, m: Value) -> Factor:
        expr, value = self.local(node)[m]
        text = printed(expr, "text")
        return Factor(f"∂{self.names[node]}/∂{self.names[m]}",
                      rf"\frac{{\partial {self.latex_name(node)}}}{{\partial {self.latex_name(m)}}}",
                      text.text, printed(expr, "latex").text, value, text.precedence,
                      is_one=not isinstance(expr, Symbol) and expr == 1.0,
                      mentions=(self.names[node], self.names[m], *_variables(expr)))

    def delta(self, node: Value) -> Factor:
        name = f"δ_{self.names[node]}"
        return Factor(name, rf"\delta_{{{self.latex_name(node)}}}", name, rf"\delta_{{{self.latex_name(node)}}}",
                      self.grads[node], mentions=(self.names[node],))

    def closed_forms(self) -> dict[Value, Expr]:
        """d root / d leaf for every leaf, every intermediate substituted: the sweep over symbols, each node's
        value its whole expression over the leaves, so the formula does the engine's arithmetic."""
        if self._closed is None:
            full: dict[Value, Expr] = {}
            for v in self.nodes:
                full[v] = _forward(v, [full[p] for p in v.parents]) if v.parents else self.sym[v]
            self._closed = {v: g for v, g in sweep(self.root, 1.0, value=full.__getitem__).items()
                            if not v.parents and not v.is_constant}
        return self._closed


def _forward(v: Value, inputs: list[Expr]) -> Expr:
    """The op ``v`` was made with, applied to expressions of its inputs: its forward as a formula."""
    rule = v.rule
    assert rule is not None, "only a node with inputs has a forward"
    return rule(*inputs)


def _formula_functions() -> set[str]:
    """The names the formula language calls as functions (the registry's ops written ``name(...)``)."""
    return {name for name, op in OPS.items() if op.function}


def _identifier(label: str) -> str:
    """A label as a name of the formula language (a Python identifier, as Python's parser reads it)."""
    name = re.sub(r"\W", "_", unicodedata.normalize("NFKC", label))
    return name if name[0].isalpha() or name[0] == "_" else f"v_{name}"


def _names(nodes: list[Value], named: set[Value], root: Value) -> dict[Value, str]:
    """A unique name for each named node: labels first (the first node with a label keeps it), then
    ``label_2`` for a repeated label, ``f`` for an unlabelled root, ``v1``, ``v2``, ... for the others."""
    taken = _formula_functions() | set(keyword.kwlist)
    names: dict[Value, str] = {}
    for v in nodes:
        if v in named and v.label and _identifier(v.label) not in taken:
            names[v] = _identifier(v.label)
            taken.add(names[v])
    numbers = count(1)
    for v in nodes:
        if v in named and v not in names:
            if v.label or v is root:
                base = _identifier(v.label) if v.label else "f"
                name = next(n for n in chain([base], (f"{base}_{k}" for k in count(2))) if n not in taken)
            else:
                name = next(n for n in (f"v{k}" for k in numbers) if n not in taken)
            names[v] = name
            taken.add(name)
    return {v: names[v] for v in nodes if v in names}


def _leaves(graph: _Graph, wrt: Wrt) -> list[Value]:
    """``wrt`` checked: leaves of the graph, not constants; None means every labelled leaf (every leaf
    when none is labelled)."""
    if wrt is None:
        leaves = [v for v in graph.nodes if not v.parents and not v.is_constant]
        return [v for v in leaves if v.label] or leaves
    if isinstance(wrt, str):
        raise TypeError(f"explain: wrt takes Values, not names, got {wrt!r} "
                        f"(the leaf: [v for v in root.topo() if v.label == {wrt!r}])")
    items = [wrt] if isinstance(wrt, Value) else list(wrt) if isinstance(wrt, Iterable) else [wrt]
    for v in items:
        if not isinstance(v, Value):
            raise TypeError(f"explain: wrt takes Values (leaves of the graph), got {type(v).__name__}: {v!r}")
        if v not in graph.index:
            raise ValueError(f"explain: wrt {v!r} is not in the graph of the root")
        if v.is_constant:
            raise ValueError(f"explain: wrt {v!r} is a constant (a Python number in an op), never differentiated")
        if v.parents:
            raise ValueError(f"explain: wrt {v!r} is computed by {v.op!r}, not a leaf; wrt takes leaves of the graph")
    if not items:
        raise ValueError("explain: wrt is empty; pass a leaf, a list of leaves, or None for every labelled leaf")
    return list(dict.fromkeys(items))


# -- the equations -----------------------------------------------------------------------------------

def _equations(graph: _Graph, leaves: list[Value]) -> tuple[str, list[Equation]]:
    """The chain form when each leaf has one path from the root through named nodes, else the delta form."""
    root, wanted = graph.root, set(leaves)
    reaches: dict[Value, bool] = {}
    for v in graph.names:  # parents first
        reaches[v] = v in wanted or (bool(v.parents) and any(reaches[m] for m in graph.local(v)))
    relevant = [v for v in reversed(graph.names) if reaches[v]]  # newest first: backward's order
    consumers: dict[Value, list[Value]] = {v: [] for v in relevant}
    paths = Counter({root: 1})
    for n in relevant:
        for m in graph.local(n) if n.parents else ():
            if reaches[m]:
                consumers[m].append(n)
                paths[m] = min(2, paths[m] + paths[n])
    form = "chain" if all(paths[w] == 1 for w in leaves) else "delta"

    def own_line(n: Value) -> bool:
        uses = sum(reaches[m] for m in graph.local(n))
        return form == "delta" and n is not root and (len(consumers[n]) > 1 or uses > 1)

    prefix: dict[Value, tuple[Factor, ...]] = {root: ()}  # what δ_n is in a product: itself, or its one term

    def terms(n: Value) -> tuple[tuple[Factor, ...], ...]:
        return tuple((*prefix[c], graph.factor(c, n)) for c in consumers[n]) if n is not root else ((),)

    lhs = graph.names[root]
    leaf_equations = {w: Equation(f"∂{lhs}/∂{graph.names[w]}",
                                  rf"\frac{{\partial {graph.latex_name(root)}}}{{\partial {graph.latex_name(w)}}}",
                                  (), graph.grads[w]) for w in leaves}
    equations: list[Equation] = []
    for n in relevant:
        if n.parents and n is not root:
            if own_line(n):
                delta = graph.delta(n)
                equations.append(Equation(delta.symbol, delta.symbol_latex, terms(n), delta.value))
                prefix[n] = (delta,)
            else:
                (prefix[n],) = terms(n)
        if form == "delta":
            equations += [_with_terms(leaf_equations[w], terms(w)) for w in leaves if consumers[w][-1] is n]
    if form == "chain":
        equations = [_with_terms(leaf_equations[w], terms(w)) for w in leaves]
    return form, equations


def _with_terms(equation: Equation, terms: tuple[tuple[Factor, ...], ...]) -> Equation:
    return Equation(equation.lhs, equation.lhs_latex, terms, equation.value)


# -- printing ----------------------------------------------------------------------------------------

def _number(x: float, digits: int, style: str) -> str:
    """``digits`` decimals, or scientific notation for numbers too small or large for them."""
    x = x + 0.0  # no -0
    if x == 0.0 or 10.0 ** (1 - digits) <= abs(x) < 1e6:
        text = f"{x:.{digits}f}"
    else:
        mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
        text = rf"{mantissa} \times 10^{{{int(exponent)}}}" if style == "latex" else f"{mantissa}e{int(exponent)}"
    return text.replace("-", "−") if style == "text" else text


def _sum(terms: list[list[tuple[str, int]]], style: str) -> str:
    """Printed factors (text, precedence) multiplied within a term, the terms added: a sum among factors is
    put in parentheses, and so is a later factor with a leading minus; a later term's minus becomes the operator."""
    times, minus = (" · ", "−") if style == "text" else (r" \cdot ", "-")
    out = ""
    for i, term in enumerate(terms):
        parts = []
        for j, (text, precedence) in enumerate(term):
            if (precedence < PRODUCT and len(term) > 1) or (j > 0 and text.startswith(minus)):
                text = f"({text})"
            parts.append(text)
        body = times.join(parts) or "1"
        if i == 0:
            out = body
        elif body.startswith(minus):
            out += f" {minus} {body[len(minus):]}"
        else:
            out += f" + {body}"
    return out


def _stages(equation: Equation, style: str, digits: int) -> list[str]:
    """The right-hand sides: the partial derivatives, their formulas, their values, the engine's result."""
    latex = style == "latex"
    partials = [[(f.symbol_latex if latex else f.symbol, ATOM) for f in term] for term in equation.terms]
    formulas = [[(f.latex if latex else f.text, f.precedence) for f in term if not f.is_one]
                for term in equation.terms]
    values = [[(_number(f.value, digits, style), PREFIX if f.value < 0 else ATOM) for f in term if not f.is_one]
              for term in equation.terms]
    return [_sum(partials, style), _sum(formulas, style), _sum(values, style),
            _number(equation.value, digits, style)]


def _lay_out(equation: Equation, style: str, digits: int) -> list[str]:
    """An equation's lines (text) or rows (LaTeX): on one line when it fits in _WIDTH characters, else one
    stage a line under the first; a stage the same as the one before it is left out (decided on the text)."""
    text = _stages(equation, "text", digits)
    keep = [i for i, s in enumerate(text) if s != ([equation.lhs, *text][i])]
    stages = _stages(equation, style, digits) if style == "latex" else text
    one_line = len(" = ".join([equation.lhs, *(text[i] for i in keep)])) <= _WIDTH
    if style == "latex":
        rows = [f"{equation.lhs_latex} &= " + " = ".join(stages[i] for i in keep)] if one_line else \
            [f"{equation.lhs_latex} &= {stages[keep[0]]}", *(f"&= {stages[i]}" for i in keep[1:])]
        return rows
    if one_line:
        return [" = ".join([equation.lhs, *(stages[i] for i in keep)])]
    pad = " " * len(equation.lhs)
    return [f"{equation.lhs} = {stages[keep[0]]}", *(f"{pad} = {stages[i]}" for i in keep[1:])]


def _where(graph: _Graph, equations: tuple[Equation, ...], style: str) -> list[str]:
    """What the names the user did not choose stand for (generated names, labels made unique or made
    identifiers) among those the equations mention, with their definitions, and what those mention in turn."""
    by_name = {name: v for v, name in graph.names.items()}
    pending = [graph.root, *(by_name[n] for e in equations for term in e.terms for f in term for n in f.mentions)]
    shown: set[Value] = set()
    while pending:
        v = pending.pop()
        if v not in shown and graph.names[v] != v.label:
            shown.add(v)
            if v.parents:
                pending += [by_name[name] for name in _variables(graph.definition(v))]
    lines: list[str] = []
    for v in sorted(shown, key=graph.index.__getitem__):
        meaning = printed(graph.definition(v), style).text if v.parents else _number(v.data, 4, style)
        note = f"labelled {v.label!r}" if v.label else "" if v.parents else "a leaf without a label"
        if style == "latex":
            head = r"\text{where}\quad " if not lines else ""
            lines.append(f"{head}{graph.latex_name(v)} &= {meaning}" + (rf"\quad\text{{({note})}}" if note else ""))
        else:
            head = "where " if not lines else "      "
            lines.append(f"{head}{graph.names[v]} = {meaning}" + (f"  ({note})" if note else ""))
    return lines


def _variables(expr: Expr) -> list[str]:
    """The names of the variables in ``expr``."""
    return [s.name for s in expr.walk() if s.is_variable] if isinstance(expr, Symbol) else []


def _size(expr: Symbol) -> int:
    """How many ops ``expr`` has written out as a tree (shared sub-expressions counted each time)."""
    sizes: dict[int, int] = {}
    for node in expr.walk():
        sizes[id(node)] = 1 + sum(sizes[id(a)] for a in node.args if isinstance(a, Symbol))
    return sizes[id(expr)]
