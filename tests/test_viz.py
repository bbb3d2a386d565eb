"""viz: the DOT of known graphs (nodes, edge labels, numbers, colours), renderer discovery, saving, rendering."""

import math
import os
import re
import shutil
import stat
import sys
import xml.etree.ElementTree as ET

import pytest

from microgd import Value
from microgd.viz import Diagram, RendererNotFound, draw_graph, draw_mlp, find_renderer, save

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
    x, w, sop, predicted, error = seed_neuron()
    nodes = error.topo()
    source = draw_graph(error).source
    vx, vw, vsop = ids(nodes, x, w, sop)
    assert 'class="value input"' in statement(source, vx) and 'style=filled' in statement(source, vx)
    assert 'class="value parameter"' in statement(source, vw) and 'style="filled,bold"' in statement(source, vw)
    assert 'class="value interior"' in statement(source, vsop) and 'style="rounded,filled"' in statement(source, vsop)
    constants = [f"v{i}" for i, v in enumerate(nodes) if v.is_constant]
    assert {re.search(r"label=(\S+)", statement(source, c)).group(1) for c in constants} == {"0.3", "2"}
    assert all("shape=plaintext" in statement(source, c) for c in constants)


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
    x, w, sop, predicted, error = seed_neuron()
    before = draw_graph(error).source
    assert "grad " not in before and "×" not in before.replace('label="×"', "")
    assert "edge: local derivative" in before and "contribution" not in before
    error.backward()
    hidden = draw_graph(error, show_grad=False).source
    assert hidden == before
    shown = draw_graph(error).source
    assert "grad " in shown and "contribution to parent.grad" in shown


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
    x, w, sop, predicted, error = seed_neuron()
    error.backward()
    assert draw_graph(error).source == draw_graph(error).source
    source = draw_graph(error, rankdir="TB", number_format=".2e").source
    assert "rankdir=TB" in source and "data 5.00e-01" in source


def test_drawing_does_not_touch_the_graph():
    x, w, sop, predicted, error = seed_neuron()
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
])
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        draw_graph(Value(1.0) * 2, **kwargs)


def test_only_values_are_drawn():
    with pytest.raises(TypeError, match="expected a microgd Value, got float"):
        draw_graph(1.5)


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
    for attempt in (lambda: save(picture, tmp_path / "g.svg"), lambda: picture.pipe(), picture._repr_mimebundle_):
        with pytest.raises(RendererNotFound, match=r'pip install "microgd\[render\]".*install Graphviz'):
            attempt()
    assert not (tmp_path / "g.svg").exists()


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
    x, w, sop, predicted, error = seed_neuron()
    error.backward()
    nodes = error.topo()
    path = save(draw_graph(error), tmp_path / "neuron.svg")
    svg = ET.parse(path).getroot()
    groups = {g.get("id"): g for g in svg.iter(f"{SVG}g")}
    vw = f"v{nodes.index(w)}"
    texts = [t.text for t in groups[vw].iter(f"{SVG}text")]
    assert texts == ["w", "data 0.5000", f"grad {by_hand()[1] * by_hand()[2] * 0.1:.4f}"]
    assert all(f"v{i}" in groups for i in range(len(nodes)))
    edges = [g for g in groups.values() if "edge" in g.get("class", "")]
    assert len(edges) == 11  # 7 into the 4 op nodes, 4 out of them


@needs_renderer
def test_png_renders(tmp_path):
    x, w, sop, predicted, error = seed_neuron()
    error.backward()
    data = save(draw_graph(error), tmp_path / "neuron.png").read_bytes()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert data[:8] == PNG_MAGIC and width > 600 and height > 100


def graphviz_pure():
    """The graphviz-pure executable of the `render` extra (on PATH or beside this Python), or None."""
    return shutil.which("graphviz-pure") or shutil.which("graphviz-pure", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(graphviz_pure() is None and not os.environ.get("CI"), reason="graphviz-pure is not installed")
def test_jupyter_and_render_go_through_graphviz_pure_beside_python(tmp_path, monkeypatch):
    program = graphviz_pure()
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere: graphviz's own rendering would fail
    monkeypatch.setattr(sys, "executable", os.path.join(os.path.dirname(program), "python"))
    picture = draw_graph(Value(2.0, label="a") * 3)
    bundle = picture._repr_mimebundle_()
    assert list(bundle) == ["image/svg+xml"] and "<title>v0</title>" in bundle["image/svg+xml"]
    assert picture.pipe(format="png")[:8] == PNG_MAGIC
    out = picture.render(directory=tmp_path, outfile=tmp_path / "a.png")
    assert out == str(tmp_path / "a.png") and (tmp_path / "a.png").read_bytes()[:8] == PNG_MAGIC
    assert picture.render(tmp_path / "b.gv", format="svg") == str(tmp_path / "b.gv.svg")
    assert "<svg" in (tmp_path / "b.gv.svg").read_text(encoding="utf-8")


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
    assert "<b>h1.1</b>" in source and "<b>h2.4</b>" in source and "<b>y2</b>" in source
    assert "tanh" in statement_of(source, "l1n1") and "relu" in statement_of(source, "l2n1")
    assert "linear" in statement_of(source, "l3n2")
    with pytest.raises(TypeError, match="expected a microgd.nn.MLP"):
        draw_mlp(Value(1.0))


def statement_of(source, name):
    lines = [line for line in source.splitlines() if line.lstrip().startswith(f"{name} [")]
    assert len(lines) == 1, (name, lines)
    return lines[0]
