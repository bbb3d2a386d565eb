"""A self-contained HTML page that steps through the backward pass of a graph, one edge at a time.

    >>> from microgd import Value
    >>> from microgd.stepper import backprop_html
    >>> w = Value(0.5, label="w")
    >>> loss = ((w * 0.1).sigmoid() - 0.3) ** 2
    >>> backprop_html(loss, "backprop.html")
    PosixPath('backprop.html')

The steps are :func:`microgd.engine.backward_steps`: the order and the rule calls of ``backward()``
itself, so the page's numbers are backward's numbers. Step 1 seeds ``root.grad = 1``; then every node,
once its gradient is final, gets one step per input edge: ``input.grad += local × upstream =
contribution``, where ``contribution`` is what the op's rule returns (what backward adds) and
``local`` is d output / d input, shown as a formula too: the same rule run on symbols
(``local = ∂predicted/∂sop = predicted(1 − predicted) = 0.2498``). Python numbers in the graph
(constants) are never differentiated, so their edges get no step. The page needs no server and no
network: the SVG (laid out by Graphviz, see :func:`microgd.viz.find_renderer`) and the script are
inline. In Jupyter, :func:`backprop_page` shows it inline.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from .drawing import MAX_NODES, RANKDIR, expression_graph, grad_fill, graph_nodes, number_formatter, run_renderer
from .engine import RuleError, Value, backward_steps, local_step
from .files import write_atomic
from .symbolic import Symbol

__all__ = ["backprop_html", "backprop_page", "BackpropPage"]

_PLACEHOLDER = re.compile(r"\{\{(title|svg|data)\}\}")
_SVG_HEIGHT = re.compile(r'<svg[^>]*\sheight="([\d.]+)pt"')


class BackpropPage:
    """The step-through page of one backward pass: ``.html`` is the whole self-contained page, ``save``
    writes it, and Jupyter shows it inline (a sandboxed ``<iframe>`` holding the page).

        >>> page = backprop_page(Value(2.0, label="a") * 3)
        >>> page.save("product.html")
        PosixPath('product.html')
    """

    def __init__(self, page: str, height: int = 560) -> None:
        self.html = page
        self.height = height

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` (ending in .html) atomically."""
        path = Path(path)
        _check_suffix(path, "BackpropPage.save")
        return write_atomic(path, self.html.encode("utf-8"))

    def _repr_html_(self) -> str:
        """IPython's display protocol: the page in an iframe; its script runs sandboxed, apart from the notebook."""
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" sandbox="allow-scripts" '
                f'title="backward pass, step by step" '
                f'style="width: 100%; height: {self.height}px; border: 1px solid #ddd"></iframe>')

    def __repr__(self) -> str:
        return f"<microgd BackpropPage: {len(self.html)} characters of HTML; .save('page.html') writes it>"


def backprop_html(root: Value, path: str | os.PathLike, number_format: str = ".4f", rankdir: str = RANKDIR,
                  max_nodes: int = MAX_NODES, title: str = "", timeout: float | None = None) -> Path:
    """Write one HTML file stepping through ``root``'s backward pass (next / previous / play / slider).

    Each step highlights the node whose gradient is final, the edge being applied and the arithmetic
    ``input.grad += local × upstream = contribution`` with its numbers. Before step 1 every grad shows 0;
    after the last one every grad is exactly what ``root.backward()`` computes. The graph's own ``.grad``
    values are neither read nor changed. Each value node carries its current gradient in ``data-grad``.
    The renderer laying out the graph is stopped after ``timeout`` seconds (default 60).
    """
    path = Path(path)
    _check_suffix(path, "backprop_html")
    page = _build(root, number_format, rankdir, max_nodes, title, "backprop_html", timeout)
    return write_atomic(path, page.html.encode("utf-8"))


def backprop_page(root: Value, number_format: str = ".4f", rankdir: str = RANKDIR, max_nodes: int = MAX_NODES,
                  title: str = "", timeout: float | None = None) -> BackpropPage:
    """The page :func:`backprop_html` writes, as an object: shown inline by Jupyter, or ``.save(path)``.

        >>> x = Value(3.0, label="x")
        >>> page = backprop_page(x * x)   # the last line of a notebook cell: the page, inline
        >>> "x.grad += local × upstream = contribution" in page.html
        True
    """
    return _build(root, number_format, rankdir, max_nodes, title, "backprop_page", timeout)


def _check_suffix(path: Path, caller: str) -> None:
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"{caller}: {os.fspath(path)!r} should end in .html")


def _build(root: Value, number_format: str, rankdir: str, max_nodes: int, title: str, caller: str,
           timeout: float | None) -> BackpropPage:
    nodes = graph_nodes(root, max_nodes, caller)
    number = number_formatter(number_format, caller)
    plain_names = [v.label or f"v{i}" for i, v in enumerate(nodes)]
    steps, grads = _record(root, nodes, plain_names)
    shown = [i for i, v in enumerate(nodes) if not v.is_constant or v is root]
    names = [html.escape(name) for name in plain_names]
    scale = max(abs(grads.get(i, 0.0)) for i in shown)
    texts = {i: {number(0.0)} for i in shown}
    for step in steps:
        texts[step["target"]].add(number(step["after"]))
    widest = [f"grad {max(sorted(texts[i]), key=len)}" if i in texts else "" for i in range(len(nodes))]
    graph = expression_graph(nodes, number=number, rankdir=rankdir, grad_texts=widest, names=True, caller=caller)
    svg = run_renderer(graph.source, "svg", timeout=timeout).decode("utf-8")
    svg = svg[svg.index("<svg"):]
    final_at = {step["target"]: k for k, step in enumerate(steps, 1)}  # a node's last contribution makes it final
    data = {
        "values": [f"v{i}" for i in shown],
        "final_at": {f"v{i}": k for i, k in final_at.items()},
        "zero": {"text": f"grad {number(0.0)}", "fill": grad_fill(0.0, scale)},
        "intro": "Before the backward pass every grad is 0. Press <b>next</b> (or →) to start.",
        "steps": [_page_step(step, final_at[step["target"]] == k, names, number, scale)
                  for k, step in enumerate(steps, 1)],
    }
    filling = {"title": html.escape(title or f"Backward pass of {nodes[-1].label or f'v{len(nodes) - 1}'}"),
               "svg": svg, "data": _script_json(data)}
    page = _PLACEHOLDER.sub(lambda match: filling[match.group(1)], _template())
    found = _SVG_HEIGHT.search(svg)
    graph_height = float(found.group(1)) * 4 / 3 if found else 400.0  # pt to px
    return BackpropPage(page, height=300 + min(round(graph_height), 600))


def _record(root: Value, nodes: list[Value], names: list[str]) -> tuple[list[dict[str, Any]], dict[int, float]]:
    """One record per step, from ``backward_steps``: the seed, then one per differentiated input edge, each
    with the rule's own contribution, its local derivative as a number and as a formula, and the running
    sum backward keeps; and the final grads by position."""
    index = {v: i for i, v in enumerate(nodes)}
    last = len(nodes) - 1
    grads = {last: 1.0}
    steps: list[dict[str, Any]] = [{"node": last, "target": last, "edge": None, "before": 0.0, "after": 1.0}]
    for node, upstream, contributions in backward_steps(root):
        i = index[node]
        locals_ = node.local_grads()
        formulas = _local_formulas(node, [names[index[x]] for x in node.parents], names[i])
        for k, (x, c) in enumerate(zip(node.parents, contributions)):
            if x.is_constant:
                continue
            j = index[x]
            before = grads.get(j, 0.0)
            grads[j] = before + c
            steps.append({"node": i, "target": j, "edge": f"e{i}_{k}", "local": locals_[k], "formula": formulas[k],
                          "upstream": upstream, "contribution": c, "before": before, "after": grads[j]})
    return steps, grads


def _local_formulas(node: Value, input_names: list[str], name: str) -> list[str | None]:
    """d node / d input for each input edge as a formula: the node's rule applied once on symbols
    (:func:`~microgd.engine.local_step`), named as the page names the nodes (constants as numbers). None for an
    edge whose derivative is a plain number, or whose rule does not run on symbols (a vjp calling Python's math)."""
    symbols: dict[Value, Any] = {node: Symbol.variable(name)}
    symbols.update((x, x.data if x.is_constant else Symbol.variable(n)) for x, n in zip(node.parents, input_names))
    try:
        found = local_step(node, 1.0, value=symbols.__getitem__)
    except RuleError:  # a rule outside the registry's contract for symbols: numbers only
        return [None] * len(node.parents)
    return [f.text() if isinstance(f, Symbol) else None for f in found]


def _page_step(step: dict, final: bool, names: list[str], number: Callable[[float], str], scale: float) -> dict:
    """What the page needs for one step: the grad that changes (exact and shown), the highlights, the words
    (HTML; ``names`` are already escaped). ``final``: this step brings the target's last contribution."""
    i, j = step["node"], step["target"]
    if step["edge"] is None:
        words = f"<b>{names[i]}</b>.grad = 1 &nbsp;— the seed: ∂{names[i]}/∂{names[i]} = 1. It is final."
    else:
        words = (f'<span class="who current">{names[i]}</span> has its final grad {number(step["upstream"])} '
                 f'and passes it to its input <span class="who target">{names[j]}</span>.'
                 f'<code>{names[j]}.grad += local × upstream = contribution '
                 f'&nbsp;&nbsp;(local = ∂{names[i]}/∂{names[j]}{_formula(step, number)})</code>'
                 f'<code>{names[j]}.grad += {number(step["local"])} × {number(step["upstream"])} = '
                 f'{number(step["contribution"])} &nbsp;&nbsp;→ &nbsp;{number(step["before"])} + '
                 f'{number(step["contribution"])} = {number(step["after"])}</code>')
        if final:
            words += f"That was the last contribution: the gradient of {names[j]} is final."
    return {
        "target": f"v{j}",
        "current": [f"v{i}"] if step["edge"] is None else [f"v{i}", f"v{i}op", f"o{i}", step["edge"]],
        "before": step["before"], "after": step["after"],
        "before_text": f"grad {number(step['before'])}", "after_text": f"grad {number(step['after'])}",
        "before_fill": grad_fill(step["before"], scale), "after_fill": grad_fill(step["after"], scale),
        "words": words,
    }


def _formula(step: dict, number: Callable[[float], str]) -> str:
    """`` = predicted(1 − predicted) = 0.2498``: the local derivative's formula (HTML-escaped) and number;
    the number alone when the formula is a number (``-`` gives −1) or cannot be written."""
    formula = step["formula"]
    shown = f" = {html.escape(formula)}" if formula is not None else ""
    return f"{shown} = {number(step['local'])}"


def _script_json(data: dict) -> str:
    """``data`` as JSON safe inside ``<script>``: every ``<``, ``>`` and ``&`` written as a \\u escape, so no
    ``</script>`` or ``<!--`` can appear in it."""
    return json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _template() -> str:
    """The page template, ``stepper.html`` beside this module (package data)."""
    return resources.files("microgd").joinpath("stepper.html").read_text(encoding="utf-8")
