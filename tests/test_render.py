"""draw_dot as micrograd's: the lecture's calls (draw_dot(root, format=..., rankdir=...), dot.render('gout'),
pipe, save, display) on what draw_dot, draw_graph and draw_mlp return, without system Graphviz; files named as
graphviz names them; clear errors for destinations that cannot be written and for a missing viewer."""

import os
import random
import shutil
import stat
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import graphviz
import pytest

import microgd.drawing
from microgd import Value
from microgd.files import DestinationError
from microgd.nn import MLP, Neuron
from microgd.viz import Diagram, draw_dot, draw_graph, draw_mlp

SVG = "{http://www.w3.org/2000/svg}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PYTHON = sys.executable


def graphviz_pure():
    return shutil.which("graphviz-pure") or shutil.which("graphviz-pure", path=os.path.dirname(sys.executable))


@pytest.fixture
def pure_only(tmp_path, monkeypatch):
    """graphviz-pure beside Python and no `dot` on PATH, as in CI: graphviz's own rendering cannot run."""
    program = graphviz_pure()
    if program is None and not os.environ.get("CI"):
        pytest.skip("graphviz-pure is not installed")
    empty = tmp_path / "no-programs"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(sys, "executable", os.path.join(os.path.dirname(program), "python"))
    assert microgd.drawing.find_renderer() == program
    return program


def svg_texts(path):
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return [t.text for t in root.iter(f"{SVG}text")]


def notebook_draw_dot(root, format="svg", rankdir="LR"):
    """micrograd's trace_graph.ipynb draw_dot, as written there (on micrograd's own Values)."""
    nodes, edges = set(), set()

    def build(v):
        if v not in nodes:
            nodes.add(v)
            for child in v._prev:
                edges.add((child, v))
                build(child)
    build(root)
    dot = graphviz.Digraph(format=format, graph_attr={"rankdir": rankdir})
    for n in nodes:
        dot.node(name=str(id(n)), label="{ data %.4f | grad %.4f }" % (n.data, n.grad), shape="record")  # noqa: UP031
        if n._op:
            dot.node(name=str(id(n)) + n._op, label=n._op)
            dot.edge(str(id(n)) + n._op, str(id(n)))
    for n1, n2 in edges:
        dot.edge(str(id(n1)), str(id(n2)) + n2._op)
    return dot


# -- micrograd's trace_graph notebook, cell by cell --

def test_the_trace_graph_notebook_runs_as_written_without_system_graphviz(pure_only, tmp_path, monkeypatch):
    from IPython.core.formatters import DisplayFormatter

    monkeypatch.chdir(tmp_path)
    with pytest.raises(graphviz.ExecutableNotFound):  # no `dot`: graphviz's own render cannot run here
        graphviz.Digraph(format="svg").pipe()
    # a very simple example: draw_dot(y) shows in the notebook
    x = Value(1.0)
    y = (x * 2 + 1).relu()
    y.backward()
    shown, _ = DisplayFormatter().format(draw_dot(y))
    assert shown["image/svg+xml"].lstrip().startswith("<?xml")
    # a simple 2D neuron
    random.seed(1337)
    n = Neuron(2)
    x = [Value(1.0), Value(-2.0)]
    y = n(x)
    y.backward()
    dot = draw_dot(y, format="svg", rankdir="TB")
    assert isinstance(dot, Diagram) and dot.format == "svg" and "rankdir=TB" in dot.source
    path = dot.render("gout")
    assert path == "gout.svg" and isinstance(path, str)
    assert sorted(os.listdir(tmp_path)) == ["gout", "gout.svg", "no-programs"]
    assert (tmp_path / "gout").read_text(encoding="utf-8") == dot.source
    texts = svg_texts(tmp_path / "gout.svg")
    # micrograd's own neuron, seeded the same, gives the same numbers in the picture
    import micrograd.engine
    import micrograd.nn

    random.seed(1337)
    theirs = micrograd.nn.Neuron(2)
    out = theirs([micrograd.engine.Value(1.0), micrograd.engine.Value(-2.0)])
    out.backward()
    assert [w.data for w in n.w] == [w.data for w in theirs.w] and y.data == out.data
    for mine, their in zip([*n.w, n.b, y], [*theirs.w, theirs.b, out]):
        assert f"data {their.data:.4f}" in texts and f"grad {their.grad:.4f}" in texts
        assert (mine.data, mine.grad) == (their.data, their.grad)
    assert "relu" in texts and any(label and label.endswith("w1") for label in texts)
    # the notebook's own draw_dot, on micrograd's Values, renders the same way through Diagram
    picture = Diagram(notebook_draw_dot(out, format="svg", rankdir="TB"))
    assert picture.render(tmp_path / "notebook") == str(tmp_path / "notebook.svg")
    assert f"data {out.data:.4f}" in " ".join(svg_texts(tmp_path / "notebook.svg"))


@pytest.mark.parametrize("draw", ["draw_dot", "draw_graph", "draw_mlp"])
def test_every_picture_renders_pipes_saves_and_names_its_files_the_same_way(draw, pure_only, tmp_path):
    o = Value(2.0, label="a") * Value(-3.0, label="b")
    o.backward()
    picture = {"draw_dot": lambda: draw_dot(o), "draw_graph": lambda: draw_graph(o),
               "draw_mlp": lambda: draw_mlp(MLP(2, [3, 1], seed=0))}[draw]()
    assert picture.format == "svg" and picture.engine == "dot" and picture.filename == "Digraph.gv"
    assert picture.pipe()[:5] == b"<?xml" and picture.pipe(format="png")[:8] == PNG_MAGIC
    assert picture.pipe(encoding="utf-8").startswith("<?xml")
    assert picture.render(tmp_path / "g", format="png") == str(tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG_MAGIC
    assert picture.filepath == str(tmp_path / "g")  # remembered, as graphviz does
    assert picture.render() == str(tmp_path / "g.svg")
    assert picture.save() == str(tmp_path / "g") and picture.save("h.gv", tmp_path) == str(tmp_path / "h.gv")
    assert (tmp_path / "h.gv").read_text(encoding="utf-8") == picture.source == str(picture)
    assert sorted(os.listdir(tmp_path)) == ["g", "g.png", "g.svg", "h.gv", "no-programs"]


def test_draw_dot_takes_micrograds_format_then_rankdir(pure_only, tmp_path):
    root = Value(2.0, label="a") * 3
    dot = draw_dot(root, "png", "TB")
    assert dot.format == "png" and "rankdir=TB" in dot.source
    assert dot.render(tmp_path / "gout") == str(tmp_path / "gout.png")
    assert (tmp_path / "gout.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match=r"format 'TB' is a layout direction: pass it as rankdir='TB'"):
        draw_dot(root, "TB")
    with pytest.raises(ValueError, match="format must be a picture format such as 'svg'"):
        draw_dot(root, format="")
    assert draw_graph(root, format="png").format == "png"


def test_building_calls_go_to_the_graph():
    dot = draw_dot(Value(1.0, label="a") * 2)
    dot.attr(label="my caption")
    dot.node("extra", "an extra node")
    dot.edge("extra", "v0")
    assert "my caption" in dot.source and "extra -> v0" in dot.source and dot.body is dot.graph.body
    twin = dot.copy()
    twin.node("only_in_the_copy")
    assert "only_in_the_copy" not in dot.source and twin.format == dot.format
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        dot.no_such_thing


# -- graphviz's file naming, compared with graphviz itself --

FAKE_DOT = f"""#!{PYTHON}
import sys
args = sys.argv[1:]
kind = next(a[2:] for a in args if a.startswith("-T"))
if "-O" in args:
    open(args[-1] + "." + kind, "w").write("drawn")
elif "-o" in args:
    open(args[args.index("-o") + 1], "w").write("drawn")
else:
    sys.stdin.read()
    sys.stdout.write("drawn")
"""

NAMINGS = {
    "the notebook's": ({}, {"filename": "gout"}),
    "another format": ({}, {"filename": "gout", "format": "png"}),
    "a path": ({}, {"filename": os.path.join("sub", "gout.gv")}),
    "a new directory": ({}, {"filename": "g.gv", "directory": "out"}),
    "the default name": ({}, {}),
    "a graph's name": ({"name": "spam"}, {}),
    "no source kept": ({}, {"filename": "gout", "cleanup": True}),
    "an outfile": ({}, {"outfile": "picture.png"}),
    "an outfile and a directory": ({}, {"outfile": "picture.svg", "directory": "out"}),
}


@pytest.mark.parametrize("graph_args, render_args", NAMINGS.values(), ids=NAMINGS.keys())
def test_render_writes_and_returns_the_paths_graphviz_does(graph_args, render_args, tmp_path, monkeypatch):
    """graphviz.Digraph.render, run with a stand-in `dot`, and Diagram.render write the same files and return the
    same path; only the picture's bytes differ (the stand-in draws nothing)."""
    programs = tmp_path / "bin"
    programs.mkdir()
    (programs / "dot").write_text(FAKE_DOT)
    (programs / "dot").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", str(programs))
    results = {}
    for who in ("graphviz", "microgd"):
        folder = tmp_path / who
        folder.mkdir()
        monkeypatch.chdir(folder)
        graph = graphviz.Digraph(format="svg", **graph_args)
        graph.edge("a", "b")
        returned = (graph if who == "graphviz" else Diagram(graph)).render(**render_args)
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        sources = {name: (folder / name).read_text() for name in files if (folder / name).read_text() != "drawn"}
        results[who] = returned, files, sources
    assert results["microgd"] == results["graphviz"]
    assert results["graphviz"][2] or render_args.get("cleanup")  # the DOT source is one of the files


# -- what cannot be written, what cannot be opened --

def test_a_destination_that_cannot_be_written_is_one_line_naming_it(pure_only, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dot = draw_dot(Value(1.0, label="a") * 2)
    Path("afile").write_text("in the way")
    with pytest.raises(DestinationError, match=r"^cannot write 'afile/gout': folder 'afile' cannot be made "
                                               r"\(a file is in the way\)$"):
        dot.render("afile/gout")
    with pytest.raises(DestinationError, match=r"^'/proc/gout' cannot be written"):
        dot.render("/proc/gout")
    with pytest.raises(DestinationError, match=r"^'/proc/gout' cannot be written"):
        dot.save("/proc/gout")
    if os.geteuid() != 0:  # root writes through permission bits
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            with pytest.raises(DestinationError, match=r"'.*locked/gout' cannot be written: Permission denied"):
                dot.render(locked / "gout")
        finally:
            locked.chmod(stat.S_IRWXU)
    assert sorted(os.listdir(tmp_path)) == ["afile", *(["locked"] if os.geteuid() != 0 else []), "no-programs"]


def test_a_failing_renderer_leaves_no_file(tmp_path, monkeypatch):
    programs = tmp_path / "bin"
    programs.mkdir()
    (programs / "graphviz-pure").write_text("#!/bin/sh\necho 'Error: out of ink' >&2\nexit 1\n")
    (programs / "graphviz-pure").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", str(programs))
    monkeypatch.setattr(sys, "executable", str(programs / "python"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(microgd.drawing.RenderError, match="could not render svg: Error: out of ink"):
        draw_dot(Value(1.0) * 2).render("gout")
    assert os.listdir(tmp_path) == ["bin"]


@pytest.mark.skipif(sys.platform == "win32", reason="Windows opens files with os.startfile, not a program")
def test_view_without_a_viewer_says_so_in_one_line(pure_only, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    dot = draw_dot(Value(1.0, label="a") * 2)
    assert dot.render("gout", view=True) == "gout.svg"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("microgd: wrote gout.svg, but no viewer could be opened (")
    assert err.rstrip().endswith("is not installed); open the file yourself")
    assert (tmp_path / "gout.svg").exists()
    assert dot.view("again") == "again.svg" and "no viewer could be opened" in capsys.readouterr().err


def test_render_refuses_what_graphviz_refuses(pure_only, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dot = draw_dot(Value(1.0) * 2)
    dot.render("gout")
    with pytest.raises(graphviz.FileExistsError, match="output file exists: 'gout.svg'"):
        dot.render("gout", raise_if_result_exists=True)
    with pytest.raises(ValueError, match="cannot tell the format of outfile 'picture'"):
        dot.render(outfile="picture")
    with pytest.raises(ValueError, match="is the source file"):
        dot.render("same.svg", outfile="same.svg")
    with pytest.raises(ValueError, match="a formatter needs a renderer"):
        dot.pipe(formatter="core")
