"""Pictures of backprop: a computation graph with every local derivative, an MLP diagram, rendering.

    >>> from microgd import Value
    >>> from microgd.viz import draw_graph, save
    >>> w = Value(0.5, label="w")
    >>> loss = ((w * 0.1).sigmoid() - 0.3) ** 2
    >>> loss.backward()
    >>> picture = draw_graph(loss)   # a graphviz.Digraph: Jupyter shows it as is
    >>> save(picture, "loss.svg")
    PosixPath('loss.svg')

Saving .dot or .gv needs nothing more. The ``graphviz`` package only writes DOT: pictures are
rendered by Graphviz's ``dot`` when it is on PATH, else by ``graphviz-pure``
(``pip install "microgd[render]"``), see :func:`find_renderer`.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import graphviz

from .engine import Value
from .rules import OPS
from .files import write_atomic

__all__ = ["draw_graph", "draw_mlp", "save", "find_renderer", "Diagram", "RendererNotFound"]
# Also used by the stepper page, outside __all__: graph_nodes, number_formatter, expression_graph,
# grad_fill and run_renderer.

PathLike = Union[str, os.PathLike]

SUFFIX_FORMATS = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot"}
RANKDIRS = ("LR", "TB", "RL", "BT")
POSITIVE, NEGATIVE = (33, 102, 172), (178, 24, 43)  # blue: grad > 0, red: grad < 0 (ColorBrewer RdBu)
FONT = "Helvetica"


class RendererNotFound(RuntimeError):
    """Neither Graphviz's ``dot`` nor ``graphviz-pure`` was found, so a picture cannot be rendered."""


class Diagram(graphviz.Digraph):
    """A ``graphviz.Digraph`` that renders (Jupyter display, ``pipe``, ``render``) via :func:`find_renderer`."""

    def pipe(self, format: Optional[str] = None, *, engine: Optional[str] = None,
             encoding: Optional[str] = None, quiet: bool = False) -> Union[bytes, str]:
        """The rendered picture as bytes (or text when ``encoding`` is given), default format svg.
        The renderer's messages are always captured (``quiet`` is accepted for compatibility)."""
        data = run_renderer(self.source, format or self.format, engine or self.engine)
        return data.decode(encoding) if encoding else data

    def _render(self, engine, format, filepath, renderer=None, formatter=None, neato_no_op=None, quiet=False,
                *, outfile=None, raise_if_result_exists=False, overwrite_filepath=False) -> str:
        # graphviz's Digraph.render() saves the source to `filepath` and then calls this hook to run `dot`
        if renderer or formatter or neato_no_op:
            raise ValueError("microgd renders with -T<format> only: renderer, formatter and neato_no_op "
                             "are not supported")
        out = Path(outfile) if outfile is not None else Path(f"{os.fspath(filepath)}.{format}")
        if raise_if_result_exists and out.exists():
            raise graphviz.FileExistsError(f"output file exists: {os.fspath(out)!r}")
        write_atomic(out, run_renderer(Path(filepath).read_text(encoding=self.encoding), format, engine))
        return os.fspath(out)


def find_renderer() -> Optional[str]:
    """The program that turns DOT into pictures, or None.

    Graphviz's ``dot`` on PATH first, then ``graphviz-pure`` on PATH, then ``graphviz-pure`` next to
    the running Python (a virtual environment's bin folder, which need not be on PATH).
    """
    found = shutil.which("dot") or shutil.which("graphviz-pure")
    if not found and sys.executable:
        found = shutil.which("graphviz-pure", path=os.path.dirname(sys.executable))
    return found


def run_renderer(source: str, format: str, engine: str = "dot") -> bytes:
    """Render DOT ``source`` to ``format`` bytes with the renderer :func:`find_renderer` picks."""
    program = find_renderer()
    if program is None:
        raise RendererNotFound(
            "rendering a picture needs a Graphviz renderer and none was found: "
            'pip install "microgd[render]" (the graphviz-pure renderer) or install Graphviz '
            "(https://graphviz.org/download/) so that `dot` is on PATH. "
            "Saving the DOT source (.dot or .gv) works without either."
        )
    done = subprocess.run([program, f"-K{engine}", f"-T{format}"], input=source.encode("utf-8"), capture_output=True)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"{program} could not render {format}: {message or f'exit status {done.returncode}'}")
    return done.stdout


def save(graph: graphviz.Digraph, path: PathLike) -> Path:
    """Write ``graph`` to ``path`` atomically, the format from the suffix: .svg .png (rendered) or .dot .gv (source).

        >>> save(draw_graph(Value(2.0) * 3), "product.gv")
        PosixPath('product.gv')
    """
    path = Path(path)
    format = SUFFIX_FORMATS.get(path.suffix.lower())
    if format is None:
        raise ValueError(f"save: cannot tell the format of {os.fspath(path)!r} from its suffix "
                         f"{path.suffix or '(none)'!r}; use one of {' '.join(SUFFIX_FORMATS)}")
    source = getattr(graph, "source", None)
    if not isinstance(source, str):
        raise TypeError(f"save: expected a graphviz graph (what draw_graph or draw_mlp return), "
                        f"got {type(graph).__name__}")
    data = source.encode("utf-8") if format == "dot" else run_renderer(source, format, getattr(graph, "engine", "dot"))
    write_atomic(path, data)
    return path


def draw_graph(root: Value, rankdir: str = "LR", number_format: str = ".4f", show_grad: bool = True,
               max_nodes: int = 500) -> Diagram:
    """The computation graph of ``root``: every Value with its label, data and grad, every op, and
    every edge labelled with its local derivative d child / d parent.

    Once a backward has run (some grad is nonzero) and ``show_grad`` is true, each edge also shows
    ``local × upstream = contribution`` to the parent's grad, and each node is coloured by its grad:
    blue above zero, red below, deeper for a larger magnitude. Named leaves (parameters) have a bold
    border, unnamed leaves (inputs) a thin one, Python numbers are drawn as small plain constants.

        >>> x = Value(3.0, label="x"); y = x * x
        >>> y.backward()
        >>> draw_graph(y).source.count("3.0000<br/>× 1.0000 = 3.0000")   # both edges x -> ×
        2
    """
    nodes = graph_nodes(root, max_nodes, "draw_graph")
    number = number_formatter(number_format, "draw_graph")
    shown = show_grad and any(v.grad for v in nodes)
    grads = [v.grad for v in nodes] if shown else None
    rows = [f"grad {number(g)}" for g in grads] if shown else None
    graph = expression_graph(nodes, rankdir, number, rows, grads, names=False, caller="draw_graph")
    caption = "edge: local derivative ∂child/∂parent"
    if shown:
        caption += ", then × upstream grad = its contribution to parent.grad · fill: blue grad > 0, red grad < 0"
    graph.attr(label=caption, labelloc="b", fontsize="10", fontcolor="#555555")
    return graph


def graph_nodes(root: Value, max_nodes: int, caller: str) -> list:
    """root.topo(), refused with a clear message when it is more than ``max_nodes`` long."""
    if not isinstance(root, Value):
        raise TypeError(f"{caller}: expected a microgd Value, got {type(root).__name__}")
    nodes = root.topo()
    if len(nodes) > max_nodes:
        raise ValueError(f"{caller}: the graph has {len(nodes)} nodes, more than max_nodes={max_nodes}: "
                         f"a picture that large is unreadable. Draw a smaller expression, or pass "
                         f"max_nodes={len(nodes)} to draw it anyway")
    return nodes


def number_formatter(number_format: str, caller: str) -> Callable[[float], str]:
    """A function printing numbers with ``number_format`` (e.g. ".4f"), checked once up front."""
    try:
        format(1.5, number_format)
    except (ValueError, TypeError):
        raise ValueError(f"{caller}: number_format {number_format!r} is not a format for floats; "
                         "try '.4f' or '.3g'") from None
    return lambda x: format(x, number_format)


def _new_diagram(rankdir: str, caller: str) -> Diagram:
    if rankdir not in RANKDIRS:
        raise ValueError(f"{caller}: rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    graph = Diagram(format="svg", engine="dot")
    graph.attr(rankdir=rankdir, fontname=FONT, nodesep="0.3", ranksep="0.45", bgcolor="white")
    graph.attr("node", fontname=FONT, fontsize="11", penwidth="1.2")
    graph.attr("edge", fontname=FONT, fontsize="10", fontcolor="#333333", arrowsize="0.7", color="#666666")
    return graph


def expression_graph(nodes: list, rankdir: str, number: Callable[[float], str], grad_rows: Optional[list],
                      grads: Optional[list], names: bool, caller: str) -> Diagram:
    """The DOT graph of ``nodes`` (topo order): node ids ``v{i}`` by position, op nodes ``v{i}op``,
    edge ids ``e{i}_{k}`` (parent k of node i). ``grad_rows`` is the grad line of each node (None: no
    line); ``grads`` colours nodes and adds each edge's contribution (None: neither); ``names`` shows
    ``v{i}`` on unnamed nodes."""
    graph = _new_diagram(rankdir, caller)
    index = {v: i for i, v in enumerate(nodes)}
    scale = max((abs(g) for g in grads), default=0.0) if grads is not None else 0.0
    root = nodes[-1]
    for i, v in enumerate(nodes):
        if v.is_constant and v is not root:
            graph.node(f"v{i}", format(v.data, "g"), id=f"v{i}", shape="plaintext", fontsize="10",
                       fontcolor="#555555", width="0", height="0", margin="0.02", **{"class": "const"})
            continue
        rows = []
        if v.label or names:
            rows.append(f"<b>{html.escape(v.label)}</b>" if v.label else f'<font color="#777777">v{i}</font>')
        rows.append(f"data {number(v.data)}")
        if grad_rows is not None:
            rows.append(html.escape(grad_rows[i]))
        kind = "interior" if v.parents else "parameter" if v.label else "input"
        style = {"interior": "rounded,filled", "parameter": "filled,bold", "input": "filled"}[kind]
        fill = grad_fill(grads[i], scale) if grads is not None else "#f7f7f7" if kind == "interior" else "white"
        graph.node(f"v{i}", _html_rows(rows), id=f"v{i}", shape="box", style=style, fillcolor=fill,
                   margin="0.06,0.03", **{"class": f"value {kind}"})
        if not v.parents:
            continue
        graph.node(f"v{i}op", OPS[v.op].symbol, id=f"v{i}op", shape="circle", width="0.42", margin="0.02",
                   style="filled", fillcolor="#eeeeee", fontsize="12", **{"class": "op"})
        graph.edge(f"v{i}op", f"v{i}", id=f"o{i}", **{"class": "out"})
        for k, (parent, local) in enumerate(zip(v.parents, v.local_grads())):
            j = index[parent]
            attrs = {"id": f"e{i}_{k}", "class": "local"}
            if parent.is_constant and parent is not root:
                attrs.update(label=number(local), style="dashed", color="#aaaaaa", fontcolor="#888888")
            elif grads is not None:
                contribution = local * grads[i]
                width = abs(contribution) / scale if scale else 0.0
                attrs.update(label=f"<{number(local)}<br/>× {number(grads[i])} = {number(contribution)}>",
                             color=_shade(contribution, scale, 0.35, 0.65, "#999999"),
                             penwidth=f"{1 + 2.5 * math.sqrt(min(width, 1.0)):.2f}")
            else:
                attrs["label"] = number(local)
            graph.edge(f"v{j}", f"v{i}op", **attrs)
    return graph


def _html_rows(rows: Sequence[str]) -> str:
    """A graphviz HTML-like label: one centred table row per entry (entries are already escaped)."""
    cells = "".join(f"<tr><td>{row}</td></tr>" for row in rows)
    return f'<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">{cells}</table>>'


def grad_fill(grad: float, scale: float) -> str:
    """The fill of a value node: white for a zero grad, light to medium blue (> 0) or red (< 0)."""
    return _shade(grad, scale, 0.12, 0.55, "#ffffff")


def _shade(x: float, scale: float, lightest: float, deepest: float, zero: str) -> str:
    """A colour for ``x``: blue if positive, red if negative, from near white (``lightest``) to
    ``deepest`` of the full hue as |x| goes from 0 to ``scale`` (square root, so small values show);
    ``zero`` for 0."""
    if x == 0.0 or scale == 0.0:
        return zero
    strength = lightest + (deepest - lightest) * math.sqrt(min(abs(x) / scale, 1.0))
    base = POSITIVE if x > 0 else NEGATIVE
    return "#" + "".join(f"{round(255 + (c - 255) * strength):02x}" for c in base)


def draw_mlp(model, show_grad: bool = False, rankdir: str = "LR", number_format: str = ".2f") -> Diagram:
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
    graph = _new_diagram(rankdir, "draw_mlp")
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
                rows = [f"<b>{name}</b>", html.escape(neuron.activation), f"b {number(neuron.b.data)}"]
                if show_grad:
                    rows.append(f'<font point-size="9">grad {number(neuron.b.grad)}</font>')
                node_id = f"l{li}n{j}"
                column.node(node_id, _html_rows(rows), shape="circle" if not show_grad else "ellipse",
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
                colour = _shade(w.data, scale, 0.45, 1.0, "#999999")
                graph.edge(tail, current[j], label=f"<{label}>", color=colour, fontcolor=colour,
                           penwidth=f"{0.6 + 3.4 * size:.2f}", **{"class": "weight"})
        previous = current
    return graph


def _keep_order(column, names: list) -> None:
    """Keep a layer's nodes in their order (x1 above x2): invisible edges between neighbours of a rank."""
    for upper, lower in zip(names, names[1:]):
        column.edge(upper, lower, style="invis")


def _neuron_name(layer: int, j: int, layers: int, width: int) -> str:
    """h1, h2, ... for hidden neurons (h2.1: layer 2, neuron 1, when there are several hidden layers);
    y, or y1, y2, ... for the outputs."""
    if layer == layers:
        return "y" if width == 1 else f"y{j}"
    return f"h{j}" if layers == 2 else f"h{layer}.{j}"
