"""viz: the DOT of known graphs (nodes, edge labels, numbers, colours, constants, escaping), the lecture's
draw_dot, renderer discovery, saving, rendering, Jupyter display with either renderer, graphviz's public API only."""

import html
import inspect
import math
import os
import re
import shutil
import stat
import sys
import xml.etree.ElementTree as ET

import graphviz
import pytest

import microgd
import microgd.drawing
from microgd import Value, define_op
from microgd.stepper import backprop_page
from microgd.viz import (
    Diagram,
    RendererNotFound,
    RenderTimeout,
    draw_dot,
    draw_graph,
    draw_mlp,
    find_renderer,
    save,
)

# Rendering may skip only on a machine without a renderer, never in CI (.ci/run installs the `render` extra).
needs_renderer = pytest.mark.skipif(find_renderer() is None and not os.environ.get("CI"),
                                    reason="no `dot` and no graphviz-pure (pip install 'microgd[render]')")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SVG = "{http://www.w3.org/2000/svg}"


def statement(source, element_id):
    """The one DOT line that declares the node or edge with this id."""
    lines = [line for line in source.splitlines() if re.search(rf"\bid={re.escape(element_id)}\b", line)]
    assert len(lines) == 1, (element_id, lines)
    return lines[0]


def seed_neuron():
    """The first seed's network: one sigmoid neuron, x = 0.1, target 0.3, squared error; w = 0.5 here."""
    x, w = Value(0.1), Value(0.5, label="w")
    sop = w * x
    predicted = sop.sigmoid()
    predicted.label = "predicted"
    error = (predicted - 0.3) ** 2
    error.label = "error"
    return x, w, sop, predicted, error


def by_hand():
    """The seed neuron's numbers from the closed forms (the chain rule g1 * g2 * g3, with g2 at the sop)."""
    predicted = 1 / (1 + math.exp(-0.05))
    g1 = 2 * (predicted - 0.3)  # d error / d predicted
    g2 = predicted * (1 - predicted)  # d predicted / d sop: sigmoid' at the sop, not at the prediction
    return predicted, g1, g2


def ids(nodes, *values):
    return [f"v{nodes.index(v)}" for v in values]


def test_dot_of_the_seed_neuron_has_every_node_edge_label_and_number():
    x, w, sop, predicted, error = seed_neuron()
    error.backward()
    p, g1, g2 = by_hand()
    f = lambda number: format(number, ".4f")  # noqa: E731
    nodes = error.topo()
    source = draw_graph(error).source
    vx, vw, vsop, vpred, verr = ids(nodes, x, w, sop, predicted, error)

    assert "<b>w</b>" in statement(source, vw) and "data 0.5000" in statement(source, vw)
    assert f"grad {f(g1 * g2 * 0.1)}" in statement(source, vw)
    assert f"data {f(p)}" in statement(source, vpred) and f"grad {f(g1)}" in statement(source, vpred)
    assert f"data {f((p - 0.3) ** 2)}" in statement(source, verr) and "grad 1.0000" in statement(source, verr)
    assert 'label="σ"' in statement(source, f"{vpred}op") and 'label="×"' in statement(source, f"{vsop}op")
    # every edge: local derivative, then x upstream = contribution
    i = vsop[1:]
    assert f"{vw} -> {vsop}op" in statement(source, f"e{i}_0")
    assert f"label=<0.1000<br/>× {f(g1 * g2)} = {f(g1 * g2 * 0.1)}>" in statement(source, f"e{i}_0")
    assert f"{vx} -> {vsop}op" in statement(source, f"e{i}_1")
    assert f"label=<0.5000<br/>× {f(g1 * g2)} = {f(g1 * g2 * 0.5)}>" in statement(source, f"e{i}_1")
    sigmoid_edge = statement(source, f"e{vpred[1:]}_0")
    assert f"label=<{f(g2)}<br/>× {f(g1)} = {f(g1 * g2)}>" in sigmoid_edge
    assert f"{vsop}op -> {vsop}" in statement(source, f"o{i}")


def test_leaves_parameters_constants_and_interior_nodes_look_different():
    x, w, sop, _predicted, error = seed_neuron()
    nodes = error.topo()
    source = draw_graph(error).source
    vx, vw, vsop = ids(nodes, x, w, sop)
    assert 'class="value input"' in statement(source, vx) and 'style=filled' in statement(source, vx)
    assert 'class="value parameter"' in statement(source, vw) and 'style="filled,bold"' in statement(source, vw)
    assert 'class="value interior"' in statement(source, vsop) and 'style="rounded,filled"' in statement(source, vsop)
    constant = f"v{nodes.index(error.parents[0].parents[1])}"  # the 0.3 of predicted - 0.3
    assert re.search(r"label=(\S+)", statement(source, constant)).group(1) == "0.3"
    assert "shape=plaintext" in statement(source, constant)


def test_a_constant_exponent_is_part_of_its_op_and_other_numbers_are_plain_constants():
    u = Value(0.5, label="u")
    square = u ** 2
    shifted = 0.3 - square
    scaled = 2 ** shifted  # a number base: op cpow, whose constant base is part of its op too
    scaled.backward()
    nodes = scaled.topo()
    source = draw_graph(scaled).source
    i, j, k = (nodes.index(v) for v in (square, shifted, scaled))
    exponent, base = square.parents[1], scaled.parents[0]
    assert 'label="** 2"' in statement(source, f"v{i}op") and 'label="base 2"' in statement(source, f"v{k}op")
    for folded in (exponent, base):
        assert not re.search(rf"\bv{nodes.index(folded)} ", source)  # the 2 is no node and no edge
    assert [line for line in source.splitlines() if f"-> v{i}op " in line] == [statement(source, f"e{i}_0")]
    assert "0.0000" not in source
    c = nodes.index(shifted.parents[0])
    assert 'label="−"' in statement(source, f"v{j}op")
    assert "shape=plaintext" in statement(source, f"v{c}") and "class=const" in statement(source, f"v{c}")
    edge = statement(source, f"e{j}_0")
    assert edge.startswith(f"\tv{c} -> v{j}op") and "style=dashed" in edge and "label=" not in edge
    assert "label=<" in statement(source, f"e{j}_1") and "label=<" in statement(source, f"e{k}_1")
    # the lecture's picture and the page treat constants the same way
    lecture = draw_dot(scaled).source
    assert 'label="** 2"' in lecture and f"v{nodes.index(exponent)} " not in lecture
    assert 'label="base 2"' in lecture and f"v{nodes.index(base)} " not in lecture
    assert f"v{nodes.index(shifted.parents[0])} [label=0.3 " in lecture


def test_a_value_exponent_is_an_input_with_its_derivative():
    x, p = Value(2.0, label="x"), Value(3.0, label="p")
    y = x ** p
    y.backward()
    source = draw_graph(y).source
    assert 'label="**"' in statement(source, "v2op")
    assert f"label=<{x.grad:.4f}<br/>× 1.0000" in statement(source, "e2_0")
    assert f"label=<{p.grad:.4f}<br/>× 1.0000" in statement(source, "e2_1")


def test_both_edges_of_a_reused_operand_are_drawn_and_labelled():
    a = Value(3.0, label="a")
    product = a * a
    total = a + a
    product.backward()
    source = draw_graph(product).source
    assert statement(source, "e1_0").startswith("\tv0 -> v1op") and statement(source, "e1_1").startswith("\tv0 -> v1op")
    assert "label=<3.0000<br/>× 1.0000 = 3.0000>" in statement(source, "e1_0")
    assert "label=<3.0000<br/>× 1.0000 = 3.0000>" in statement(source, "e1_1")
    total.backward()
    source = draw_graph(total).source
    assert source.count("v0 -> v1op") == 2 and "label=<1.0000<br/>× 1.0000 = 1.0000>" in statement(source, "e1_1")


def test_a_dot_node_is_one_op_with_every_parent_edge_labelled():
    w = [Value(0.5, label="w1"), Value(-1.0, label="w2")]
    x = [Value(2.0), Value(3.0)]
    b = Value(0.25, label="b")
    out = Value.weighted_sum(w, x, b)
    nodes = out.topo()
    source = draw_graph(out).source
    n = nodes.index(out)
    assert source.count(f"-> v{n}op") == 5 and 'label="w·x+b"' in statement(source, f"v{n}op")
    locals_ = [re.search(r"label=(\S+)", statement(source, f"e{n}_{k}")).group(1) for k in range(5)]
    assert locals_ == ["2.0000", "3.0000", "0.5000", "-1.0000", "1.0000"]  # x1, x2, w1, w2, 1


def test_grads_and_contributions_only_after_a_backward_and_only_when_asked():
    _x, _w, _sop, _predicted, error = seed_neuron()
    before = draw_graph(error).source
    assert "grad " not in before and "×" not in before.replace('label="×"', "")
    assert "edge: local derivative ∂output/∂input" in before and "contribution" not in before
    error.backward()
    hidden = draw_graph(error, show_grad=False).source
    assert hidden == before
    shown = draw_graph(error).source
    assert "grad " in shown and "contribution to input.grad" in shown
    assert not re.search(r"parent|child", shown)  # micrograd says children, we say inputs: never the reverse


def test_each_edge_shows_the_rules_own_contribution():
    """x's sigmoid edge: local × upstream, re-multiplied, is off in the last place from what the rule returns."""
    x = Value(0.9, label="x")
    s = (x * 1.7).sigmoid()
    y = s * s
    y.backward()
    upstream = s.grad
    local, = s.local_grads()
    contribution, = s.contributions(upstream)
    assert local * upstream != contribution and s.parents[0].grad == contribution
    edge = statement(draw_graph(y, number_format=".17g").source, f"e{y.topo().index(s)}_0")
    assert f"× {upstream:.17g} = {contribution:.17g}>" in edge


def test_colour_follows_the_sign_and_size_of_the_gradient():
    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    out = a * b  # d/da = -3 (red), d/db = 2 (blue, lighter: smaller)
    out.backward()
    source = draw_graph(out).source

    def rgb(line):
        hex_ = re.search(r'fillcolor="#([0-9a-f]{6})"', line).group(1)
        return [int(hex_[k:k + 2], 16) for k in (0, 2, 4)]

    va, vb = ids(out.topo(), a, b)
    red, blue = rgb(statement(source, va)), rgb(statement(source, vb))
    assert red[0] > red[2] and blue[2] > blue[0]
    assert sum(red) < sum(blue)  # |-3| > |2|: the deeper colour
    assert re.search(r'color="#[0-9a-f]{6}"', statement(source, "e2_0"))


def test_node_ids_are_stable_and_options_reach_the_dot():
    _x, _w, _sop, _predicted, error = seed_neuron()
    error.backward()
    assert draw_graph(error).source == draw_graph(error).source
    source = draw_graph(error, rankdir="TB", number_format=".2e").source
    assert "rankdir=TB" in source and "data 5.00e-01" in source


def test_drawing_does_not_touch_the_graph():
    _x, _w, _sop, _predicted, error = seed_neuron()
    error.backward()
    before = [(v.data, v.grad, v.label) for v in error.topo()]
    draw_graph(error)
    assert [(v.data, v.grad, v.label) for v in error.topo()] == before


def test_too_large_a_graph_is_refused_with_the_option_to_allow_it():
    total = Value(0.0)
    for k in range(300):
        total = total + k
    with pytest.raises(ValueError, match=r"601 nodes, more than max_nodes=500.*max_nodes=601"):
        draw_graph(total)
    assert isinstance(draw_graph(total, max_nodes=601), Diagram)


@pytest.mark.parametrize("kwargs, message", [
    ({"rankdir": "up"}, "rankdir must be one of LR, TB, RL, BT"),
    ({"number_format": "d"}, "number_format 'd' is not a format for floats"),
    ({"number_format": "<<8.3f"}, "number_format '<<8.3f' fills with a character labels reserve"),
    ({"number_format": "&>9.2f"}, "number_format '&>9.2f' fills with a character labels reserve"),
])
@pytest.mark.parametrize("draw", [draw_graph, draw_dot])
def test_bad_options_are_named(draw, kwargs, message):
    with pytest.raises(ValueError, match=f"{draw.__name__}: {message}"):
        draw(Value(1.0) * 2, **kwargs)


@pytest.mark.parametrize("draw", [draw_graph, draw_dot])
def test_only_values_are_drawn(draw):
    with pytest.raises(TypeError, match=f"{draw.__name__}: expected a microgd Value, got float"):
        draw(1.5)


# -- saving and renderer discovery --

def fake_program(folder, name, script):
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def no_renderer(tmp_path, monkeypatch):
    """A PATH and a Python location where no renderer lives."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(sys, "executable", str(empty / "python"))
    return empty


def test_dot_on_path_comes_first_then_graphviz_pure_then_next_to_python(no_renderer, tmp_path, monkeypatch):
    assert find_renderer() is None
    beside_python = fake_program(no_renderer, "graphviz-pure", "exit 0")
    assert find_renderer() == beside_python
    on_path = tmp_path / "bin"
    on_path.mkdir()
    monkeypatch.setenv("PATH", str(on_path))
    pure = fake_program(on_path, "graphviz-pure", "exit 0")
    assert find_renderer() == pure
    dot = fake_program(on_path, "dot", "exit 0")
    assert find_renderer() == dot


def test_without_a_renderer_dot_saves_and_rendering_says_what_to_install(no_renderer, tmp_path):
    picture = draw_graph(Value(2.0, label="a") * 3)
    assert save(picture, tmp_path / "g.dot").read_text(encoding="utf-8") == picture.source
    assert save(picture, tmp_path / "g.gv").read_text(encoding="utf-8") == picture.source
    for attempt in (lambda: save(picture, tmp_path / "g.svg"), lambda: picture.pipe()):
        with pytest.raises(RendererNotFound, match=r'pip install "microgd\[render\]".*install Graphviz'):
            attempt()
    assert not (tmp_path / "g.svg").exists()
    # Jupyter shows one line saying what to install, not a traceback
    bundle = picture._repr_mimebundle_()
    assert list(bundle) == ["text/plain"] and bundle["text/plain"].count("\n") == 0
    assert bundle["text/plain"].startswith("(no picture: rendering a picture needs a Graphviz renderer")
    assert picture._repr_svg_() is None


def test_a_failing_renderer_is_reported_with_its_message(no_renderer, tmp_path):
    fake_program(no_renderer, "graphviz-pure", "echo 'Error: syntax error in line 1' >&2; exit 1")
    with pytest.raises(RuntimeError, match="could not render png: Error: syntax error in line 1"):
        save(draw_graph(Value(1.0)), tmp_path / "g.png")
    assert os.listdir(tmp_path) == ["empty"]  # nothing half-written


def test_save_needs_a_known_suffix_an_existing_folder_and_a_graph(tmp_path):
    picture = draw_graph(Value(1.0))
    with pytest.raises(ValueError, match=r"suffix '.pdf'; use one of .svg .png .dot .gv"):
        save(picture, tmp_path / "g.pdf")
    with pytest.raises(ValueError, match=r"suffix '\(none\)'"):
        save(picture, tmp_path / "graph")
    with pytest.raises(FileNotFoundError, match="folder .*missing.* does not exist"):
        save(picture, tmp_path / "missing" / "g.dot")
    with pytest.raises(TypeError, match="expected a graphviz graph"):
        save("digraph {}", tmp_path / "g.dot")


def test_save_replaces_a_file_in_one_step(tmp_path):
    target = tmp_path / "g.gv"
    target.write_text("old")
    picture = draw_graph(Value(1.0, label="new"))
    save(picture, str(target))
    assert target.read_text(encoding="utf-8") == picture.source and os.listdir(tmp_path) == ["g.gv"]


@needs_renderer
def test_svg_renders_with_the_nodes_ids_and_numbers(tmp_path):
    _x, w, _sop, _predicted, error = seed_neuron()
    error.backward()
    nodes = error.topo()
    path = save(draw_graph(error), tmp_path / "neuron.svg")
    svg = ET.parse(path).getroot()
    groups = {g.get("id"): g for g in svg.iter(f"{SVG}g")}
    vw = f"v{nodes.index(w)}"
    texts = [t.text for t in groups[vw].iter(f"{SVG}text")]
    assert texts == ["w", "data 0.5000", f"grad {by_hand()[1] * by_hand()[2] * 0.1:.4f}"]
    exponent = error.parents[1]
    assert all(f"v{i}" in groups for i, v in enumerate(nodes) if v is not exponent)
    assert f"v{nodes.index(exponent)}" not in groups  # drawn inside its op
    edges = [g for g in groups.values() if "edge" in g.get("class", "")]
    assert len(edges) == 10  # 6 into the 4 op nodes (the exponent 2 is inside its op), 4 out of them


@needs_renderer
def test_png_renders(tmp_path):
    _x, _w, _sop, _predicted, error = seed_neuron()
    error.backward()
    data = save(draw_graph(error), tmp_path / "neuron.png").read_bytes()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert data[:8] == PNG_MAGIC and width > 600 and height > 100


def graphviz_pure():
    """The graphviz-pure executable of the `render` extra (on PATH or beside this Python), or None."""
    return shutil.which("graphviz-pure") or shutil.which("graphviz-pure", path=os.path.dirname(sys.executable))


needs_graphviz_pure = pytest.mark.skipif(graphviz_pure() is None and not os.environ.get("CI"),
                                         reason="graphviz-pure is not installed")


def jupyter_display(obj):
    """What Jupyter shows for ``obj``: IPython's own display formatter, as a notebook kernel runs it."""
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(obj)
    return data


def lecture_draw_dot(root):
    """Karpathy's draw_dot from the micrograd lecture, as written there (on microgd Values)."""
    nodes, edges = set(), set()

    def build(v):
        if v not in nodes:
            nodes.add(v)
            for child in v._prev:
                edges.add((child, v))
                build(child)
    build(root)
    dot = graphviz.Digraph(format="svg", graph_attr={"rankdir": "LR"})
    for n in nodes:
        uid = str(id(n))
        dot.node(name=uid, label=f"{{ {n.label} | data {n.data:.4f} | grad {n.grad:.4f} }}", shape="record")
        if n._op:
            dot.node(name=uid + n._op, label=n._op)
            dot.edge(uid + n._op, uid)
    for n1, n2 in edges:
        dot.edge(str(id(n1)), str(id(n2)) + n2._op)
    return dot


def lecture_neuron():
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2 = Value(-3.0, label="w1"), Value(1.0, label="w2")
    b = Value(6.8813735870195432, label="b")
    n = x1 * w1 + x2 * w2 + b
    n.label = "n"
    o = n.tanh()
    o.label = "o"
    return o


@needs_graphviz_pure
def test_jupyter_shows_every_picture_with_graphviz_pure_beside_python(tmp_path, monkeypatch):
    from microgd.nn import MLP

    program = graphviz_pure()
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere: graphviz's own rendering would fail
    monkeypatch.setattr(sys, "executable", os.path.join(os.path.dirname(program), "python"))
    o = lecture_neuron()
    o.backward()
    for picture in (draw_graph(o), draw_dot(o), draw_mlp(MLP(2, [3, 1], weights=SEED_WEIGHTS))):
        shown = jupyter_display(picture)
        assert "image/svg+xml" in shown and shown["image/svg+xml"].lstrip().startswith("<?xml")
        assert "graphviz-pure" in shown["image/svg+xml"]  # the renderer's own comment
    assert picture.pipe(format="png")[:8] == PNG_MAGIC
    assert picture._repr_mimebundle_(include=["image/png"])["image/png"][:8] == PNG_MAGIC
    assert picture._repr_mimebundle_(exclude=["image/svg+xml"]) == {}


def test_jupyter_uses_dot_when_it_is_on_path(no_renderer, tmp_path, monkeypatch):
    log = tmp_path / "dot.log"
    fake_program(no_renderer, "dot", f'echo "$@" >> {log}; cat > /dev/null; echo "<svg>drawn by dot</svg>"')
    fake_program(no_renderer, "graphviz-pure", "echo graphviz-pure must not run >&2; exit 1")
    shown = jupyter_display(draw_dot(Value(2.0, label="a") * 3))
    assert shown["image/svg+xml"].strip() == "<svg>drawn by dot</svg>"
    assert log.read_text().split() == ["-Kdot", "-Tsvg"]  # rendered once


def test_jupyter_without_a_renderer_shows_one_line_saying_what_to_install(no_renderer, capsys):
    shown = jupyter_display(draw_graph(Value(2.0) * 3))
    assert list(shown) == ["text/plain"] and 'pip install "microgd[render]"' in shown["text/plain"]
    assert "Traceback" not in capsys.readouterr().err


@needs_graphviz_pure
def test_the_lectures_own_draw_dot_saves_and_displays_with_graphviz_pure(tmp_path, monkeypatch):
    program = graphviz_pure()
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", os.path.join(os.path.dirname(program), "python"))
    o = lecture_neuron()
    o.backward()
    dot = lecture_draw_dot(o)
    with pytest.raises(graphviz.ExecutableNotFound):
        dot.pipe()  # graphviz's own rendering needs Graphviz's `dot`
    svg = ET.parse(save(dot, tmp_path / "lecture.svg")).getroot()
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "o" in texts and "data 0.7071" in texts and "grad 0.5000" in texts and "tanh" in texts
    assert save(dot, tmp_path / "lecture.png").read_bytes()[:8] == PNG_MAGIC
    assert save(dot, tmp_path / "lecture.gv").read_text(encoding="utf-8") == dot.source
    assert "image/svg+xml" in jupyter_display(Diagram(dot))
    with pytest.raises(TypeError, match="Diagram: expected a graphviz graph"):
        Diagram("digraph {}")


# -- the lecture's picture --

def test_draw_dot_draws_a_record_per_value_and_a_node_per_op_as_the_lecture_does():
    o = lecture_neuron()
    before = draw_dot(o).source
    assert "{ o | data 0.7071 | grad 0.0000 }" in before
    o.backward()
    source = draw_dot(o).source
    nodes = o.topo()
    for i, v in enumerate(nodes):
        assert statement_of(source, f"v{i}").endswith(
            f'[label="{{ {v.label} | data {v.data:.4f} | grad {v.grad:.4f} }}" shape=record]')
    ops = {line.split()[0]: re.search(r'label=("[^"]*"|\S+)', line).group(1).strip('"[]')
           for line in source.splitlines() if re.match(r"\tv\d+op \[", line)}
    assert sorted(ops.values()) == sorted(["×", "×", "+", "+", "tanh"])
    edges = re.findall(r"^\t(v\d+(?:op)?) -> (v\d+(?:op)?)$", source, re.M)
    into_ops = sorted((tail, head) for tail, head in edges if head.endswith("op"))
    expected = sorted((f"v{nodes.index(p)}", f"v{nodes.index(v)}op") for v in nodes for p in v.parents)
    assert into_ops == expected and len(edges) == len(expected) + len(ops)
    assert draw_dot(o, rankdir="TB", number_format=".2f").source.count("rankdir=TB") == 1


def test_draw_dot_draws_both_uses_of_a_reused_input():
    a = Value(3.0, label="a")
    source = draw_dot(a + a).source
    assert source.count("v0 -> v1op") == 2


@needs_renderer
def test_draw_dot_shows_any_label_as_it_is(tmp_path):
    label = 'a|b {c} <d> \\n & "q"'
    x = Value(1.0, label=label)
    source = draw_dot(x * 2).source
    assert r"a\|b \{c\} \<d\> \\n &amp; \"q\"" in source
    svg = ET.parse(save(draw_dot(x * 2), tmp_path / "x.svg")).getroot()
    record = next(g for g in svg.iter(f"{SVG}g") if g.findtext(f"{SVG}title") == "v0")
    assert [t.text for t in record.iter(f"{SVG}text")] == [label, "data 1.0000", "grad 0.0000"]


BACKSLASHED = [r"\Gamma", r"C:\Users\Name", r"a\nb\lc", "ends in \\", r"x\\y", r"\G\N\E\T\H\L"]


@pytest.fixture
def renderer(monkeypatch):
    """graphviz-pure, which reads a DOT label's escapes as Graphviz's dot does (always there in CI)."""
    program = graphviz_pure()
    if program is None and not os.environ.get("CI"):
        pytest.skip("graphviz-pure is not installed")
    monkeypatch.setattr(microgd.drawing, "find_renderer", lambda: program)
    return program


def svg_texts(svg):
    return {t.text for t in ET.fromstring(svg).iter(f"{SVG}text")}


@pytest.mark.parametrize("view", ["draw_graph", "draw_dot", "backprop_page"])
def test_labels_and_op_symbols_are_drawn_literally_whatever_their_backslashes(view, renderer, forget_defined_ops):
    r"""Graphviz reads \N, \G, \L, \n ... in a label as escapes (the node's name, the graph's, a line break):
    a label is text, drawn as it is, by either renderer."""
    same = define_op("same", forward=lambda x: x, vjp=lambda g, out, x: (g,), symbol=r"\N")
    total = Value(1.0, label=BACKSLASHED[0])
    for text in BACKSLASHED[1:]:
        total = total + Value(1.0, label=text)
    root = same(total)
    root.label = r"\L"
    root.backward()
    if view == "backprop_page":
        page = backprop_page(root).html
        texts = svg_texts(page[page.index("<svg"):page.index("</svg>") + 6])
    else:
        texts = svg_texts({"draw_graph": draw_graph, "draw_dot": draw_dot}[view](root).pipe("svg"))
    assert {*BACKSLASHED, r"\N", r"\L"} <= texts


def test_labels_and_op_symbols_are_escaped_in_the_graph_picture():
    label = '<i>x</i> & "q"'
    sym = define_op("angled", forward=lambda v: v, vjp=lambda g, out, v: (g,), symbol="<f>")
    y = sym(Value(1.0, label=label))
    y.backward()
    source = draw_graph(y).source
    assert f"<b>{html.escape(label)}</b>" in statement(source, "v0") and "<i>" not in source
    assert 'label="&lt;f&gt;"' in statement(source, "v1op")
    assert 'label="&lt;f&gt;"' in statement_of(draw_dot(y).source, "v1op")


def test_grad_texts_are_escaped_too():
    """(An activation's name is an op's name, a Python identifier since define_op checks it: no markup.)"""
    from microgd.drawing import expression_graph, number_formatter

    y = Value(1.0, label="a") * 2
    texts = ['<b>grad</b> & "more"', "", ""]
    source = expression_graph(y.topo(), number=number_formatter(".4f", "test"), grad_texts=texts).source
    assert f"<tr><td>{html.escape(texts[0])}</td></tr>" in statement(source, "v0") and "<b>grad</b>" not in source


# -- graphviz: the public API only --

def microgd_classes():
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(microgd.__path__):
        module = importlib.import_module(f"microgd.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__:
                yield cls


def test_nothing_we_define_overrides_a_private_member_of_graphviz():
    def is_private(name):
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    ours = list(microgd_classes())
    assert Diagram in ours
    graphviz_classes = {base for name in graphviz.__all__ if inspect.isclass(getattr(graphviz, name))
                        for base in getattr(graphviz, name).__mro__ if base.__module__.startswith("graphviz")}
    private = {name for cls in graphviz_classes for name in vars(cls) if is_private(name)}
    assert {"_repr_mimebundle_", "_render"} <= private  # the hooks a subclass would be tempted to override
    for cls in ours:
        for base in cls.__mro__[1:]:
            if base in graphviz_classes:
                overridden = {name for name in vars(cls) if name in private}
                assert not overridden, f"{cls.__name__} overrides graphviz's {sorted(overridden)}"
    for cls in graphviz_classes:  # nor is anything of ours patched into graphviz's classes
        for name, member in vars(cls).items():
            module = getattr(inspect.unwrap(member) if callable(member) else member, "__module__", None)
            assert not str(module).startswith("microgd"), f"graphviz.{cls.__name__}.{name} comes from {module}"


# -- the MLP diagram --

SEED_WEIGHTS = [  # the second seed's 2-3-1 network: per neuron [w1, w2, (w3,) b]
    [[-0.5, -1.0, 0.5], [-0.5, 0.5, 0.5], [1.0, 0.0, 0.5]],
    [[0.5, -1.0, 0.0, 0.5]],
]


def edge_statement(source, tail, head):
    lines = [line for line in source.splitlines() if line.startswith(f"\t{tail} -> {head} ")]
    assert len(lines) == 1, (tail, head, lines)
    return lines[0]


def test_mlp_diagram_has_inputs_neurons_and_weighted_edges_in_order():
    from microgd.nn import MLP

    source = draw_mlp(MLP(2, [3, 1], activation="sigmoid", weights=SEED_WEIGHTS)).source
    for k, (w1, w2, b) in enumerate(SEED_WEIGHTS[0], 1):
        neuron = statement_of(source, f"l1n{k}")
        assert f"<b>h{k}</b>" in neuron and "sigmoid" in neuron and f"b {b:.2f}" in neuron
        assert f"label=<{w1:.2f}>" in edge_statement(source, "x1", f"l1n{k}")
        assert f"label=<{w2:.2f}>" in edge_statement(source, "x2", f"l1n{k}")
    assert "<b>y</b>" in statement_of(source, "l2n1")
    for k, w in enumerate(SEED_WEIGHTS[1][0][:3], 1):
        assert f"label=<{w:.2f}>" in edge_statement(source, f"l1n{k}", "l2n1")
    # the order of each layer is kept by invisible edges between neighbours
    assert "x1 -> x2 [style=invis]" in source and "l1n2 -> l1n3 [style=invis]" in source
    assert "grad" not in source


def test_mlp_edges_are_coloured_by_sign_and_as_wide_as_the_weight():
    from microgd.nn import MLP

    source = draw_mlp(MLP(2, [3, 1], activation="sigmoid", weights=SEED_WEIGHTS)).source

    def style(tail, head):
        line = edge_statement(source, tail, head)
        colour = re.search(r' color="#([0-9a-f]{6})"', line).group(1)
        return [int(colour[k:k + 2], 16) for k in (0, 2, 4)], float(re.search(r"penwidth=([\d.]+)", line).group(1))

    (red, wide), (blue, narrow), (_, thinnest) = style("x2", "l1n1"), style("x2", "l1n2"), style("x2", "l1n3")
    assert red[0] > red[2] and blue[2] > blue[0]  # -1.0 red, 0.5 blue
    assert wide > narrow > thinnest  # |-1.0| > |0.5| > |0.0|


def test_mlp_diagram_shows_gradients_after_a_backward():
    from microgd.nn import MLP

    model = MLP(2, [3, 1], activation="sigmoid", weights=SEED_WEIGHTS)
    output = model([0.8, 0.2])
    (0.5 * (output - 0.1) ** 2).backward()
    source = draw_mlp(model, show_grad=True, number_format=".3f").source
    b = model.layers[1].neurons[0].b
    w = model.layers[0].neurons[1].w[0]
    assert f"grad {b.grad:.3f}" in statement_of(source, "l2n1") and b.grad != 0
    assert f"{w.data:.3f}<br/><font point-size=\"9\">grad {w.grad:.3f}</font>" in edge_statement(source, "x1", "l1n2")


def test_mlp_diagram_names_layers_of_a_deeper_network_and_refuses_other_objects():
    from microgd.nn import MLP

    source = draw_mlp(MLP(3, [4, 4, 2], activations=["tanh", "relu", "linear"], seed=0)).source
    assert "<b>h1_1</b>" in source and "<b>h2_4</b>" in source and "<b>y2</b>" in source
    assert "tanh" in statement_of(source, "l1n1") and "relu" in statement_of(source, "l2n1")
    assert "linear" in statement_of(source, "l3n2")
    with pytest.raises(TypeError, match="expected a microgd.nn.MLP"):
        draw_mlp(Value(1.0))


def statement_of(source, name):
    lines = [line for line in source.splitlines() if line.lstrip().startswith(f"{name} [")]
    assert len(lines) == 1, (name, lines)
    return lines[0]


# -- heavily reused values: one trunk, a fast layout; every renderer call has a time limit --

def reused_70_times():
    """x + x + ... + x: one leaf reused 70 times, each use one layer further."""
    x = Value(0.5, label="x")
    total = x
    for _ in range(69):
        total = total + x
    total.backward()
    return total


def sum_of_120_tanh():
    """tanh(w * x_0) + ... + tanh(w * x_119): w reused 120 times along the sum."""
    w = Value(0.3, label="w")
    total = (w * Value(0.0, label="x0")).tanh()
    for i in range(1, 120):
        total = total + (w * Value(0.01 * i, label=f"x{i}")).tanh()
    total.backward()
    return total


def edges_from(source, tail):
    return [line for line in source.splitlines() if line.startswith(f"\t{tail} -> ")]


@pytest.mark.parametrize("draw", [draw_graph, draw_dot])
def test_a_value_used_across_many_layers_sends_its_edges_along_one_trunk(draw):
    root = reused_70_times()
    source = draw(root).source
    direct = edges_from(source, "v0")
    assert len(direct) == 3  # the first + (x + x) directly, and the trunk's first point
    points = [line for line in source.splitlines() if "shape=point" in line]
    assert len(points) == 68 and all("class=trunk" in line for line in points)  # one per later layer of use
    assert [len(edges_from(source, f"t0_{n}")) for n in range(68)] == [2] * 67 + [1]  # a use, the next point
    uses = [line for line in source.splitlines() if re.match(r"\t(v0|t0_\d+) -> v\d+op", line)]
    assert len(uses) == 70  # every use keeps its own edge into its op
    if draw is draw_graph:
        assert all("1.0000<br/>× 1.0000 = 1.0000" in line for line in uses)
        assert sorted(re.search(r"id=(e\d+_\d)", line).group(1) for line in uses) == sorted(
            [f"e1_{k}" for k in (0, 1)] + [f"e{i}_1" for i in range(2, 70)])


def test_small_graphs_keep_their_direct_edges():
    from microgd.app.demo import tutorial2_network

    error = seed_neuron()[-1]
    loss = (tutorial2_network()([1.0, 1.0]) - 1.0) ** 2  # each input feeds three neurons
    x = Value(0.5, label="x")
    twelve = x
    for _ in range(11):
        twelve = twelve + x  # x across 11 layers: its direct edges cross 90 layers, below the trunk's 100
    for root in (error, loss, twelve):
        root.backward()
        assert "shape=point" not in draw_graph(root).source and "shape=point" not in draw_dot(root).source


@pytest.mark.parametrize("draw", [draw_graph, draw_dot])
@pytest.mark.parametrize("make", [reused_70_times, sum_of_120_tanh])
def test_graphs_with_a_heavily_reused_value_render_well_within_the_time_limit(draw, make, tmp_path, monkeypatch):
    """With graphviz-pure these took 13 s (x reused 70 times) and more than 120 s (w reused 120 times);
    now well under a second each, here allowed 20."""
    program = graphviz_pure()
    monkeypatch.setenv("PATH", os.path.dirname(program))  # graphviz-pure, never a system dot
    monkeypatch.setattr(sys, "executable", os.path.join(os.path.dirname(program), "python"))
    assert find_renderer() == program
    assert save(draw(make()), tmp_path / "big.svg", timeout=20).read_text().count("<g id=") > 70


PYTHON = sys.executable  # the real one, before a test moves it


def sleeper(folder):
    """A renderer that never finishes, with a child holding its output open: only stopping both ends it."""
    fake_program(folder, "dot", f"{PYTHON} -c 'import time; time.sleep(600)' & exec {PYTHON} -c 'import time; "
                                "time.sleep(600)'")


def test_a_renderer_that_hangs_is_stopped_at_the_time_limit(no_renderer, tmp_path):
    sleeper(no_renderer)
    picture = draw_graph(Value(2.0, label="a") * 3)
    with pytest.raises(RenderTimeout, match=r"dot took more than 0.3 s to lay out this graph and was stopped: draw "
                                            r"a smaller graph, or allow more time with timeout=0.6") as caught:
        save(picture, tmp_path / "g.svg", timeout=0.3)
    assert (caught.value.seconds, os.path.basename(caught.value.program)) == (0.3, "dot")
    assert not (tmp_path / "g.svg").exists()
    with pytest.raises(RenderTimeout, match=r"more than 0.2 s"):
        Diagram(picture.graph, timeout=0.2).pipe()
    with pytest.raises(RenderTimeout, match=r"more than 0.2 s"):
        backprop_page(Value(2.0) * 3, timeout=0.2)
    assert Diagram(picture.graph, timeout=0.2)._repr_svg_() is None  # Jupyter: no picture, no hang
    with pytest.raises(ValueError, match=r"timeout must be a number of seconds above 0, got 0"):
        picture.pipe(timeout=0)


def test_the_default_time_limit_is_a_minute():
    assert microgd.drawing.RENDER_TIMEOUT == 60.0
    assert inspect.signature(microgd.drawing.run_renderer).parameters["timeout"].default is None
