"""One naming scheme everywhere: the nodes of tutorial 2's network have the same names in the demo's picture,
its backprop page, explain's derivation, a tape's source and the network diagram, the names the network and
the loss label them with; the inputs and the target are named as in the data file (demos/tutorial2.csv)."""

import contextlib
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from microgd import Value, explain
from microgd.app.demo import run_tutorial2, tutorial2_network
from microgd.data import MinMaxScaler, load_csv, tutorial2_table
from microgd.losses import half_squared_error
from microgd.nn import MLP
from microgd.stepper import backprop_page
from microgd.tape import trace
from microgd.viz import draw_graph, draw_mlp, find_renderer

needs_renderer = pytest.mark.skipif(find_renderer() is None and not os.environ.get("CI"),
                                    reason="no `dot` and no graphviz-pure (pip install 'microgd[render]')")

DATA = Path(__file__).resolve().parent.parent / "demos" / "tutorial2.csv"
SVG = "{http://www.w3.org/2000/svg}"
HIDDEN = ["h1", "h2", "h3"]
PARAMETERS = ["w_h1_1", "w_h1_2", "b_h1", "w_h2_1", "w_h2_2", "b_h2", "w_h3_1", "w_h3_2", "b_h3",
              "w_y_1", "w_y_2", "w_y_3", "b_y"]
MADE_BY_THE_NETWORK = ["s_h1", "h1", "s_h2", "h2", "s_h3", "h3", "s_y", "y"]  # in the order a call makes them
GENERATED = re.compile(r"v\d+")  # the fallback name of an unlabelled node (pictures, page, explain, tape)


def worked_example():
    """The graph the demo draws and steps through: the tutorial's network on row 1 scaled to [0, 1], its
    target z (91 scaled), loss L = 1/2 (y - z)^2, after backward."""
    (x,), (z,) = scaled_row()
    loss = half_squared_error(tutorial2_network()(x), Value(z, label="z"))
    loss.backward()
    return loss


def scaled_row():
    X, y = tutorial2_table()
    return MinMaxScaler().fit_transform(X)[:1], MinMaxScaler().fit_transform(y)[:1]


def expected_names(nodes):
    """Each node's expected name by position (``v{i}``, as pictures and the page number them): its label;
    None for a node the loss makes without a name (y - z, its square) and the constants."""
    return {f"v{i}": v.label or None for i, v in enumerate(nodes)}


def svg_names(svg_text):
    """The name each value box of a picture shows (its first line), by the box's id ``v{i}``."""
    root = ET.fromstring(svg_text)
    names = {}
    for group in root.iter(f"{SVG}g"):
        if re.fullmatch(r"v\d+", group.get("id", "")) and "value" in group.get("class", "").split():
            texts = [t.text for t in group.iter(f"{SVG}text")]
            names[group.get("id")] = texts[0]
    return names


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``microgd demo``'s real outputs: what it prints and the files it writes."""
    folder = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_tutorial2(folder, epochs=3, seed=0)
    return printed.getvalue(), folder


def test_the_network_and_the_loss_name_every_node_they_make():
    loss = worked_example()
    nodes = loss.topo()
    labels = [v.label for v in nodes]
    assert labels[:15] == [*PARAMETERS, "x1", "x2"]
    assert [v.label for v in nodes if v.parents and v.op in ("weighted_sum", "sigmoid")] == MADE_BY_THE_NETWORK
    assert (labels[-1], "z" in labels) == ("L", True)
    unnamed = [v for v in nodes if not v.label and not v.is_constant]
    assert [v.op for v in unnamed] == ["-", "powc"]  # the loss's y - z and its square: inlined by explain
    assert all(name.isidentifier() for name in labels if name)  # explain and a tape print them as they are


@needs_renderer
def test_the_demos_picture_names_every_node_as_it_is_labelled(demo):
    _, folder = demo
    nodes = worked_example().topo()
    shown = svg_names((folder / "tutorial2_graph.svg").read_text("utf-8"))
    expected = {i: name for i, name in expected_names(nodes).items() if i in shown}
    assert len(shown) == len(nodes) - 2  # every node but the constants 2 (inside ** 2) and 0.5 (a small number)
    assert {i: name for i, name in shown.items() if expected[i] is not None} == \
        {i: name for i, name in expected.items() if name is not None}
    assert {name for name in shown.values()} >= {*PARAMETERS, *MADE_BY_THE_NETWORK, "x1", "x2", "z", "L"}
    assert draw_graph(worked_example()).source.count("<b>") == len(nodes) - 4  # named: all but 4 (2 unnamed)


@needs_renderer
def test_the_demos_page_names_every_node_as_the_picture_does(demo):
    _, folder = demo
    page = (folder / "tutorial2_backprop.html").read_text("utf-8")
    nodes = worked_example().topo()
    expected = expected_names(nodes)
    shown = svg_names(page[page.index("<svg"):page.index("</svg>") + len("</svg>")])
    data = json.loads(re.search(r"const DATA = (.*);\n", page).group(1))
    said = {}  # the name each step's words give the node whose grad it changes
    for step in data["steps"][1:]:
        said.setdefault(step["target"], re.search(r'<span class="who target">(.*?)</span>', step["words"]).group(1))
    for i, name in expected.items():
        if name is not None:
            assert shown[i] == name
            if i in said:
                assert said[i] == name
    made = {i for i, name in expected.items() if name in MADE_BY_THE_NETWORK or name in PARAMETERS}
    assert len(made) == 21 and all(i in said for i in made)
    assert not any(GENERATED.fullmatch(said[i]) or GENERATED.fullmatch(shown[i]) for i in made)
    assert "<h1>Tutorial 2: one backward pass</h1>" in page
    assert "<b>L</b>.grad = 1" in data["steps"][0]["words"]


@needs_renderer
def test_the_page_object_names_the_nodes_as_the_demos_page_does():
    data = json.loads(re.search(r"const DATA = (.*);\n", backprop_page(worked_example()).html).group(1))
    words = " ".join(step["words"] for step in data["steps"])
    for name in ["s_h1", "h1", "s_y", "y", "z", "w_y_3", "b_h2", "x1", "x2"]:
        assert f'<span class="who target">{name}</span>' in words


def test_explains_derivation_names_every_node_by_its_label(demo):
    printed, _ = demo
    loss = worked_example()
    derivation = explain(loss, inline=0)  # every node named: labelled ones by their labels
    for v in loss.topo():
        if v.label:
            assert derivation.name(v) == v.label
    made = [v for v in loss.topo() if v.label in MADE_BY_THE_NETWORK]
    assert [derivation.name(v) for v in made] == MADE_BY_THE_NETWORK
    text = explain(loss).text()
    for j in (1, 2, 3):  # the tutorial's delta rule, in the network's names
        assert f"δ_s_h{j} = δ_s_y · ∂s_y/∂h{j} · ∂h{j}/∂s_h{j}" in text
        assert f"= δ_s_y · w_y_{j} · h{j}(1 − h{j})" in text
        assert f"δ_s_h{j} = δ_s_y · w_y_{j} · h{j}(1 − h{j})" in printed  # the demo prints explain's lines
    assert "δ_s_y = ∂L/∂y · ∂y/∂s_y = (y − z) · y(1 − y)" in text
    assert "∂L/∂w_h1_2 = δ_s_h1 · ∂s_h1/∂w_h1_2 = δ_s_h1 · x2" in text
    latex = explain(loss).latex()  # the same names with subscripts
    assert r"\frac{\partial L}{\partial w_{y,1}}" in latex and r"\delta_{s_{h1}}" in latex and "h_{1}" in latex
    assert not GENERATED.search(text)


def test_a_tapes_source_names_the_networks_nodes_as_the_eager_graph_does():
    model = tutorial2_network()

    def loss(x, z):
        return half_squared_error(model(x), z)

    (x,), (z,) = scaled_row()
    tape = trace(loss, x, z)
    lines = tape.source.splitlines()
    assert lines[0] == "def loss(x1, x2, z, captured):"  # the inputs x1, x2 and the target z of the data
    assert lines[1] == f"    ({', '.join(PARAMETERS)}) = captured"
    assert [p.label for p in tape.captured] == PARAMETERS
    forward = [line.split(" = ")[0].strip() for line in lines[2:] if not line.lstrip().startswith(("d_", "return"))]
    eager = half_squared_error(tutorial2_network()(x), Value(z, label="z"))
    assert len(forward) == len([v for v in eager.topo() if v.parents])
    for name, v in zip(forward, [v for v in eager.topo() if v.parents]):
        assert name == v.label if v.label else GENERATED.fullmatch(name), (name, v.label)
    assert forward[:8] == MADE_BY_THE_NETWORK and forward[-1] == "L"
    assert "    s_y = w_y_1 * h1 + w_y_2 * h2 + w_y_3 * h3 + b_y" in lines
    assert "    d_w_y_1 = d_s_y * h1" in lines and lines[-1].startswith("    return L, (d_x1, d_x2, d_z), (d_w_h1_1,")


@needs_renderer
def test_the_network_diagram_names_units_inputs_and_weights_alike(demo):
    _, folder = demo
    root = ET.fromstring((folder / "tutorial2_trained_mlp.svg").read_text("utf-8"))
    nodes = {g.findtext(f"{SVG}title"): [t.text for t in g.iter(f"{SVG}text")]
             for g in root.iter(f"{SVG}g") if "node" in g.get("class", "").split()}
    assert [nodes[k][0] for k in ("x1", "x2", "l1n1", "l1n2", "l1n3", "l2n1")] == ["x1", "x2", *HIDDEN, "y"]
    tooltips = {g.findtext(f"{SVG}title"): a.get("{http://www.w3.org/1999/xlink}title")
                for g in root.iter(f"{SVG}g") if "weight" in g.get("class", "").split() for a in g.iter(f"{SVG}a")}
    units = {"l1n1": "h1", "l1n2": "h2", "l1n3": "h3", "l2n1": "y"}
    inputs = {"x1": 1, "x2": 2, "l1n1": 1, "l1n2": 2, "l1n3": 3}
    assert len(tooltips) == 9
    for edge, tooltip in tooltips.items():  # the edge from input j into unit u: the weight w_u_j
        tail, head = edge.split("->")
        assert tooltip == f"w_{units[head]}_{inputs[tail]}"


def test_deeper_networks_name_units_by_layer_and_the_diagram_agrees():
    model = MLP(2, [3, 2, 2], activations=["tanh", "relu", "linear"], seed=0)
    outputs = model([0.5, -0.5])
    nodes = outputs[0].topo() + outputs[1].topo()
    names = {v.label for v in nodes if v.parents}
    assert names == {"s_h1_1", "h1_1", "s_h1_2", "h1_2", "s_h1_3", "h1_3", "s_h2_1", "h2_1", "s_h2_2", "h2_2",
                     "y1", "y2"}  # the linear outputs: their sums are y1, y2
    assert model.layers[1].neurons[0].w[2].label == "w_h2_1_3" and model.layers[2].neurons[1].b.label == "b_y2"
    source = draw_mlp(model).source
    for unit in ("h1_1", "h1_3", "h2_2", "y1", "y2"):
        assert f"<b>{unit}</b>" in source
    assert "tooltip=w_h2_1_3" in source
    assert not any(GENERATED.fullmatch(v.label) or not v.label.isidentifier() for v in nodes)


def test_the_data_file_names_the_inputs_and_the_target_as_the_network_does(demo):
    printed, _ = demo
    X, y, inputs = load_csv(DATA, target="z")
    assert (X, y) == tutorial2_table() and inputs == ["x1", "x2"]
    assert [v.label for v in worked_example().topo() if v.label in ("x1", "x2", "z")] == [*inputs, "z"]
    assert re.search(r"(?m)^\s+x1\s+x2\s+target z\s+prediction\s+error$", printed)
    assert "x = (1, 1), target z = 1" in printed and "x1 = 70" in printed
    header = DATA.read_text("utf-8").splitlines()[0]
    assert header == "x1,x2,z"
