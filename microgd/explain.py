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
network reads as in the textbook (``δ_s_y = (y − z) · y(1 − y)``, ``δ_s_h1 = δ_s_y · w_y_1 · h1(1 − h1)``, in the
names :class:`microgd.nn.MLP` and the losses give the nodes).
Each leaf's derivative comes right after the last δ it needs, as its gradient is final there. A factor ∂c/∂n is
c's derivative through its input n alone (c's other inputs held fixed); where c also depends on n through other
named nodes, that is not the whole derivative of c by n, and it is written with a bar, ∂̄c/∂n (LaTeX
``\\bar{\\partial}``): ``∂f/∂a = ∂̄f/∂a + ∂f/∂s · ∂s/∂a`` for ``f = s·a``, ``s = a·a``.

**Numbers.** A factor's value is the same sweep run on the engine's floats; each δ and each derivative is
the gradient ``backward()`` computes (the sweep from the root, as backward runs it; no ``.grad`` changes).

**Rules.** Each node's op is the one it was made with (``node.rule``), never looked up by name, so a graph
built before an op is defined again is explained with its own rule.

**Size.** At most ``max_equations`` equations are printed (default :data:`MAX_EQUATIONS`, 40), and at most as
many definitions under "where"; a sum of more terms or a product of more factors than that is printed as its
first and last ones around "…"; a last line says what was left out. ``explain(root, wrt=leaf)`` asks for one
leaf. Its work grows in proportion to the graph (and to what is printed). :meth:`Derivation.formula` writes
out the closed form with every intermediate substituted, which grows fast with reuse: beyond
``MAX_FORMULA_OPS`` ops it is a ValueError (read the equations instead, or compile the graph with
:func:`microgd.tape.trace`).
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import count
from typing import TypeVar, Union

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
_DIRECT = "∂\u0304"  # ∂̄, ∂ with a bar: a derivative through one input alone that is not the whole derivative


@dataclass(frozen=True)
class Factor:
    """One factor of a term: a local derivative (``symbol`` ∂c/∂n, or ∂̄c/∂n where c also depends on n through
    other named nodes; its formula and its value by the same rule on the engine's floats), or ``δ_c``, the δ of a
    node whose own equation comes earlier."""

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
    plan = _Plan(graph, leaves)
    order = plan.order()
    shown = order if max_equations is None else order[:max_equations]
    return Derivation(graph, leaves, plan.form, [plan.equation(n) for n in shown], len(order) - len(shown), digits,
                      max_equations)


class Derivation:
    """The derivation of a root's gradient, made by :func:`explain`: print it (:meth:`text`, as ``str``),
    show it in Jupyter (LaTeX), get a derivative's closed form (:meth:`formula`) or read its parts:
    ``equations``, ``form`` ("chain" or "delta"), ``wrt``, ``omitted`` (equations past ``max_equations``)."""

    def __init__(self, graph: _Graph, wrt: list[Value], form: str, equations: list[Equation], omitted: int,
                 digits: int, limit: int | None):
        self._graph, self.wrt, self.form = graph, tuple(wrt), form
        self.equations, self.omitted, self._digits, self._limit = tuple(equations), omitted, digits, limit

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

        Its symbol has a bar, ∂̄node/∂parent, where node also depends on parent through other named nodes.
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
            these = _lay_out(equation, "text", self._digits, self._limit)
            if lines and (equation.lhs.startswith("δ") or (self.form == "chain" and len(these) + len(before) > 2)):
                lines.append("")
            lines += these
            before = these
        lines += _where(self._graph, self._definitions[0], "text")
        if self._note:
            lines.append(f"… {self._note}")
        return "\n".join(lines)

    def latex(self) -> str:
        r"""The derivation as a LaTeX ``aligned`` block, one row per line of :meth:`text`; labels are escaped, so
        that none can break the LaTeX or, shown in a notebook, leave the math."""
        rows = [row for equation in self.equations for row in _lay_out(equation, "latex", self._digits, self._limit)]
        rows += _where(self._graph, self._definitions[0], "latex")
        if self._note:
            rows.append(rf"&\ldots\ \text{{{_latex_text(self._note)}}}")
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    @cached_property
    def _definitions(self) -> tuple[list[Value], int]:
        """The nodes "where" defines, at most ``max_equations`` of them in the graph's order, and how many more."""
        found = _defined(self._graph, self.equations, self._limit)
        shown = found if self._limit is None else found[:self._limit]
        return sorted(shown, key=self._graph.index.__getitem__), len(found) - len(shown)

    @cached_property
    def _note(self) -> str:
        """What printing leaves out (``22 more equations not shown (...)``), or ""."""
        terms, factors = _left_out(self.equations, self._limit)
        counts = [(self.omitted, "equation", ""), (self._definitions[1], "definition", ""),
                  (factors, "factor", " of long products"), (terms, "term", " of long sums")]
        parts = [f"{n} more {noun}{'s' * (n > 1)}{of}" for n, noun, of in counts if n]
        if not parts:
            return ""
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        return f"{listed} not shown (explain(root, wrt=leaf) for one leaf, max_equations=None for all)"

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
        self.named = list(self.names)  # parents first
        self.positions = [self.index[v] for v in self.named]
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
        self._factors: dict[tuple[Value, Value], Factor] = {}
        self._indirect: dict[Value, set[Value]] = {}
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

    @cached_property
    def users(self) -> dict[Value, list[Value]]:
        """For each named node, the named nodes computed from it (whose :meth:`local` has it), newest first."""
        users: dict[Value, list[Value]] = {v: [] for v in self.named}
        for v in reversed(self.named):
            for m in self.local(v) if v.parents else ():
                users[m].append(v)
        return users

    def indirect(self, n: Value) -> set[Value]:
        """The users of ``n`` that also depend on it through another named node: for them ∂user/∂n, the derivative
        through ``n`` alone, is not the whole derivative. One pass over the named nodes between its users."""
        found = self._indirect.get(n)
        if found is None:
            users, found = self.users[n], set()
            if len(users) > 1:
                first = bisect_right(self.positions, self.index[users[-1]])
                last = bisect_right(self.positions, self.index[users[0]])
                marked, reaching = set(users), set()  # reaching: the nodes that depend on a user of n
                for v in self.named[first:last]:  # parents first
                    if any(m in marked or m in reaching for m in self.local(v)):
                        reaching.add(v)
                found = marked & reaching
            self._indirect[n] = found
        return found

    def factor(self, node: Value, m: Value) -> Factor:
        """∂node/∂m as a factor (made once): ∂̄node/∂m where it is not the whole derivative (:meth:`indirect`)."""
        found = self._factors.get((node, m))
        if found is None:
            expr, value = self.local(node)[m]
            text = printed(expr, "text")
            direct = node in self.indirect(m)
            partial, partial_latex = (_DIRECT, r"\bar{\partial}") if direct else ("∂", r"\partial")
            found = self._factors[node, m] = Factor(
                f"{partial}{self.names[node]}/∂{self.names[m]}",
                rf"\frac{{{partial_latex} {self.latex_name(node)}}}{{\partial {self.latex_name(m)}}}",
                text.text, printed(expr, "latex").text, value, text.precedence,
                is_one=not isinstance(expr, Symbol) and expr == 1.0,
                mentions=(self.names[node], self.names[m], *_variables(expr)))
        return found

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


def _function_names() -> set[str]:
    """The names the formula language and the text call as functions: the registry's ops written ``name(...)``
    and the symbols their text is written with (``σ``), so that no node's name followed by ``(`` reads as a call."""
    return {name for op in OPS.values() if op.function for name in (op.name, op.symbol)}


def _identifier(label: str) -> str:
    """A label as a name of the formula language (a Python identifier, as Python's parser reads it)."""
    name = re.sub(r"\W", "_", unicodedata.normalize("NFKC", label))
    return name if name[0].isalpha() or name[0] == "_" else f"v_{name}"


def _names(nodes: list[Value], named: set[Value], root: Value) -> dict[Value, str]:
    """A unique name for each named node: labels first (the first node with a label keeps it), then
    ``label_2`` for a repeated label, ``f`` for an unlabelled root, ``v1``, ``v2``, ... for the others."""
    taken = _function_names() | set(keyword.kwlist)
    names: dict[Value, str] = {}
    for v in nodes:
        if v in named and v.label and _identifier(v.label) not in taken:
            names[v] = _identifier(v.label)
            taken.add(names[v])
    numbers = count(1)
    suffixes: dict[str, Iterator[int]] = {}  # per base, the suffixes not tried yet: each name is tried once
    for v in nodes:
        if v in named and v not in names:
            if v.label or v is root:
                name = _identifier(v.label) if v.label else "f"
                if name in taken:
                    tries = suffixes.setdefault(name, count(2))
                    name = next(n for n in (f"{name}_{k}" for k in tries) if n not in taken)
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

class _Plan:
    """The equations over the named nodes that lead to the leaves asked for: the chain form when each leaf has
    one path from the root through named nodes, else the delta form; which equations there are, in backward's
    order (:meth:`order`), and each one made on demand (:meth:`equation`)."""

    def __init__(self, graph: _Graph, leaves: list[Value]):
        self.graph, self.leaves = graph, leaves
        wanted = set(leaves)
        reaches: dict[Value, bool] = {}
        for v in graph.named:  # parents first
            reaches[v] = v in wanted or (bool(v.parents) and any(reaches[m] for m in graph.local(v)))
        self.relevant = [v for v in reversed(graph.named) if reaches[v]]  # newest first: backward's order
        paths = Counter({graph.root: 1})
        for n in self.relevant:
            for m in graph.local(n) if n.parents else ():
                if reaches[m]:
                    paths[m] = min(2, paths[m] + paths[n])
        self.form = "chain" if all(paths[w] == 1 for w in leaves) else "delta"
        # a δ of its own: a sum (n has several users) or used more than once (n leads to the leaves through
        # several of its inputs)
        self.own_line = {n for n in self.relevant if self.form == "delta" and n.parents and n is not graph.root
                         and (len(graph.users[n]) > 1 or sum(reaches[m] for m in graph.local(n)) > 1)}

    def order(self) -> list[Value]:
        """The nodes whose equations the derivation has: in the delta form each δ of its own, and each leaf right
        after the last δ it needs; in the chain form the leaves."""
        if self.form == "chain":
            return list(self.leaves)
        after: defaultdict[Value, list[Value]] = defaultdict(list)
        for w in self.leaves:
            after[self.graph.users[w][-1]].append(w)
        order: list[Value] = []
        for n in self.relevant:
            if n in self.own_line:
                order.append(n)
            order += after.get(n, ())
        return order

    def equation(self, n: Value) -> Equation:
        """``δ_n = Σ δ_c · ∂c/∂n`` for a δ of its own, ``∂root/∂n = ...`` for a leaf."""
        graph = self.graph
        if n in self.own_line:
            delta = graph.delta(n)
            return Equation(delta.symbol, delta.symbol_latex, self.terms(n), delta.value)
        return Equation(f"∂{graph.names[graph.root]}/∂{graph.names[n]}",
                        rf"\frac{{\partial {graph.latex_name(graph.root)}}}{{\partial {graph.latex_name(n)}}}",
                        self.terms(n), graph.grads[n])

    def terms(self, n: Value) -> tuple[tuple[Factor, ...], ...]:
        """δ_n's terms, one per user c of n: what δ_c is in a product, times ∂c/∂n."""
        if n is self.graph.root:
            return ((),)
        return tuple((*self.prefix(c), self.graph.factor(c, n)) for c in self.graph.users[n])

    def prefix(self, n: Value) -> tuple[Factor, ...]:
        """What δ_n is in a product: δ_n itself when it has an equation of its own, else its one term written out
        (the factors along its one path to the root, or to a δ of its own)."""
        factors: list[Factor] = []
        while n is not self.graph.root and n not in self.own_line:
            (c,) = self.graph.users[n]
            factors.append(self.graph.factor(c, n))
            n = c
        head = () if n is self.graph.root else (self.graph.delta(n),)
        return (*head, *reversed(factors))


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


_Item = TypeVar("_Item")


def _trim(items: Sequence[_Item], limit: int | None) -> list[_Item | None]:
    """``items``; when there are more than ``limit``, the first and the last ones, ``limit`` in all, around a None."""
    if limit is None or len(items) <= limit:
        return list(items)
    head = limit // 2
    return [*items[:head], None, *items[len(items) - limit + head:]]


def _printed_factors(equation: Equation, limit: int | None) -> Iterator[Factor]:
    """The factors of ``equation`` that printing shows (long sums and products are trimmed to ``limit``)."""
    for term in _trim(equation.terms, limit):
        yield from (f for f in _trim(term or (), limit) if f is not None)


def _left_out(equations: tuple[Equation, ...], limit: int | None) -> tuple[int, int]:
    """How many terms of long sums, and factors of the long products shown, printing leaves out."""
    if limit is None:
        return 0, 0
    terms = sum(max(0, len(e.terms) - limit) for e in equations)
    factors = sum(max(0, len(t) - limit) for e in equations for t in _trim(e.terms, limit) if t is not None)
    return terms, factors


def _stage(equation: Equation, limit: int | None, dots: str, show: Callable[[Factor], tuple[str, int] | None]
           ) -> list[list[tuple[str, int]]]:
    """Each term's factors as ``show`` prints them (text, precedence; None leaves a factor out), a long sum or
    product trimmed to ``limit`` terms or factors around ``dots``."""
    stage = []
    for term in _trim(equation.terms, limit):
        shown = [(dots, ATOM)] if term is None else [(dots, ATOM) if f is None else show(f) for f in _trim(term, limit)]
        stage.append([p for p in shown if p is not None])
    return stage


def _stages(equation: Equation, style: str, digits: int, limit: int | None) -> list[str]:
    """The right-hand sides: the partial derivatives, their formulas, their values, the engine's result."""
    latex = style == "latex"
    dots = r"\cdots" if latex else "…"
    partials = _stage(equation, limit, dots, lambda f: (f.symbol_latex if latex else f.symbol, ATOM))
    formulas = _stage(equation, limit, dots,
                      lambda f: None if f.is_one else (f.latex if latex else f.text, f.precedence))
    values = _stage(equation, limit, dots, lambda f: None if f.is_one else
                    (_number(f.value, digits, style), PREFIX if f.value < 0 else ATOM))
    return [_sum(partials, style), _sum(formulas, style), _sum(values, style),
            _number(equation.value, digits, style)]


def _lay_out(equation: Equation, style: str, digits: int, limit: int | None) -> list[str]:
    """An equation's lines (text) or rows (LaTeX): on one line when it fits in _WIDTH characters, else one
    stage a line under the first; a stage the same as the one before it is left out (decided on the text)."""
    text = _stages(equation, "text", digits, limit)
    keep = [i for i, s in enumerate(text) if s != ([equation.lhs, *text][i])]
    stages = _stages(equation, style, digits, limit) if style == "latex" else text
    one_line = len(" = ".join([equation.lhs, *(text[i] for i in keep)])) <= _WIDTH
    if style == "latex":
        rows = [f"{equation.lhs_latex} &= " + " = ".join(stages[i] for i in keep)] if one_line else \
            [f"{equation.lhs_latex} &= {stages[keep[0]]}", *(f"&= {stages[i]}" for i in keep[1:])]
        return rows
    if one_line:
        return [" = ".join([equation.lhs, *(stages[i] for i in keep)])]
    pad = " " * len(equation.lhs)
    return [f"{equation.lhs} = {stages[keep[0]]}", *(f"{pad} = {stages[i]}" for i in keep[1:])]


def _defined(graph: _Graph, equations: tuple[Equation, ...], limit: int | None) -> list[Value]:
    """The nodes whose names the user did not choose (generated names, labels made unique or made identifiers)
    among those the printed equations mention, then those their definitions mention in turn, nearest first."""
    by_name = {name: v for v, name in graph.names.items()}
    queue = [graph.root, *(by_name[n] for e in equations for f in _printed_factors(e, limit) for n in f.mentions)]
    seen: set[Value] = set()
    found: list[Value] = []
    for v in queue:  # the queue grows as definitions mention more names
        if v not in seen:
            seen.add(v)
            if graph.names[v] != v.label:
                found.append(v)
                if v.parents:
                    queue += [by_name[name] for name in _variables(graph.definition(v))]
    return found


def _where(graph: _Graph, nodes: list[Value], style: str) -> list[str]:
    """The "where" lines: what each of ``nodes`` stands for (its definition, a leaf's value), and its label where
    that is not its name."""
    lines: list[str] = []
    for v in nodes:
        meaning = printed(graph.definition(v), style).text if v.parents else _number(v.data, 4, style)
        note = f"labelled {v.label!r}" if v.label else "" if v.parents else "a leaf without a label"
        if style == "latex":
            head = r"\text{where}\quad " if not lines else ""
            lines.append(f"{head}{graph.latex_name(v)} &= {meaning}" +
                         (rf"\quad\text{{({_latex_text(note)})}}" if note else ""))
        else:
            head = "where " if not lines else "      "
            lines.append(f"{head}{graph.names[v]} = {meaning}" + (f"  ({note})" if note else ""))
    return lines


_LATEX_TEXT = str.maketrans({"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "#": r"\#", "%": r"\%",
                             "&": r"\&", "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}",
                             "<": r"\textless{}", ">": r"\textgreater{}"})


def _latex_text(text: str) -> str:
    r"""``text`` for LaTeX's ``\text{...}``: each character LaTeX reads as markup escaped, and ``<`` and ``>`` too, so
    that a label neither breaks the LaTeX nor, shown in a notebook, ends the math or opens an HTML tag."""
    return text.translate(_LATEX_TEXT)


def _variables(expr: Expr) -> list[str]:
    """The names of the variables in ``expr``."""
    return [s.name for s in expr.walk() if s.is_variable] if isinstance(expr, Symbol) else []


def _size(expr: Symbol) -> int:
    """How many ops ``expr`` has written out as a tree (shared sub-expressions counted each time)."""
    sizes: dict[int, int] = {}
    for node in expr.walk():
        sizes[id(node)] = 1 + sum(sizes[id(a)] for a in node.args if isinstance(a, Symbol))
    return sizes[id(expr)]
