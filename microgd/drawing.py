"""Shared by the pictures (:mod:`microgd.viz`) and the backprop page (:mod:`microgd.stepper`): the DOT graph
of an expression, number formatting, colours, and running a Graphviz renderer.

The DOT is built with the public ``graphviz.Digraph`` API only; turning it into SVG or PNG is our own
call of a renderer program (:func:`find_renderer`), not the ``graphviz`` package's.

    >>> from microgd import Value
    >>> graph = expression_graph((Value(2.0, label="a") * 3).topo(), number=number_formatter(".4f", "example"))
    >>> "<b>a</b></td></tr><tr><td>data 2.0000" in graph.source   # a graphviz.Digraph
    True

How constants are drawn, in every picture and on the page: an input an op declares constant (the
``constants`` of its registry entry, e.g. the exponent of ``x ** 2``) is part of the op's node, which
reads ``** 2``; any other Python number in an expression (``0.3`` in ``p - 0.3``) is a small plain number
joined to its op by a dashed edge without a derivative: numbers are never differentiated, so backward
passes them nothing worth showing.

A value used many times across the graph (``x`` in ``x + x + ... + x``, ``w`` in a sum of ``tanh(w * x_i)``)
sends its edges along one trunk of small points, one per depth of use, instead of one long edge per use:
Graphviz's ``dot`` lays a long edge out as a chain of one hidden node per layer it crosses, so 70 long
edges from one node made 15 s to minutes of layout; a trunk crosses each layer once. Every use keeps its
own labelled edge (``e{i}_{k}``) from the trunk to its op. Every renderer call has a time limit.
"""

from __future__ import annotations

import html
import itertools
import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

import graphviz

from .engine import Closure, Value
from .rules import Op
from .table import number as table_number

__all__ = ["RenderError", "RendererNotFound", "RenderTimeout", "GraphTooLarge", "find_renderer", "run_renderer",
           "graph_nodes", "number_formatter", "new_graph", "expression_graph", "op_label", "label_text", "html_rows",
           "grad_fill", "shade", "is_folded", "drawn_inputs", "input_tails", "RENDER_TIMEOUT", "RANKDIR", "MAX_NODES"]

RANKDIRS = ("LR", "TB", "RL", "BT")
RANKDIR = "LR"  # pictures read left to right, inputs first
MAX_NODES = 500  # the largest graph a picture or a page draws (beyond it a picture is unreadable and slow)
POSITIVE, NEGATIVE = (33, 102, 172), (178, 24, 43)  # blue: grad > 0, red: grad < 0 (ColorBrewer RdBu)
FONT = "Helvetica"
RENDER_TIMEOUT = 60.0  # seconds a renderer may take before it is stopped
TRUNK_SAVING = 100  # layers of hidden nodes a trunk must save over direct edges to be drawn


class RenderError(RuntimeError):
    """A picture could not be rendered: the renderer failed (its message says why)."""


class RendererNotFound(RenderError):
    """Neither Graphviz's ``dot`` nor ``graphviz-pure`` was found, so a picture cannot be rendered."""


class RenderTimeout(RenderError):
    """The renderer (``program``) took longer than ``seconds`` and was stopped."""

    def __init__(self, message: str, program: str, seconds: float):
        super().__init__(message)
        self.program, self.seconds = program, seconds


class GraphTooLarge(ValueError):
    """A graph has more nodes (``nodes``) than a picture's ``max_nodes`` (``limit``)."""

    def __init__(self, message: str, nodes: int, limit: int):
        super().__init__(message)
        self.nodes, self.limit = nodes, limit


def find_renderer() -> str | None:
    """The program that turns DOT into pictures, or None.

    Graphviz's ``dot`` on PATH first, then ``graphviz-pure`` on PATH, then ``graphviz-pure`` next to
    the running Python (a virtual environment's bin folder, which need not be on PATH).
    """
    found = shutil.which("dot") or shutil.which("graphviz-pure")
    if not found and sys.executable:
        found = shutil.which("graphviz-pure", path=os.path.dirname(sys.executable))
    return found


def run_renderer(source: str, format: str, engine: str = "dot", timeout: float | None = None) -> bytes:
    """Render DOT ``source`` to ``format`` (svg, png, ...) bytes with the program :func:`find_renderer` picks,
    stopping it after ``timeout`` seconds (default :data:`RENDER_TIMEOUT`, 60) with a :class:`RenderTimeout`."""
    seconds = RENDER_TIMEOUT if timeout is None else timeout
    if not (isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0):
        raise ValueError(f"timeout must be a number of seconds above 0, got {timeout!r}")
    program = find_renderer()
    if program is None:
        raise RendererNotFound(
            "rendering a picture needs a Graphviz renderer and none was found: "
            'pip install "microgd[render]" (the graphviz-pure renderer) or install Graphviz '
            "(https://graphviz.org/download/) so that `dot` is on PATH. "
            "Saving the DOT source (.dot or .gv) works without either."
        )
    # its own session, so that stopping it stops whatever it started
    process = subprocess.Popen([program, f"-K{engine}", f"-T{format}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(source.encode("utf-8"), timeout=seconds)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise RenderTimeout(f"{program} took more than {seconds:g} s to lay out this graph and was stopped: draw a "
                            f"smaller graph, or allow more time with timeout={2 * seconds:g}", program,
                            seconds) from None
    except BaseException:  # Ctrl-C: the renderer is not in our process group, so it must be stopped here
        _stop(process)
        raise
    if process.returncode != 0:
        message = err.decode("utf-8", "replace").strip().replace("\n", " ")
        raise RenderError(f"{program} could not render {format}: {message or f'exit status {process.returncode}'}")
    return out


def _stop(process: subprocess.Popen) -> None:
    """Kill a renderer and everything it started, and wait for it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (AttributeError, OSError):  # no process groups (Windows), or already gone
        process.kill()
    process.communicate()


def graph_nodes(root: Value, max_nodes: int, caller: str) -> list[Value]:
    """``root.topo()``, refused with a clear message when it is more than ``max_nodes`` long."""
    if not isinstance(root, Value):
        raise TypeError(f"{caller}: expected a microgd Value, got {type(root).__name__}")
    nodes = root.topo()
    if len(nodes) > max_nodes:
        raise GraphTooLarge(f"{caller}: the graph has {len(nodes)} nodes, more than max_nodes={max_nodes}: "
                            f"a picture that large is unreadable. Draw a smaller expression, or pass "
                            f"max_nodes={len(nodes)} to draw it anyway", len(nodes), max_nodes)
    return nodes


def number_formatter(number_format: str, caller: str) -> Callable[[float], str]:
    """A function printing numbers with ``number_format`` (e.g. ".4f") by :func:`microgd.table.number` (a zero is
    ``0.0000``, never ``-0.0000``), the format checked once up front: a fill
    character that means something in a label (``<`` in ``"<<8.3f"``) is refused, so numbers go into
    every label as they are."""
    try:
        shown = format(-1.5, number_format) + format(1e300, number_format)
    except (ValueError, TypeError):
        raise ValueError(f"{caller}: number_format {number_format!r} is not a format for floats; "
                         "try '.4f' or '.3g'") from None
    if any(c in shown for c in '<>&"{}|\\'):
        raise ValueError(f"{caller}: number_format {number_format!r} fills with a character labels reserve "
                         "(one of < > & \" { } | \\); try '.4f' or '.3g'")
    return lambda x: table_number(x, number_format)  # never a negative zero: -0.0000 reads as a sign that is not there


def new_graph(rankdir: str, caller: str) -> graphviz.Digraph:
    """An empty ``graphviz.Digraph`` in the pictures' style, laid out in direction ``rankdir``."""
    if rankdir not in RANKDIRS:
        raise ValueError(f"{caller}: rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    graph = graphviz.Digraph(format="svg", engine="dot")
    graph.attr(rankdir=rankdir, fontname=FONT, nodesep="0.3", ranksep="0.45", bgcolor="white")
    graph.attr("node", fontname=FONT, fontsize="11", penwidth="1.2")
    graph.attr("edge", fontname=FONT, fontsize="10", fontcolor="#333333", arrowsize="0.7", color="#666666")
    return graph


def is_folded(node: Value, k: int) -> bool:
    """True when input ``k`` of ``node`` is drawn inside the op (a constant the op declares, e.g. an exponent)."""
    return k in _op(node).constants and node.parents[k].is_constant


def drawn_inputs(node: Value) -> list[int]:
    """The positions of the inputs of ``node`` drawn as edges into its op (all but the folded constants)."""
    return [k for k in range(len(node.parents)) if not is_folded(node, k)]


def input_tails(graph: graphviz.Digraph, nodes: Sequence[Value]) -> dict[tuple[int, int], str]:
    """Draw a trunk for each value whose uses lie across many layers, and return where the edge of input ``k``
    of node ``i`` starts when it starts on a trunk (key ``(i, k)``); every other edge starts at its input.

    Layers are counted from the root back, each node as close to its first user as it can be, as ``dot``
    ranks a tree (it keeps edges short): an op one layer before its value, a value one before its
    earliest op. A value's direct edges cross ``sum(layer - first)`` layers beyond its nearest use, a trunk
    ``last - first``; the trunk (``t{j}_{n}``: a small point per later layer of use) is drawn when it saves
    more than :data:`TRUNK_SAVING`. Uses in the nearest layer keep their direct edge.
    """
    index = {v: i for i, v in enumerate(nodes)}
    layer = [0] * len(nodes)  # each value's layer, the root's 0, earlier ones below
    uses: dict[int, list[tuple[int, int, int]]] = {}  # input j -> (layer of the op, i, k) per drawn edge
    for i in reversed(range(len(nodes))):  # users before what they use
        v = nodes[i]
        for k in drawn_inputs(v) if v.parents else ():
            j = index[v.parents[k]]
            layer[j] = min(layer[j], layer[i] - 2) if j in uses else layer[i] - 2
            uses.setdefault(j, []).append((layer[i] - 1, i, k))
    tails: dict[tuple[int, int], str] = {}
    for j, used in uses.items():
        used.sort()
        first, last = used[0][0], used[-1][0]
        if sum(layer - first for layer, _, _ in used) - (last - first) <= TRUNK_SAVING:
            continue
        previous = f"v{j}"
        later = [list(group) for layer, group in itertools.groupby(used, key=lambda use: use[0]) if layer > first]
        for n, group in enumerate(later):
            point = f"t{j}_{n}"
            graph.node(point, "", id=point, shape="point", width="0.05", color="#999999", **{"class": "trunk"})
            graph.edge(previous, point, id=f"{point}e", arrowhead="none", color="#999999", **{"class": "trunk"})
            tails.update(((i, k), point) for _, i, k in group)
            previous = point
    return tails


def op_label(node: Value) -> str:
    """The op node's text: the symbol of the op ``node`` was made with, then any constant it declares (``** 2``)."""
    folded = [table_number(node.parents[k].data, "g") for k in range(len(node.parents)) if is_folded(node, k)]
    symbol = _op(node).symbol
    return " ".join([symbol, ", ".join(folded)]) if folded else symbol


def _op(node: Value) -> Op | Closure:
    """The op ``node`` was made with (``node.rule``), not the registry's entry of that name today: a graph
    built before an op was defined again is drawn with its own op."""
    rule = node.rule
    assert rule is not None, "only a node with inputs has an op"
    return rule


def expression_graph(nodes: Sequence[Value], *, number: Callable[[float], str], rankdir: str = RANKDIR,
                     grads: Sequence[float] | None = None, grad_texts: Sequence[str] | None = None,
                     names: bool = False, caller: str = "draw_graph") -> graphviz.Digraph:
    """The DOT graph of ``nodes`` (``root.topo()``): a box per Value, a circle per op, an edge per input.

    Ids: ``v{i}`` for node i, ``v{i}op`` for its op, ``o{i}`` for the op's edge into it, ``e{i}_{k}`` for
    the edge of its input k. Each input edge carries the local derivative d output / d input.
    ``grads``: each node's gradient; then nodes are coloured by it and each edge also shows
    ``× upstream = contribution``, the contribution being the rule's own output (what backward adds).
    ``grad_texts``: the grad line of each node (none without it). ``names``: show ``v{i}`` on unnamed nodes.
    """
    graph = new_graph(rankdir, caller)
    index = {v: i for i, v in enumerate(nodes)}
    scale = max((abs(g) for g in grads), default=0.0) if grads is not None else 0.0
    root = nodes[-1]
    folded = {v.parents[k] for v in nodes if v.parents for k in range(len(v.parents)) if is_folded(v, k)}
    tails = input_tails(graph, nodes)
    for i, v in enumerate(nodes):
        if v.is_constant and v is not root:
            if v not in folded:
                graph.node(f"v{i}", table_number(v.data, "g"), id=f"v{i}", shape="plaintext", fontsize="10",
                           fontcolor="#555555", width="0", height="0", margin="0.02", **{"class": "const"})
            continue
        rows = []
        if v.label or names:
            rows.append(f"<b>{label_text(v.label)}</b>" if v.label else f'<font color="#777777">v{i}</font>')
        rows.append(f"data {number(v.data)}")
        if grad_texts is not None:
            rows.append(label_text(grad_texts[i]))
        kind = "interior" if v.parents else "parameter" if v.label else "input"
        style = {"interior": "rounded,filled", "parameter": "filled,bold", "input": "filled"}[kind]
        fill = grad_fill(grads[i], scale) if grads is not None else "#f7f7f7" if kind == "interior" else "white"
        graph.node(f"v{i}", html_rows(rows), id=f"v{i}", shape="box", style=style, fillcolor=fill,
                   margin="0.06,0.03", **{"class": f"value {kind}"})
        if v.parents:
            _draw_op(graph, v, i, index, tails, number, grads[i] if grads is not None else None, scale)
    return graph


def _draw_op(graph: graphviz.Digraph, v: Value, i: int, index: dict, tails: dict, number: Callable[[float], str],
             upstream: float | None, scale: float) -> None:
    """The op node of node ``i``, its edge into the node and one edge per drawn input (from its trunk if any)."""
    label = op_label(v)
    graph.node(f"v{i}op", label_text(label), id=f"v{i}op", shape="circle" if len(label) <= 3 else "ellipse",
               width="0.42", margin="0.02", style="filled", fillcolor="#eeeeee", fontsize="12", **{"class": "op"})
    graph.edge(f"v{i}op", f"v{i}", id=f"o{i}", **{"class": "out"})
    locals_ = v.local_grads()
    contributions = v.contributions(upstream) if upstream is not None else None
    for k in drawn_inputs(v):
        x = v.parents[k]
        attrs = {"id": f"e{i}_{k}", "class": "local"}
        if x.is_constant:
            attrs.update(style="dashed", color="#aaaaaa")
        elif contributions is not None and upstream is not None:
            c = contributions[k]
            width = abs(c) / scale if scale else 0.0
            attrs.update(label=f"<{number(locals_[k])}<br/>× {number(upstream)} = {number(c)}>",
                         color=shade(c, scale, 0.35, 0.65, "#999999"),
                         penwidth=f"{1 + 2.5 * math.sqrt(min(width, 1.0)):.2f}")
        else:
            attrs["label"] = number(locals_[k])
        graph.edge(tails.get((i, k), f"v{index[x]}"), f"v{i}op", **attrs)


def label_text(text: str) -> str:
    r"""``text`` drawn as it is in a Graphviz label, HTML-like or quoted: its markup characters escaped, and
    each backslash doubled, since Graphviz reads ``\N``, ``\G``, ``\L``, ``\n`` ... in a label as escapes
    (the node's name, the graph's, a line break); both renderers read a doubled backslash as one.

        >>> print(label_text(r"C:\Users\Name <b>"))
        C:\\Users\\Name &lt;b&gt;
    """
    return html.escape(text).replace("\\", "\\\\")


def html_rows(rows: Sequence[str]) -> str:
    """A graphviz HTML-like label: one centred table row per entry (entries are already escaped)."""
    cells = "".join(f"<tr><td>{row}</td></tr>" for row in rows)
    return f'<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">{cells}</table>>'


def grad_fill(grad: float, scale: float) -> str:
    """The fill of a value node: white for a zero grad, light to medium blue (> 0) or red (< 0)."""
    return shade(grad, scale, 0.12, 0.55, "#ffffff")


def shade(x: float, scale: float, lightest: float, deepest: float, zero: str) -> str:
    """A colour for ``x``: blue if positive, red if negative, from near white (``lightest``) to
    ``deepest`` of the full hue as |x| goes from 0 to ``scale`` (square root, so small values show);
    ``zero`` for 0."""
    if x == 0.0 or scale == 0.0:
        return zero
    strength = lightest + (deepest - lightest) * math.sqrt(min(abs(x) / scale, 1.0))
    base = POSITIVE if x > 0 else NEGATIVE
    return "#" + "".join(f"{round(255 + (c - 255) * strength):02x}" for c in base)
