"""Pictures of backprop: a computation graph with every local derivative, the lecture's ``draw_dot``, an MLP
diagram; saving them, and showing them inline in Jupyter.

    >>> from microgd import Value
    >>> from microgd.viz import draw_graph, save
    >>> w = Value(0.5, label="w")
    >>> loss = ((w * 0.1).sigmoid() - 0.3) ** 2
    >>> loss.backward()
    >>> picture = draw_graph(loss)   # a Diagram: Jupyter shows it inline
    >>> save(picture, "loss.svg")
    PosixPath('loss.svg')

Saving .dot or .gv needs nothing more. The ``graphviz`` package only builds DOT here: pictures are
rendered by Graphviz's ``dot`` when it is on PATH, else by ``graphviz-pure``
(``pip install "microgd[render]"``), see :func:`find_renderer`. Constants are drawn as
:mod:`microgd.drawing` describes: an exponent inside its op (``** 2``), other numbers small and plain.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Union

import graphviz

from .drawing import (
    MAX_NODES,
    RANKDIR,
    RendererNotFound,
    RenderError,
    RenderTimeout,
    drawn_inputs,
    expression_graph,
    find_renderer,
    graph_nodes,
    html_rows,
    input_tails,
    label_text,
    new_graph,
    number_formatter,
    op_label,
    run_renderer,
    shade,
)
from .engine import Value
from .files import write_atomic

__all__ = ["draw_graph", "draw_dot", "draw_mlp", "save", "find_renderer", "Diagram", "RendererNotFound",
           "RenderTimeout"]

PathLike = Union[str, os.PathLike]

SUFFIX_FORMATS = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot"}
MIMETYPES = {"image/svg+xml": "svg", "image/png": "png"}


class Diagram:
    """A picture: a ``graphviz`` graph (``.graph``, its DOT in ``.source``) that we render ourselves, so
    Jupyter shows it inline with either renderer, ``dot`` or ``graphviz-pure``.

    :func:`draw_graph`, :func:`draw_dot` and :func:`draw_mlp` return one; wrap a graph you built with
    ``graphviz.Digraph`` (the lecture's own ``draw_dot``, say) to show it the same way.

        >>> import graphviz
        >>> mine = graphviz.Digraph(); mine.edge("a", "b")
        >>> Diagram(mine).source
        'digraph {\\n\\ta -> b\\n}\\n'
    """

    def __init__(self, graph: Any, timeout: float | None = None) -> None:
        if not isinstance(getattr(graph, "source", None), str):
            raise TypeError(f"Diagram: expected a graphviz graph (graphviz.Digraph, Graph or Source), "
                            f"got {type(graph).__name__}")
        self.graph = graph
        self.timeout = timeout  # seconds the renderer may take (None: microgd.drawing.RENDER_TIMEOUT, 60)

    @property
    def source(self) -> str:
        """The DOT source."""
        return str(self.graph.source)

    @property
    def engine(self) -> str:
        """The Graphviz layout engine (``dot`` unless the graph says otherwise)."""
        return str(getattr(self.graph, "engine", None) or "dot")

    def pipe(self, format: str = "svg", timeout: float | None = None) -> bytes:
        """The picture rendered to ``format`` (svg, png, ...) as bytes, the renderer stopped after ``timeout``
        seconds (default: ``self.timeout``, else 60) with a RenderTimeout."""
        return run_renderer(self.source, format, self.engine, self.timeout if timeout is None else timeout)

    def _repr_mimebundle_(self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None,
                          **kwargs: Any) -> dict[str, str | bytes]:
        """IPython's display protocol: the SVG (and PNG when asked for); without a renderer, one line of text
        saying what to install."""
        wanted = [m for m in MIMETYPES if (m in include if include is not None else m == "image/svg+xml")
                  and not (exclude is not None and m in exclude)]
        bundle: dict[str, str | bytes] = {}
        try:
            for mimetype in wanted:
                data = self.pipe(MIMETYPES[mimetype])
                bundle[mimetype] = data.decode("utf-8") if mimetype == "image/svg+xml" else data
        except RenderError as error:
            return {"text/plain": f"(no picture: {error})"}
        return bundle

    def _repr_svg_(self) -> str | None:
        """The SVG for displays that ask for it alone; None (no SVG) when it cannot be rendered."""
        try:
            return self.pipe("svg").decode("utf-8")
        except RenderError:
            return None

    def __repr__(self) -> str:
        lines = self.source.count("\n")
        return f"<microgd Diagram: {lines} lines of DOT; save(picture, 'picture.svg') renders it>"


def save(graph: Diagram | Any, path: PathLike, timeout: float | None = None) -> Path:
    """Write ``graph`` to ``path`` atomically, the format from the suffix: .svg .png (rendered) or .dot .gv (source).

    ``graph`` is a :class:`Diagram` or a graph you built with the ``graphviz`` package (the lecture's
    ``draw_dot(...)`` result), rendered with our renderer, stopped after ``timeout`` seconds (default 60).

        >>> save(draw_graph(Value(2.0) * 3), "product.gv")
        PosixPath('product.gv')
    """
    path = Path(path)
    format = SUFFIX_FORMATS.get(path.suffix.lower())
    if format is None:
        raise ValueError(f"save: cannot tell the format of {os.fspath(path)!r} from its suffix "
                         f"{path.suffix or '(none)'!r}; use one of {' '.join(SUFFIX_FORMATS)}")
    if not isinstance(graph, Diagram):
        if not isinstance(getattr(graph, "source", None), str):
            raise TypeError(f"save: expected a graphviz graph (what draw_graph, draw_dot or draw_mlp return, or a "
                            f"graphviz.Digraph), got {type(graph).__name__}")
        graph = Diagram(graph)
    write_atomic(path, graph.source.encode("utf-8") if format == "dot" else graph.pipe(format, timeout))
    return path


def draw_graph(root: Value, rankdir: str = RANKDIR, number_format: str = ".4f", show_grad: bool = True,
               max_nodes: int = MAX_NODES) -> Diagram:
    """The computation graph of ``root``: every Value with its label, data and grad, every op, and
    every edge labelled with its local derivative d output / d input.

    Once a backward has run (some grad is nonzero) and ``show_grad`` is true, each edge also shows
    ``local × upstream = contribution`` to the input's grad (the contribution is what backward adds),
    and each node is coloured by its grad: blue above zero, red below, deeper for a larger magnitude.
    Named leaves (parameters) have a bold border, unnamed leaves (inputs) a thin one; a constant exponent
    is part of its op (``** 2``), other Python numbers are small plain constants.

        >>> x = Value(3.0, label="x"); y = x * x
        >>> y.backward()
        >>> draw_graph(y).source.count("3.0000<br/>× 1.0000 = 3.0000")   # both edges x -> ×
        2
    """
    nodes = graph_nodes(root, max_nodes, "draw_graph")
    number = number_formatter(number_format, "draw_graph")
    shown = show_grad and any(v.grad for v in nodes)
    grads = [v.grad for v in nodes] if shown else None
    texts = [f"grad {number(v.grad)}" for v in nodes] if shown else None
    graph = expression_graph(nodes, number=number, rankdir=rankdir, grads=grads, grad_texts=texts,
                             caller="draw_graph")
    caption = "edge: local derivative ∂output/∂input"
    if shown:
        caption += ", then × upstream grad = its contribution to input.grad · fill: blue grad > 0, red grad < 0"
    graph.attr(label=caption, labelloc="b", fontsize="10", fontcolor="#555555")
    return Diagram(graph)


def draw_dot(root: Value, rankdir: str = RANKDIR, number_format: str = ".4f", max_nodes: int = MAX_NODES) -> Diagram:
    """The picture of Karpathy's micrograd lecture: a record ``label | data 2.0000 | grad 0.0000`` per
    Value, an op node per operation, an arrow from each input to the op and from the op to its output.

    As in the lecture, the grads are whatever ``.grad`` holds now (zeros before a backward). Unlike the
    lecture's version it renders with either renderer, keeps node ids stable (``v0``, ``v1``, ...), draws
    each use of a reused input, and draws constants as :func:`draw_graph` does.

        >>> a = Value(2.0, label="a"); b = Value(-3.0, label="b"); e = a * b; e.label = "e"
        >>> "{ e | data -6.0000 | grad 0.0000 }" in draw_dot(e).source
        True
    """
    nodes = graph_nodes(root, max_nodes, "draw_dot")
    number = number_formatter(number_format, "draw_dot")
    graph = new_graph(rankdir, "draw_dot")
    index = {v: i for i, v in enumerate(nodes)}
    inputs = [(index[v.parents[k]], i, k) for i, v in enumerate(nodes) if v.parents for k in drawn_inputs(v)]
    wired = {j for j, _, _ in inputs} | {len(nodes) - 1}
    for i, v in enumerate(nodes):
        if i not in wired:
            continue  # a constant drawn inside its op
        if v.is_constant and i != len(nodes) - 1:
            graph.node(f"v{i}", format(v.data, "g"), shape="plaintext", fontsize="10", fontcolor="#555555",
                       width="0", height="0", margin="0.02")
        else:
            fields = (_record_text(v.label), f"data {number(v.data)}", f"grad {number(v.grad)}")
            graph.node(f"v{i}", "{ " + " | ".join(fields) + " }", shape="record")
        if v.parents:
            graph.node(f"v{i}op", label_text(op_label(v)))
            graph.edge(f"v{i}op", f"v{i}")
    tails = input_tails(graph, nodes)
    for j, i, k in inputs:
        graph.edge(tails.get((i, k), f"v{j}"), f"v{i}op",
                   **({"style": "dashed", "color": "#aaaaaa"} if nodes[j].is_constant else {}))
    return Diagram(graph)


def _record_text(text: str) -> str:
    """``text`` shown as is in a field of a Graphviz record (its ``{ } | < >``, ``\\`` and ``&`` escaped)."""
    return "".join("\\" + c if c in "{}|<>\\" else c for c in text.replace("&", "&amp;"))


def draw_mlp(model: Any, show_grad: bool = False, rankdir: str = RANKDIR, number_format: str = ".2f") -> Diagram:
    """The architecture of an MLP (a ``microgd.nn.MLP``): inputs, then each neuron with its activation
    and bias; every edge labelled with its weight, coloured by sign (blue +, red −) and as wide as its
    size. With ``show_grad`` every weight and bias also shows its grad (after a backward).

        >>> from microgd.nn import MLP
        >>> picture = draw_mlp(MLP(2, [3, 1], seed=0))
    """
    layers = getattr(model, "layers", None)
    if layers is None or not getattr(model, "sizes", None):
        raise TypeError(f"draw_mlp: expected a microgd.nn.MLP (with .layers and .sizes), got {type(model).__name__}")
    number = number_formatter(number_format, "draw_mlp")
    graph = new_graph(rankdir, "draw_mlp")
    graph.attr(ranksep="1.1", nodesep="0.25")
    weights = [w.data for layer in layers for neuron in layer.neurons for w in neuron.w]
    scale = max((abs(w) for w in weights), default=0.0)
    previous = []
    with graph.subgraph(name="inputs") as column:
        column.attr(rank="same")
        for k in range(model.sizes[0]):
            previous.append(f"x{k + 1}")
            column.node(f"x{k + 1}", f"x{k + 1}", shape="circle", width="0.45", fixedsize="true",
                        style="filled", fillcolor="#eeeeee", **{"class": "input"})
        _keep_order(column, previous)
    for li, layer in enumerate(layers, 1):
        output = li == len(layers)
        current = []
        with graph.subgraph(name=f"layer{li}") as column:
            column.attr(rank="same")
            for j, neuron in enumerate(layer.neurons, 1):
                name = _neuron_name(li, j, len(layers), len(layer.neurons))
                rows = [f"<b>{name}</b>", label_text(neuron.activation), f"b {number(neuron.b.data)}"]
                if show_grad:
                    rows.append(f'<font point-size="9">grad {number(neuron.b.grad)}</font>')
                node_id = f"l{li}n{j}"
                column.node(node_id, html_rows(rows), shape="circle" if not show_grad else "ellipse",
                            style="filled", fillcolor="#fde9c9" if output else "#e3eef8", margin="0.02",
                            **{"class": "neuron"})
                current.append(node_id)
            _keep_order(column, current)
        for j, neuron in enumerate(layer.neurons):
            for tail, w in zip(previous, neuron.w):
                label = number(w.data)
                if show_grad:
                    label += f'<br/><font point-size="9">grad {number(w.grad)}</font>'
                size = abs(w.data) / scale if scale else 0.0
                colour = shade(w.data, scale, 0.45, 1.0, "#999999")
                graph.edge(tail, current[j], label=f"<{label}>", color=colour, fontcolor=colour,
                           penwidth=f"{0.6 + 3.4 * size:.2f}", **{"class": "weight"})
        previous = current
    return Diagram(graph)


def _keep_order(column: graphviz.Digraph, names: list[str]) -> None:
    """Keep a layer's nodes in their order (x1 above x2): invisible edges between neighbours of a rank."""
    for upper, lower in itertools.pairwise(names):
        column.edge(upper, lower, style="invis")


def _neuron_name(layer: int, j: int, layers: int, width: int) -> str:
    """h1, h2, ... for hidden neurons (h2.1: layer 2, neuron 1, when there are several hidden layers);
    y, or y1, y2, ... for the outputs."""
    if layer == layers:
        return "y" if width == 1 else f"y{j}"
    return f"h{j}" if layers == 2 else f"h{layer}.{j}"
