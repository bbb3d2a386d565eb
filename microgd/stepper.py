"""A self-contained HTML page that steps through the backward pass of a graph, one edge at a time.

    >>> from microgd import Value
    >>> from microgd.stepper import backprop_html
    >>> w = Value(0.5, label="w")
    >>> loss = ((w * 0.1).sigmoid() - 0.3) ** 2
    >>> backprop_html(loss, "backprop.html")
    PosixPath('backprop.html')

The steps follow ``reversed(root.topo())``, the order ``backward()`` uses. Step 1 seeds
``root.grad = 1``; then every node, once its gradient is final, gets one step per parent edge:
``parent.grad += local × upstream``, with ``local`` from ``node.local_grads()`` and ``upstream``
the node's gradient. Python numbers in the graph (constants) are never differentiated, so their
edges get no step. The page needs no server and no network: the SVG (laid out by Graphviz, see
:func:`microgd.viz.find_renderer`) and the script are inline.
"""

from __future__ import annotations

import html
import json
import os
import sys
from pathlib import Path
from typing import Union

from .engine import Value, gradients
from .files import write_atomic
from .viz import expression_graph, grad_fill, graph_nodes, number_formatter, run_renderer

__all__ = ["backprop_html"]


def backprop_html(root: Value, path: Union[str, os.PathLike], number_format: str = ".4f", rankdir: str = "LR",
                  max_nodes: int = 500, title: str = "") -> Path:
    """Write one HTML file stepping through ``root``'s backward pass (next / previous / play / slider).

    Each step highlights the node whose gradient is final, the edge being applied and the arithmetic
    ``parent.grad += local × upstream`` with its numbers. Before step 1 every grad shows 0; after the
    last one every grad is what ``root.backward()`` computes. The graph's own ``.grad`` values are
    neither read nor changed. Each value node carries its current gradient in ``data-grad``.
    """
    nodes = graph_nodes(root, max_nodes, "backprop_html")
    number = number_formatter(number_format, "backprop_html")
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"backprop_html: {os.fspath(path)!r} should end in .html")
    shown = [i for i, v in enumerate(nodes) if not v.is_constant or v is root]
    steps, grads = _replay(nodes)
    _check_against_engine(nodes, shown, grads)
    names = [html.escape(v.label) if v.label else f"v{i}" for i, v in enumerate(nodes)]
    scale = max(abs(grads[i]) for i in shown)
    texts = {i: {number(0.0)} for i in shown}
    for step in steps:
        texts[step["target"]].add(number(step["after"]))
    widest = [f"grad {max(sorted(texts[i]), key=len)}" if i in texts else "" for i in range(len(nodes))]
    graph = expression_graph(nodes, rankdir, number, widest, None, names=True, caller="backprop_html")
    svg = run_renderer(graph.source, "svg").decode("utf-8")
    final_at = {step["target"]: k for k, step in enumerate(steps, 1)}  # a node's last contribution makes it final
    data = {
        "values": [f"v{i}" for i in shown],
        "final_at": {f"v{i}": k for i, k in final_at.items()},
        "zero": {"text": f"grad {number(0.0)}", "fill": grad_fill(0.0, scale)},
        "intro": "Before the backward pass every grad is 0. Press <b>next</b> (or →) to start.",
        "steps": [_page_step(step, final_at[step["target"]] == k, names, number, scale)
                  for k, step in enumerate(steps, 1)],
    }
    page = _PAGE.format(
        title=html.escape(title or f"Backward pass of {names[-1]}"),
        steps=len(steps),
        svg=svg[svg.index("<svg"):],
        data=json.dumps(data).replace("</", "<\\/"),
    )
    write_atomic(path, page.encode("utf-8"))
    return path


def _replay(nodes: list) -> tuple:
    """The backward pass of ``nodes[-1]`` replayed from ``local_grads()``, one record per step,
    without touching any ``.grad``; also the final gradient of each node (by position)."""
    index = {v: i for i, v in enumerate(nodes)}
    root = len(nodes) - 1
    grads = [0.0] * len(nodes)
    grads[root] = 1.0
    steps = [{"node": root, "target": root, "edge": None, "upstream": 1.0, "before": 0.0, "after": 1.0}]
    for i in range(root, -1, -1):
        v = nodes[i]
        for k, (parent, local) in enumerate(zip(v.parents, v.local_grads())):
            if parent.is_constant:
                continue
            j = index[parent]
            before = grads[j]
            grads[j] = before + local * grads[i]
            steps.append({"node": i, "target": j, "edge": f"e{i}_{k}", "local": local, "upstream": grads[i],
                          "before": before, "after": grads[j]})
    return steps, grads


def _check_against_engine(nodes: list, shown: list, grads: list) -> None:
    """Refuse to write a page whose last step disagrees with the engine's gradients.

    The engine multiplies the upstream gradient inside each rule (``g * out * (1 - out)``) while the
    page shows ``local × upstream``, so the two may differ by rounding: a few units in the last place
    of each contribution, carried down the graph by the local derivatives. Each gradient is held to
    that bound (``_ROUNDING`` ulps of every contribution, plus its upstream's bound times |local|).
    """
    engine = gradients(nodes[-1], [nodes[i] for i in shown])
    index = {v: i for i, v in enumerate(nodes)}
    bound = [0.0] * len(nodes)
    for i in range(len(nodes) - 1, -1, -1):
        for parent, local in zip(nodes[i].parents, nodes[i].local_grads()):
            bound[index[parent]] += abs(local) * (bound[i] + _ROUNDING * sys.float_info.epsilon * abs(grads[i]))
    for i, expected in zip(shown, engine):
        if grads[i] != expected and not abs(grads[i] - expected) <= bound[i]:
            raise AssertionError(f"backprop_html: replaying the rules gives grad {grads[i]!r} for node v{i} "
                                 f"but the engine computes {expected!r}")


_ROUNDING = 8  # ulps a rule and its replay may each be off by, per contribution


def _page_step(step: dict, final: bool, names: list, number, scale: float) -> dict:
    """What the page needs for one step: the grad that changes (exact and shown), the highlights, the words.
    ``final``: this step brings the target's last contribution."""
    i, j, upstream = step["node"], step["target"], step["upstream"]
    if step["edge"] is None:
        words = f"<b>{names[i]}</b>.grad = 1 &nbsp;— the seed: ∂{names[i]}/∂{names[i]} = 1. It is final."
    else:
        contribution = step["local"] * upstream
        words = (f'<span class="who current">{names[i]}</span> has its final grad {number(upstream)} '
                 f'and passes it to its parent <span class="who target">{names[j]}</span>.'
                 f'<code>{names[j]}.grad += local × upstream &nbsp;&nbsp;(local = ∂{names[i]}/∂{names[j]})</code>'
                 f'<code>{names[j]}.grad += {number(step["local"])} × {number(upstream)} = {number(contribution)}'
                 f' &nbsp;&nbsp;→ &nbsp;{number(step["before"])} + {number(contribution)} = '
                 f'{number(step["after"])}</code>')
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


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>
  body {{ font-family: Helvetica, Arial, sans-serif; margin: 0; color: #222; background: white; }}
  header {{ padding: 14px 22px 4px; }}
  h1 {{ font-size: 20px; margin: 0 0 4px; }}
  header p {{ margin: 0; color: #555; font-size: 13px; max-width: 70em; }}
  #controls {{ display: flex; align-items: center; gap: 8px; padding: 10px 22px; position: sticky; top: 0;
               background: #f4f4f4; border-bottom: 1px solid #ddd; z-index: 1; }}
  button {{ font-size: 14px; padding: 5px 12px; border: 1px solid #bbb; border-radius: 4px; background: white;
            cursor: pointer; }}
  button:disabled {{ color: #aaa; cursor: default; }}
  #slider {{ flex: 1; max-width: 520px; }}
  #counter {{ font-variant-numeric: tabular-nums; color: #444; min-width: 8em; }}
  #explain {{ padding: 10px 22px; min-height: 5.2em; font-size: 15px; line-height: 1.5; }}
  #explain code {{ display: block; font-family: Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 14px;
                   background: #fff; border: 1px solid #e3e3e3; border-radius: 4px; padding: 3px 8px;
                   margin-top: 4px; width: fit-content; }}
  .who {{ font-weight: bold; padding: 0 4px; border-radius: 3px; }}
  .who.current {{ background: #fde0c5; color: #b34700; }}
  .who.target {{ background: #e2dcf2; color: #4b2c91; }}
  #graph {{ padding: 6px 22px 22px; overflow: auto; }}
  #graph svg {{ height: auto; }}
  #graph.fit svg {{ max-width: 100%; }}
  #controls label {{ font-size: 13px; color: #444; }}
  g.value text.grad {{ fill: #9a9a9a; }}
  g.value.final text.grad {{ fill: #111; font-weight: bold; }}
  g.node.current > path, g.node.current > polygon {{ stroke: #e66100; stroke-width: 4; }}
  g.node.target > path, g.node.target > polygon {{ stroke: #5e3c99; stroke-width: 4; }}
  g.node.op.current > ellipse {{ stroke: #e66100; stroke-width: 3; }}
  g.edge.current > path {{ stroke: #e66100; stroke-width: 4; }}
  g.edge.current > polygon {{ fill: #e66100; stroke: #e66100; }}
  g.edge.current > text {{ fill: #b34700; font-weight: bold; }}
</style>
</head>
<body>
<header>
  <h1>{title}</h1>
  <p>Backpropagation one edge at a time, in the order <code>backward()</code> uses (reversed topological order):
  a node passes its gradient on only once every node that uses it has passed theirs, so its gradient is final.
  Each step adds <code>local × upstream</code> to a parent's grad. Orange: the node passing its gradient and the
  edge being applied; purple: the parent receiving it. Grey grads are not final yet. Keys: ← → and space;
  <code>page.html#5</code> opens at step 5.</p>
</header>
<div id="controls">
  <button id="first">« start</button>
  <button id="prev">◀ previous</button>
  <button id="play">▶ play</button>
  <button id="next">next ▶</button>
  <input id="slider" type="range" min="0" max="{steps}" value="0" aria-label="step">
  <span id="counter"></span>
  <label><input id="fit" type="checkbox" checked> fit to width</label>
</div>
<div id="explain" aria-live="polite"></div>
<div id="graph" class="fit">
{svg}
</div>
<script>
"use strict";
const DATA = {data};
(function () {{
  const steps = DATA.steps, last = steps.length;
  const values = {{}};
  for (const id of DATA.values) {{
    const group = document.getElementById(id);
    const text = Array.from(group.querySelectorAll("text")).find(t => t.textContent.startsWith("grad "));
    text.classList.add("grad");
    values[id] = {{ group: group, text: text, shape: group.querySelector("path, polygon") }};
  }}
  const $ = id => document.getElementById(id);
  let at = 0, timer = null;

  function setGrad(id, value, text, fill) {{
    const v = values[id];
    v.group.setAttribute("data-grad", String(value));
    v.text.textContent = text;
    v.shape.setAttribute("fill", fill);
  }}
  function highlight(step, on) {{
    if (!step) return;
    for (const id of step.current) document.getElementById(id).classList.toggle("current", on);
    if (step.current.length > 1) values[step.target].group.classList.toggle("target", on);
  }}
  function go(target) {{
    target = Math.max(0, Math.min(last, target));
    highlight(steps[at - 1], false);
    while (at < target) {{ const s = steps[at++]; setGrad(s.target, s.after, s.after_text, s.after_fill); }}
    while (at > target) {{ const s = steps[--at]; setGrad(s.target, s.before, s.before_text, s.before_fill); }}
    highlight(steps[at - 1], true);
    for (const id of DATA.values) values[id].group.classList.toggle("final", DATA.final_at[id] <= at);
    $("explain").innerHTML = at === 0 ? DATA.intro : steps[at - 1].words;
    $("counter").textContent = "step " + at + " / " + last;
    $("slider").value = String(at);
    $("first").disabled = $("prev").disabled = at === 0;
    $("next").disabled = at === last;
    if (at === last) stop();
  }}
  function stop() {{
    if (timer !== null) {{ clearInterval(timer); timer = null; }}
    $("play").textContent = "▶ play";
  }}
  function play() {{
    if (timer !== null) return stop();
    if (at === last) go(0);
    $("play").textContent = "❚❚ pause";
    timer = setInterval(() => go(at + 1), 900);
  }}
  for (const id of DATA.values) setGrad(id, 0, DATA.zero.text, DATA.zero.fill);
  $("first").addEventListener("click", () => {{ stop(); go(0); }});
  $("prev").addEventListener("click", () => {{ stop(); go(at - 1); }});
  $("next").addEventListener("click", () => {{ stop(); go(at + 1); }});
  $("play").addEventListener("click", play);
  $("fit").addEventListener("change", () => $("graph").classList.toggle("fit", $("fit").checked));
  $("slider").addEventListener("input", () => {{ stop(); go(Number($("slider").value)); }});
  document.addEventListener("keydown", event => {{
    if (event.key === "ArrowRight") go(at + 1);
    else if (event.key === "ArrowLeft") go(at - 1);
    else if (event.key === " ") {{ event.preventDefault(); play(); }}
  }});
  go(Number(location.hash.slice(1)) || 0);  // page.html#5 opens at step 5
}})();
</script>
</body>
</html>
"""
