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
    >>> picture.render("loss")       # as graphviz's Digraph.render: the DOT in loss, the picture in loss.svg
    'loss.svg'

Saving .dot or .gv needs nothing more. The ``graphviz`` package only builds DOT here: pictures are
rendered by Graphviz's ``dot`` when it is on PATH, else by ``graphviz-pure``
(``pip install "microgd[render]"``), see :func:`find_renderer`. Constants are drawn as
:mod:`microgd.drawing` describes: an exponent inside its op (``** 2``), other numbers small and plain.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Union

import graphviz

from .drawing import (
    MAX_NODES,
    RANKDIR,
    RANKDIRS,
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
from .files import DestinationError, check_writable, write_atomic
from .nn import unit_names
from .table import number as format_number

__all__ = ["draw_graph", "draw_dot", "draw_mlp", "save", "find_renderer", "Diagram", "RendererNotFound",
           "RenderTimeout"]

PathLike = Union[str, os.PathLike]

SUFFIX_FORMATS = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot"}
MIMETYPES = {"image/svg+xml": "svg", "image/png": "png"}


class Diagram:
    """A picture: a ``graphviz`` graph (``.graph``, its DOT in ``.source``) that we render ourselves, with
    Graphviz's ``dot`` or ``graphviz-pure`` (:func:`find_renderer`), so that Jupyter shows it inline and
    ``render`` writes it with either.

    :func:`draw_graph`, :func:`draw_dot` and :func:`draw_mlp` return one. It answers the calls of a
    ``graphviz.Digraph`` as the micrograd lecture makes them: ``dot.render('gout')`` writes the DOT source
    to ``gout`` and the picture to ``gout.svg`` (``gout.<format>``) and returns ``'gout.svg'``;
    ``pipe(format=...)``, ``save()``, ``view()``, ``source``, ``format``, ``engine``, ``filename``,
    ``directory``; building calls (``node``, ``edge``, ``attr``, ``body``, ...) go to the graph. Wrap a
    graph you built with ``graphviz`` (the lecture's own ``draw_dot``) to render and show it the same way.

        >>> import graphviz
        >>> mine = graphviz.Digraph(format="svg"); mine.edge("a", "b")
        >>> Diagram(mine).source
        'digraph {\\n\\ta -> b\\n}\\n'
        >>> Diagram(mine).save("mine.gv")
        'mine.gv'
    """

    def __init__(self, graph: Any, timeout: float | None = None, *, format: str | None = None) -> None:
        if not isinstance(getattr(graph, "source", None), str):
            raise TypeError(f"Diagram: expected a graphviz graph (graphviz.Digraph, Graph or Source), "
                            f"got {type(graph).__name__}")
        self.graph = graph
        self.timeout = timeout  # seconds the renderer may take (None: microgd.drawing.RENDER_TIMEOUT, 60)
        self.format = format if format is not None else getattr(graph, "format", None) or "svg"
        self.filename = os.fspath(getattr(graph, "filename", None) or "Digraph.gv")  # graphviz's default
        self.directory = os.fspath(getattr(graph, "directory", None) or "")
        self._engine: str | None = None

    @property
    def source(self) -> str:
        """The DOT source."""
        return str(self.graph.source)

    @property
    def format(self) -> str:
        """What ``render`` and ``pipe`` write when not told: ``svg`` for microgd's pictures (``png``, ...)."""
        return self._format

    @format.setter
    def format(self, format: str) -> None:
        self._format = _checked_format(format)

    @property
    def engine(self) -> str:
        """The Graphviz layout engine (``dot`` unless the graph says otherwise)."""
        return self._engine or str(getattr(self.graph, "engine", None) or "dot")

    @engine.setter
    def engine(self, engine: str) -> None:
        self._engine = engine

    @property
    def filepath(self) -> str:
        """Where ``save`` and ``render`` write the DOT source: ``directory`` joined with ``filename``."""
        return os.path.join(self.directory, self.filename)

    def pipe(self, format: str | None = None, renderer: str | None = None, formatter: str | None = None,
             quiet: bool = False, *, engine: str | None = None, encoding: str | None = None,
             timeout: float | None = None) -> Any:
        """The picture rendered to ``format`` (default ``self.format``: svg, png, ...), as bytes, or as text
        decoded with ``encoding``; graphviz's arguments. The renderer is stopped after ``timeout`` seconds
        (default: ``self.timeout``, else 60) with a RenderTimeout. (``quiet``: the renderer's messages are
        never shown; a failure is a RenderError saying what it said.)"""
        kind = _output_kind(self.format if format is None else _checked_format(format), renderer, formatter)
        data = run_renderer(self.source, kind, engine or self.engine, self.timeout if timeout is None else timeout)
        return data.decode(encoding) if encoding is not None else data

    def save(self, filename: PathLike | None = None, directory: PathLike | None = None, *,
             skip_existing: bool | None = False) -> str:
        """Write the DOT source to ``filename`` in ``directory`` (remembered; default ``self.filepath``),
        atomically, making the folder if needed, as graphviz's ``save``; returns the path written."""
        if filename is not None:
            self.filename = os.fspath(filename)
        if directory is not None:
            self.directory = os.fspath(directory)
        path = self.filepath
        if skip_existing and os.path.exists(path):
            return path
        _make_folder(path)
        check_writable(path)
        write_atomic(path, self.source)
        return path

    def render(self, filename: PathLike | None = None, directory: PathLike | None = None, view: bool = False,
               cleanup: bool = False, format: str | None = None, renderer: str | None = None,
               formatter: str | None = None, quiet: bool = False, quiet_view: bool = False, *,
               outfile: PathLike | None = None, engine: str | None = None, raise_if_result_exists: bool = False,
               overwrite_source: bool = False, timeout: float | None = None) -> str:
        """Write the DOT source to ``filename`` in ``directory`` and the picture beside it, named as graphviz
        names it: ``render('gout')`` writes ``gout`` and ``gout.svg`` (``<source>.<format>``, default
        ``self.format``) and returns ``'gout.svg'``; ``outfile='g.png'`` names the picture instead (format from
        its suffix, the source ``g.gv``). A missing folder is made, as graphviz does.

        Both files are written whole or not at all, after the picture is rendered (a renderer that fails
        leaves nothing). ``cleanup``: no source file. ``view``: open the picture in the system's viewer; when
        none can be started, one line on stderr says so and the path is still returned. A destination
        that cannot be written is a :class:`~microgd.files.DestinationError` naming it.
        """
        if filename is not None:
            self.filename = os.fspath(filename)
        if directory is not None:
            self.directory = os.fspath(directory)
        if outfile is not None:  # as graphviz: outfile in self.directory unless directory is given
            out = Path(outfile) if directory is not None else Path(self.directory, outfile)
            if format is None:
                format = _suffix_format(out)
            if filename is None:
                self.filename = os.fspath(Path(outfile).with_suffix(".gv"))
            source = self.filepath
            rendered = os.fspath(out)
        else:
            source = self.filepath
            format = self.format if format is None else format
            suffix = ".".join(part for part in (formatter, renderer, _checked_format(format)) if part)
            rendered = os.fspath(Path(f"{source}.{suffix}"))
        if raise_if_result_exists and os.path.exists(rendered):
            raise graphviz.FileExistsError(f"output file exists: {rendered!r}")
        if not cleanup and not overwrite_source and os.path.realpath(rendered) == os.path.realpath(source):
            raise ValueError(f"outfile {rendered!r} is the source file: pass overwrite_source=True to replace it")
        for path in (rendered,) if cleanup else (source, rendered):
            _make_folder(path)
            check_writable(path)
        data = self.pipe(format, renderer, formatter, engine=engine, timeout=timeout)
        if not cleanup:
            write_atomic(source, self.source)
        write_atomic(rendered, data)
        if view or quiet_view:
            _open(rendered, quiet_view)
        return rendered

    def view(self, filename: PathLike | None = None, directory: PathLike | None = None, cleanup: bool = False,
             quiet: bool = False, quiet_view: bool = False) -> str:
        """``render(..., view=True)``: write the picture and open it in the system's viewer."""
        return self.render(filename, directory, view=True, cleanup=cleanup, quiet=quiet, quiet_view=quiet_view)

    def copy(self) -> Diagram:
        """A Diagram of a copy of the graph, with this one's format, files, engine and time limit."""
        graph = self.graph.copy() if callable(getattr(self.graph, "copy", None)) else self.graph
        twin = Diagram(graph, self.timeout, format=self.format)
        twin.filename, twin.directory, twin._engine = self.filename, self.directory, self._engine
        return twin

    def __getattr__(self, name: str) -> Any:
        """The graph's own members (``node``, ``edge``, ``attr``, ``body``, ``graph_attr``, ...)."""
        graph = self.__dict__.get("graph")
        if name.startswith("_") or graph is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(graph, name)

    def __str__(self) -> str:
        return self.source

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
        return (f"<microgd Diagram: {lines} lines of DOT; .render('name') writes name and name.{self.format}, "
                f"save(picture, 'picture.svg') one file>")


def _checked_format(format: object) -> str:
    """A picture format as graphviz takes it (``svg``, ``png``, ...): a word, which the renderer then knows or
    refuses with its own message (graphviz-pure: svg, png, jpg, dot, ...; no pdf)."""
    if not (isinstance(format, str) and format and format.replace("_", "").replace(".", "").isalnum()):
        raise ValueError(f"format must be a picture format such as 'svg' or 'png', got {format!r}")
    if format.upper() in RANKDIRS:
        raise ValueError(f"format {format!r} is a layout direction: pass it as rankdir={format!r} "
                         f"(draw_dot(root, format='svg', rankdir={format!r}), as micrograd's)")
    return format.lower()


def _output_kind(format: str, renderer: str | None, formatter: str | None) -> str:
    """The renderer's ``-T`` value: ``format[:renderer[:formatter]]``, as graphviz passes it."""
    if formatter is not None and renderer is None:
        raise ValueError("a formatter needs a renderer (formatter=... with renderer=...)")
    return ":".join([format, *(part for part in (renderer, formatter) if part is not None)])


def _suffix_format(outfile: Path) -> str:
    """The format ``outfile``'s suffix names (``g.png``: png), for ``render(outfile=...)``."""
    if not outfile.suffix:
        raise ValueError(f"cannot tell the format of outfile {os.fspath(outfile)!r}: it has no suffix; "
                         "give format=... or a name such as 'graph.svg'")
    return _checked_format(outfile.suffix[1:])


def _make_folder(path: str) -> None:
    """Make the folder ``path`` goes in, as graphviz does; a folder that cannot be made is a DestinationError
    naming it."""
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            reason = "a file is in the way" if isinstance(error, (FileExistsError, NotADirectoryError)) \
                else error.strerror or str(error)
            raise DestinationError(f"cannot write {path!r}: folder {folder!r} cannot be made ({reason})") from None


def _open(path: str, quiet: bool) -> None:
    """Open ``path`` in the system's viewer (graphviz's ``view``); when none can be started, one line on stderr."""
    try:
        graphviz.view(path, quiet=quiet)
    except (OSError, RuntimeError) as error:  # no xdg-open / open, or a platform graphviz cannot view on
        if isinstance(error, FileNotFoundError) and error.filename:
            reason = f"{error.filename} is not installed"
        else:
            reason = str(error.strerror if isinstance(error, OSError) and error.strerror else error)
        print(f"microgd: wrote {path}, but no viewer could be opened ({reason}); open the file yourself",
              file=sys.stderr)


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
    write_atomic(path, graph.source.encode("utf-8") if format == "dot" else graph.pipe(format, timeout=timeout))
    return path


def draw_graph(root: Value, rankdir: str = RANKDIR, number_format: str = ".4f", show_grad: bool = True,
               max_nodes: int = MAX_NODES, format: str = "svg") -> Diagram:
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
    return Diagram(graph, format=format)


def draw_dot(root: Value, format: str = "svg", rankdir: str = RANKDIR, number_format: str = ".4f",
             max_nodes: int = MAX_NODES) -> Diagram:
    """The picture of Karpathy's micrograd lecture: a record ``label | data 2.0000 | grad 0.0000`` per
    Value, an op node per operation, an arrow from each input to the op and from the op to its output.
    Called as micrograd's ``draw_dot(root, format='svg', rankdir='LR')``; the result renders as its
    ``graphviz.Digraph`` does (``dot.render('gout')`` writes ``gout`` and ``gout.svg``, see :class:`Diagram`),
    with system Graphviz or without it.

    As in the lecture, the grads are whatever ``.grad`` holds now (zeros before a backward). Unlike the
    lecture's version it renders with either renderer, keeps node ids stable (``v0``, ``v1``, ...), draws
    each use of a reused input, and draws constants as :func:`draw_graph` does.

        >>> a = Value(2.0, label="a"); b = Value(-3.0, label="b"); e = a * b; e.label = "e"
        >>> "{ e | data -6.0000 | grad 0.0000 }" in draw_dot(e).source
        True
    """
    nodes = graph_nodes(root, max_nodes, "draw_dot")
    _checked_format(format)
    number = number_formatter(number_format, "draw_dot")
    graph = new_graph(rankdir, "draw_dot")
    index = {v: i for i, v in enumerate(nodes)}
    inputs = [(index[v.parents[k]], i, k) for i, v in enumerate(nodes) if v.parents for k in drawn_inputs(v)]
    wired = {j for j, _, _ in inputs} | {len(nodes) - 1}
    for i, v in enumerate(nodes):
        if i not in wired:
            continue  # a constant drawn inside its op
        if v.is_constant and i != len(nodes) - 1:
            graph.node(f"v{i}", format_number(v.data, "g"), shape="plaintext", fontsize="10", fontcolor="#555555",
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
    return Diagram(graph, format=format)


def _record_text(text: str) -> str:
    """``text`` shown as is in a field of a Graphviz record (its ``{ } | < >``, ``\\`` and ``&`` escaped)."""
    return "".join("\\" + c if c in "{}|<>\\" else c for c in text.replace("&", "&amp;"))


def draw_mlp(model: Any, show_grad: bool = False, rankdir: str = RANKDIR, number_format: str = ".2f") -> Diagram:
    """The architecture of an MLP (a ``microgd.nn.MLP``): inputs x1, x2, ..., then each neuron by its unit's
    name (h1, ..., y: the labels its nodes carry in every picture) with its activation and bias; every edge
    labelled with its weight (its name, ``w_h1_2``, as the tooltip), coloured by sign (blue +, red −) and as
    wide as its size. With ``show_grad`` every weight and bias also shows its grad (after a backward).

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
                name = getattr(neuron, "label", "") or unit_names(li, len(layers), len(layer.neurons))[j - 1]
                rows = [f"<b>{label_text(name)}</b>", label_text(neuron.activation), f"b {number(neuron.b.data)}"]
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
                           penwidth=f"{0.6 + 3.4 * size:.2f}", tooltip=label_text(w.label), **{"class": "weight"})
        previous = current
    return Diagram(graph)


def _keep_order(column: graphviz.Digraph, names: list[str]) -> None:
    """Keep a layer's nodes in their order (x1 above x2): invisible edges between neighbours of a rank."""
    for upper, lower in itertools.pairwise(names):
        column.edge(upper, lower, style="invis")

