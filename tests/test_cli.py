"""The `microgd` command: through cli.main in this process, and as the real console script and
`python -m microgd` in a subprocess where the process itself is tested (start-up, Ctrl-C, closed stdout)."""

import contextlib
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import pytest

import microgd
from microgd import define_op
from microgd.app import cli
from microgd.app.formula import functions
from microgd.app.modelfile import load_model
from microgd.optim import SGD

SCRIPT = shutil.which("microgd", path=os.path.dirname(sys.executable))


def run(*args, cwd, script=False, module=False):
    """Run the command in `cwd`; (exit status, stdout, stderr). By default cli.main runs in this process;
    script=True runs the console script `microgd`, module=True `python -m microgd`, in a subprocess."""
    if not (script or module):
        return in_process(args, cwd)
    if script:
        assert SCRIPT, f"the microgd console script is not next to {sys.executable}: pip install -e ."
        command = [SCRIPT, *args]
    else:
        command = [sys.executable, "-m", "microgd", *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


@contextlib.contextmanager
def working_directory(path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def in_process(args, cwd):
    """cli.main(args) in `cwd`, its stdout and stderr captured (main wraps the captured sys.stdout in its own
    _Stdout and restores it); a warning goes to stderr as a fresh Python's default filters would print it."""
    out, err = io.StringIO(), io.StringIO()
    with working_directory(cwd), warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.resetwarnings()  # Python's defaults, not pytest's: these are what a user's `microgd` shows
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__", append=True)
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category, append=True)
        status = cli.main(list(args))
    for w in caught:
        err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
    return status, out.getvalue(), err.getvalue()


def printed(name, stdout):
    return float(re.search(rf"{re.escape(name)} = (\S+)", stdout).group(1))


def sigmoid(s):
    return 1 / (1 + math.exp(-s))


# -- graph --------------------------------------------------------------------------------------

@pytest.mark.parametrize("script", [False, True], ids=["python -m microgd", "microgd"])
def test_graph_writes_an_svg_and_prints_value_and_gradients(tmp_path, script):
    status, out, err = run("graph", "sigmoid(w*x + b)", "--var", "w=0.5", "--var", "x=1.0", "--var", "b=-0.25",
                           "--out", "neuron.svg", cwd=tmp_path, script=script, module=not script)
    assert (status, err) == (0, "")
    s = sigmoid(0.5 * 1.0 - 0.25)
    assert printed("sigmoid(w*x + b)", out) == pytest.approx(s, abs=1e-6)
    assert printed("d/dw", out) == pytest.approx(s * (1 - s) * 1.0, abs=1e-6)
    assert printed("d/dx", out) == pytest.approx(s * (1 - s) * 0.5, abs=1e-6)
    assert printed("d/db", out) == pytest.approx(s * (1 - s), abs=1e-6)
    assert "wrote neuron.svg" in out
    svg = (tmp_path / "neuron.svg").read_text()
    assert "<svg" in svg and ">w<" in svg and ">b<" in svg


def test_graph_default_output_is_graph_svg(tmp_path):
    status, out, _ = run("graph", "(y - z)**2 / 2", "--var", "y=0.8", "--var", "z=0.3", cwd=tmp_path)
    assert status == 0
    assert printed("d/dy", out) == pytest.approx(0.5) and printed("d/dz", out) == pytest.approx(-0.5)
    assert "<svg" in (tmp_path / "graph.svg").read_text()


def test_graph_html_and_dot(tmp_path):
    assert run("graph", "tanh(x) * x", "--var", "x=0.5", "--out", "steps.html", cwd=tmp_path)[0] == 0
    page = (tmp_path / "steps.html").read_text()
    assert "<svg" in page and "<script" in page
    assert run("graph", "--var", "x=2", "--out", "neg.dot", "--", "-x**2", cwd=tmp_path)[0] == 0
    assert (tmp_path / "neg.dot").read_text().startswith("digraph")


# -- check --------------------------------------------------------------------------------------

TUTORIAL1_EXPR = "(sigmoid(w*x) - t)**2"
CORRECT = "2*(sigmoid(w*x) - t) * sigmoid(w*x)*(1 - sigmoid(w*x)) * x"
TUTORIAL1_FORMULA = "2*(sigmoid(w*x) - t) * sigmoid(sigmoid(w*x))*(1 - sigmoid(sigmoid(w*x))) * x"  # g2 at predicted


def test_check_passes_the_corrected_chain_rule(tmp_path):
    status, out, err = run("check", TUTORIAL1_EXPR, "--wrt", "w", "--formula", CORRECT, "--domain", "t=0:1",
                           cwd=tmp_path)
    assert (status, err) == (0, "")
    assert "domain: w in [-3, 3], x in [-3, 3], t in [0, 1]" in out
    assert "agrees with the engine at 200 points" in out


def test_explain_writes_out_the_chain_rule_and_its_closed_form_passes_check(tmp_path):
    point = ["--var", "w=0.5", "--var", "x=0.1", "--var", "t=0.3"]
    status, out, err = run("explain", TUTORIAL1_EXPR, "--wrt", "w", *point, "--formula", cwd=tmp_path)
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == "∂f/∂w = 2(σ(w·x) − t)·σ(w·x)(1 − σ(w·x))·x = 0.0106"
    closed = re.search(r"^d f/d w = (.*)$", out, re.M).group(1)
    status, out, _ = run("check", TUTORIAL1_EXPR, "--wrt", "w", "--formula", closed, "--domain", "t=0:1",
                         cwd=tmp_path)
    assert status == 0 and "agrees with the engine" in out
    status, out, err = run("explain", TUTORIAL1_EXPR, *point, "--latex", cwd=tmp_path)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == r"\begin{aligned}" and lines[-1] == r"\end{aligned}" and len(lines) == 6  # w, x, t, where


@pytest.mark.parametrize("args, message", [
    (["w*x", "--var", "w=1", "--var", "x=2", "--wrt", "q"], "--wrt q: EXPR has no variable 'q' (its variables: w, x)"),
    (["w*x", "--var", "w=1"], "EXPR uses x but no --var gives a value: add --var x=VALUE"),
    (["2*3"], "EXPR has no variables: there is no derivative to explain"),
    (["log(w)", "--var", "w=-1"], "log: operand must be > 0, got -1.0"),
])
def test_explains_mistakes_are_one_line(tmp_path, args, message):
    status, out, err = run("explain", *args, cwd=tmp_path)
    assert (status, out) == (2, "") and err.count("\n") == 1 and message in err, err


def test_check_takes_a_flat_sum_of_3000_terms(tmp_path):
    status, out, err = run("check", "+".join(["x*w"] * 3000), "--wrt", "w", "--formula", "3000*x", "--examples", "5",
                           cwd=tmp_path)
    assert (status, err) == (0, "") and "agrees with the engine at 5 points" in out


def test_check_finds_tutorial1s_error_and_exits_1(tmp_path):
    status, out, err = run("check", TUTORIAL1_EXPR, "--wrt", "w", "--formula", TUTORIAL1_FORMULA, "--domain", "t=0:1",
                           cwd=tmp_path)
    assert (status, err) == (1, "")
    assert "disagrees with the engine" in out
    point = {name: float(v) for name, v in re.findall(r"^\s+(\w) = (\S+)$", out, re.M)}
    engine = float(re.search(r"^\s+engine:\s+(\S+)", out, re.M).group(1))
    formula = float(re.search(r"^\s+formula:\s+(\S+)", out, re.M).group(1))
    p = sigmoid(point["w"] * point["x"])
    assert engine == pytest.approx(2 * (p - point["t"]) * p * (1 - p) * point["x"])
    q = sigmoid(p)
    assert formula == pytest.approx(2 * (p - point["t"]) * q * (1 - q) * point["x"])
    assert engine != pytest.approx(formula)


# -- demo and train ----------------------------------------------------------------------------

def test_demo_shows_tutorial2s_numbers_beside_the_engines_and_writes_pictures(tmp_path):
    status, out, err = run("demo", "--out", "pictures", cwd=tmp_path)
    assert (status, err) == (0, "")
    a = [sigmoid(-1.0), sigmoid(0.5), sigmoid(1.5)]
    y = sigmoid(0.5 * a[0] - 1.0 * a[1] + 0.0 * a[2] + 0.5)
    for j, printed in enumerate(("0.2689", "0.6225", "0.8176"), 1):
        engine = float(re.search(rf"h{j} = sigmoid\(s_h{j}\)\s+{printed}\s+(\S+)\s+yes", out).group(1))
        assert engine == pytest.approx(a[j - 1], abs=1e-6)
    assert float(re.search(r"y = sigmoid\(s_y\)\s+0\.5030\s+(\S+)\s+yes", out).group(1)) == pytest.approx(y, abs=1e-6)
    assert float(re.search(r"y \(1 - y\)\s+0\.2494\s+(\S+)\s+no", out).group(1)) == pytest.approx(y * (1 - y), abs=1e-6)
    delta = y * (1 - y) * (y - 1.0)  # target 91 scaled to 1
    assert float(re.search(r"delta_y = dL/ds_y\s+-22\.56\s+(\S+)", out).group(1)) == pytest.approx(delta, abs=1e-6)
    assert float(re.search(r"delta_y with z = 91\s+-22\.56\s+(\S+)\s+no", out).group(1)) == pytest.approx(
        y * (1 - y) * (y - 91), abs=1e-6)
    assert re.search(r"\[-1, 1\]\s+(?:I0|x1) = 50\s+-0\.1111\s+0\.111111\s+no", out)  # the tutorial's sign is wrong
    # the deltas from explain, beside the tutorial's formulas: δ_o = (y − z)·y(1 − y), δ_h = a(1 − a)·w·δ_o
    assert float(re.search(r"δ_s_y = \(y − z\) · y\(1 − y\)\s+(\S+)\s+δ_o = \(y − z\)·y\(1 − y\)", out).group(1)) \
        == pytest.approx(delta, abs=1e-6)
    for j, w_y in enumerate((0.5, -1.0, 0.0), 1):
        found = re.search(rf"δ_s_h{j} = δ_s_y · w_y_{j} · h{j}\(1 − h{j}\)\s+(\S+)\s+δ_h = a\(1 − a\)·w·δ_o", out)
        assert float(found.group(1)) == pytest.approx(delta * w_y * a[j - 1] * (1 - a[j - 1]) + 0.0, abs=1e-6)
    new = float(re.search(r"(?m)^\s+w_y_1\s+0\.5\s+\S+\s+(\S+)", out).group(1))
    assert new == pytest.approx(0.5 - 0.1 * delta * a[0], abs=1e-6)
    predictions = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+\.\d\d)\s+[-+]", out, re.M)
    assert [(i0, i1, z) for i0, i1, z, _ in predictions] == [("70", "98", "91"), ("50", "85", "82"),
                                                              ("65", "67", "80"), ("25", "95", "68")]
    assert all(abs(float(p) - float(z)) < 2 for _, _, z, p in predictions)
    folder = tmp_path / "pictures"
    assert "<svg" in (folder / "tutorial2_graph.svg").read_text()
    assert "<script" in (folder / "tutorial2_backprop.html").read_text()
    assert "<svg" in (folder / "tutorial2_trained_mlp.svg").read_text()
    assert (folder / "tutorial2_loss.png").read_bytes().startswith(b"\x89PNG")
    for name in ("tutorial2_graph.svg", "tutorial2_backprop.html", "tutorial2_trained_mlp.svg", "tutorial2_loss.png"):
        assert f"wrote {os.path.join('pictures', name)}" in out


TABLE_CSV = "I0,I1,Z0\n70,98,91\n50,85,82\n65,67,80\n25,95,68\n"


def test_train_writes_a_model_that_load_model_accepts(tmp_path):
    from microgd.app.modelfile import load_model
    from microgd.data import MinMaxScaler

    (tmp_path / "table.csv").write_text(TABLE_CSV)
    status, out, err = run("train", "table.csv", "--target", "Z0", "--epochs", "300", "--save", "model.json",
                           "--plot", "loss.png", cwd=tmp_path)
    assert (status, err) == (0, "")
    model = load_model(tmp_path / "model.json").model
    assert model.sizes == [2, 3, 1] and model.activations == ["sigmoid", "sigmoid"]
    X, y = [[70, 98], [50, 85], [65, 67], [25, 95]], [91, 82, 80, 68]
    scaled = MinMaxScaler().fit_transform(X)
    expected = MinMaxScaler().fit(y).inverse_transform([model(row).data for row in scaled])
    shown = [float(p) for p in re.findall(r"^\s+\d+\s+(\S+)$", out, re.M)]
    assert shown == [pytest.approx(e, rel=1e-5) for e in expected]
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")


def test_train_options(tmp_path):
    from microgd.app.modelfile import load_model

    (tmp_path / "table.csv").write_text(TABLE_CSV)
    status, out, _ = run("train", "table.csv", "--target", "I0", "--hidden", "4,3", "--activation", "tanh",
                         "--normalize", "-1-1", "--epochs", "20", "--save", "m.json", cwd=tmp_path)
    assert status == 0 and "inputs I1, Z0 -> target I0, all scaled to [-1, 1]" in out
    model = load_model(tmp_path / "m.json").model
    assert model.sizes == [2, 4, 3, 1] and model.activations == ["tanh", "tanh", "tanh"]


# -- every bad input: one line on stderr, exit 2, no traceback ------------------------------------

BAD = {
    "unknown function": ["graph", "foo(x)", "--var", "x=1"],
    "unknown name": ["graph", "w*x + b", "--var", "w=1", "--var", "x=2"],
    "syntax error": ["graph", "x +* 2", "--var", "x=1"],
    "attribute": ["graph", "x.__class__", "--var", "x=1"],
    "domain error": ["graph", "log(x - 2)", "--var", "x=1"],
    "overflow in the value": ["graph", "x*1e308*10", "--var", "x=1"],
    "5,000-digit integer": ["graph", "1" * 5000 + "*x", "--var", "x=1"],
    "overflow in a gradient": ["graph", "x*1e308*10", "--var", "x=0.1"],
    "var without =": ["graph", "x", "--var", "x"],
    "var not a number": ["graph", "x", "--var", "x=one"],
    "var not finite": ["graph", "x", "--var", "x=inf"],
    "var is a function": ["graph", "x", "--var", "exp=1"],
    "var twice": ["graph", "x", "--var", "x=1", "--var", "x=2"],
    "var read as another (NFKC)": ["graph", "x*ｘ", "--var", "x=3", "--var", "ｘ=100"],
    "name read as another (NFKC)": ["graph", "x*ｘ", "--var", "x=3"],
    "domain name read as another (NFKC)": ["check", "x*x", "--formula", "2*x", "--domain", "ｘ=0:1"],
    "bad suffix": ["graph", "x", "--var", "x=1", "--out", "picture.txt"],
    "missing folder": ["graph", "x", "--var", "x=1", "--out", "no/such/folder/g.svg"],
    "unknown option": ["graph", "x", "--var", "x=1", "--colour", "red"],
    "no formula": ["graph"],
    "no command": [],
    "unknown command": ["frobnicate"],
    "check: no --wrt": ["check", "w*x", "--formula", "x"],
    "check: --wrt not in EXPR": ["check", "w*x", "--formula", "x", "--wrt", "q"],
    "check: bad formula": ["check", "w*x", "--formula", "x[0]", "--wrt", "w"],
    "check: bad domain": ["check", "w*x", "--formula", "x", "--wrt", "w", "--domain", "w=3:-3"],
    "check: domain syntax": ["check", "w*x", "--formula", "x", "--wrt", "w", "--domain", "w=-3"],
    "check: undefined everywhere": ["check", "log(x)", "--formula", "1/x", "--domain", "x=-2:-1"],
    "check: examples": ["check", "x", "--formula", "1", "--examples", "0"],
    "check: --atol passing anything": ["check", "w*x", "--formula", "2*x", "--wrt", "w", "--atol", "1e300"],
    "check: negative --rtol": ["check", "w*x", "--formula", "x", "--wrt", "w", "--rtol", "-1"],
    "check: --rtol of 1": ["check", "w*x", "--formula", "2*x", "--wrt", "w", "--rtol", "1"],
    "check: --rtol passing 100 times the derivative": ["check", "w*x", "--formula", "100*x", "--wrt", "w",
                                                       "--rtol", "0.99"],
    "check: negative --atol": ["check", "w*x", "--formula", "x", "--wrt", "w", "--atol=-1e-9"],
    "check: --domain not in EXPR": ["check", "w*x*t", "--formula", "x*t", "--wrt", "w", "--domain", "T=0:1"],
    "check: --formula beyond EXPR": ["check", "w*x", "--formula", "x + 0*t", "--wrt", "w"],
    "train: missing file": ["train", "missing.csv", "--target", "Z0"],
    "train: a folder": ["train", ".", "--target", "Z0"],
    "train: unknown column": ["train", "table.csv", "--target", "Z9"],
    "train: not a number": ["train", "words.csv", "--target", "b"],
    "train: ragged row": ["train", "ragged.csv", "--target", "b"],
    "train: constant column": ["train", "constant.csv", "--target", "b"],
    "train: empty file": ["train", "empty.csv", "--target", "b"],
    "train: no target": ["train", "table.csv"],
    "train: bad hidden": ["train", "table.csv", "--target", "Z0", "--hidden", "3,0"],
    "train: bad epochs": ["train", "table.csv", "--target", "Z0", "--epochs", "ten"],
    "train: bad activation": ["train", "table.csv", "--target", "Z0", "--activation", "softmax"],
    "train: save folder": ["train", "table.csv", "--target", "Z0", "--save", "no/dir/model.json"],
    "train: plot suffix": ["train", "table.csv", "--target", "Z0", "--plot", "loss.txt"],
    "demo: out is a file": ["demo", "--out", "table.csv"],
}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "table.csv").write_text(TABLE_CSV)
    (tmp_path / "words.csv").write_text("a,b\n1,2\n3,four\n")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3\n")
    (tmp_path / "constant.csv").write_text("a,b\n1,2\n1,3\n")
    (tmp_path / "empty.csv").write_text("")
    return tmp_path


@pytest.mark.parametrize("args", BAD.values(), ids=BAD.keys())
def test_bad_input_is_one_line_on_stderr(files, args):
    status, out, err = run(*args, cwd=files)
    assert status == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("microgd") and ": error: " in lines[0]
    assert out == "" or args[0] in ("check", "demo")  # they print what they are about to do first


def test_messages_name_what_was_wrong(tmp_path):
    assert "unknown function 'foo' at column 1" in run(*BAD["unknown function"], cwd=tmp_path)[2]
    assert "--var b=VALUE" in run(*BAD["unknown name"], cwd=tmp_path)[2]
    assert "'.__class__'" in run(*BAD["attribute"], cwd=tmp_path)[2]
    assert ("--atol 1e+300 would accept the derivative 0 at every point tried (the largest |d f/d w| there is 3)"
            in run(*BAD["check: --atol passing anything"], cwd=tmp_path)[2])
    assert "--domain T: EXPR has no variable 'T' (its variables: w, x, t)" in run(*BAD["check: --domain not in EXPR"],
                                                                                cwd=tmp_path)[2]
    assert "argument --rtol: '-1' must be >= 0 and below 0.5" in run(*BAD["check: negative --rtol"], cwd=tmp_path)[2]
    assert ("argument --rtol: '0.99' would accept a formula 100 times the derivative (a relative tolerance r accepts "
            "anything within a factor 1/(1 - r)): use one below 0.5, which tells a formula from twice its value"
            in run(*BAD["check: --rtol passing 100 times the derivative"], cwd=tmp_path)[2])
    assert "(5000 digits) is too large for a float at column 1" in run(*BAD["5,000-digit integer"], cwd=tmp_path)[2]
    assert "'ｘ' is read by Python as 'x'" in run(*BAD["var read as another (NFKC)"], cwd=tmp_path)[2]
    assert "'ｘ' is read by Python as 'x'" in run(*BAD["name read as another (NFKC)"], cwd=tmp_path)[2]
    assert "in 'log(x - 2)' at column 1" in run(*BAD["domain error"], cwd=tmp_path)[2]
    assert "no/such/folder" in run(*BAD["missing folder"], cwd=tmp_path)[2]
    assert "--colour" in run(*BAD["unknown option"], cwd=tmp_path)[2]
    assert "'x[0]'" not in run(*BAD["check: bad formula"], cwd=tmp_path)[2]  # the token is '[0]'
    assert "'[0]' is not allowed at column 2" in run(*BAD["check: bad formula"], cwd=tmp_path)[2]


def test_train_messages_name_the_file_line_and_column(files):
    assert "table.csv: target 'Z9' is not a column (columns: I0, I1, Z0)" in run(*BAD["train: unknown column"],
                                                                             cwd=files)[2]
    assert "words.csv line 3: column 'b': 'four' is not a number" in run(*BAD["train: not a number"], cwd=files)[2]
    assert "constant.csv: column 'a' is constant" in run(*BAD["train: constant column"], cwd=files)[2]
    assert "missing.csv" in run(*BAD["train: missing file"], cwd=files)[2]


def test_help_and_version(tmp_path):
    status, out, _ = run("--help", cwd=tmp_path)
    assert status == 0 and all(c in out for c in ("demo", "train", "graph", "check"))
    status, out, _ = run("--version", cwd=tmp_path)
    assert (status, out.strip()) == (0, f"microgd {microgd.__version__}")


# -- main() in process ------------------------------------------------------------------------

def define_cube():
    define_op("cli_test_cube", forward=lambda x: x ** 3, vjp=lambda g, out, x: (3 * g * x * x,))


@pytest.mark.parametrize("command", ["graph", "check"])
def test_formula_help_lists_the_registrys_functions(capsys, forget_defined_ops, command):
    define_cube()
    assert cli.main([command, "--help"]) == 0
    listed = " ".join(capsys.readouterr().out.split())  # argparse wraps the text
    assert "the functions" in listed and "cli_test_cube" in listed  # an op defined in this process
    assert all(f" {name} " in f" {listed} " or f" {name}." in listed for name in functions())


def test_a_defined_op_can_be_graphed(tmp_path, capsys, forget_defined_ops):
    define_cube()
    assert cli.main(["graph", "cli_test_cube(x)", "--var", "x=2", "--out", str(tmp_path / "g.dot")]) == 0
    assert "d/dx = 12" in capsys.readouterr().out


def test_main_returns_the_exit_status(tmp_path, capsys):
    assert cli.main(["graph", "x * x", "--var", "x=3", "--out", str(tmp_path / "g.dot")]) == 0
    assert "d/dx = 6" in capsys.readouterr().out
    assert cli.main(["graph", "q", "--var", "x=3"]) == 2
    assert cli.main(["nonsense"]) == 2
    assert capsys.readouterr().err.count("\n") == 2


def test_interrupt_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_graph", interrupted)
    assert cli.main(["graph", "x", "--var", "x=1"]) == 130
    assert capsys.readouterr().err == "microgd: interrupted\n"


def test_without_a_renderer_or_matplotlib(tmp_path, monkeypatch, capsys):
    nothing = tmp_path / "no-programs"  # no renderer on PATH nor beside Python
    nothing.mkdir()
    monkeypatch.setenv("PATH", str(nothing))
    monkeypatch.setattr(sys, "executable", str(nothing / "python"))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["graph", "x * x", "--var", "x=3", "--out", str(tmp_path / "g.svg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "microgd[render]"' in err
    assert cli.main(["demo", "--out", str(tmp_path / "out"), "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "(pictures as DOT source only" in out and "(no loss plot: " in out
    assert (tmp_path / "out" / "tutorial2_graph.dot").read_text().startswith("digraph")
    (tmp_path / "table.csv").write_text(TABLE_CSV)
    assert cli.main(["train", str(tmp_path / "table.csv"), "--target", "Z0", "--plot", str(tmp_path / "l.png")]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


def test_bugs_are_not_swallowed(monkeypatch):
    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "_graph", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["graph", "x", "--var", "x=1"])


# -- every destination checked before any work ------------------------------------------------------

COMMANDS = {  # a command writing its destination DEST, quick to run
    "train --save": ["train", "table.csv", "--target", "Z0", "--epochs", "2", "--save", "DEST"],
    "train --plot": ["train", "table.csv", "--target", "Z0", "--epochs", "2", "--plot", "DEST"],
    "predict --out": ["predict", "model.json", "table.csv", "--out", "DEST"],
    "graph --out": ["graph", "x * x", "--var", "x=3", "--out", "DEST"],
}
UNWRITABLE = {  # where a file cannot be written: (what the user types, a suffix fitting the command)
    "an existing folder": "folder{suffix}",
    "a missing parent": "no/such/folder/out{suffix}",
    "/proc": "/proc/microgd-out{suffix}",
    "a parent that is a file": "table.csv/out{suffix}",
}
SUFFIXES = {"train --save": ".json", "train --plot": ".png", "predict --out": ".csv", "graph --out": ".svg"}


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with table.csv and a model trained on it, as the current folder; its files' contents."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "table.csv").write_text(TABLE_CSV)
    assert cli.main(["train", "table.csv", "--target", "Z0", "--epochs", "2", "--save", "model.json"]) == 0
    return tmp_path


def contents(folder):
    return {p.relative_to(folder): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def refused(args, capsys, folder):
    """Run main: exit 2, one line on stderr, nothing on stdout and no file changed; return the line."""
    before = contents(folder)
    capsys.readouterr()
    assert cli.main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("microgd: error: ")
    assert contents(folder) == before
    return err


@pytest.mark.parametrize("place", UNWRITABLE, ids=UNWRITABLE.keys())
@pytest.mark.parametrize("command", COMMANDS, ids=COMMANDS.keys())
def test_an_unwritable_destination_is_refused_before_any_work(work, capsys, command, place):
    (work / "folder.json").mkdir(), (work / "folder.png").mkdir(), (work / "folder.csv").mkdir()
    (work / "folder.svg").mkdir()
    typed = UNWRITABLE[place].format(suffix=SUFFIXES[command])
    option = COMMANDS[command][-2]
    err = refused([typed if a == "DEST" else a for a in COMMANDS[command]], capsys, work)
    assert f"{option} {typed!r}" in err  # the path as typed, never a temporary's name
    assert ".microgd-" not in err


@pytest.mark.parametrize("typed, message", [
    ("table.csv", "--out 'table.csv' is a file; give a folder"),
    ("table.csv/pictures", "--out 'table.csv/pictures' cannot be made: '.*table.csv' is a file; give a folder"),
    ("/proc/microgd-out", "--out '/proc/microgd-out' cannot be written"),
    ("/proc", "--out '/proc' cannot be written"),
])
def test_demos_folder_is_checked_before_any_work(work, capsys, typed, message):
    assert re.search(message, refused(["demo", "--out", typed, "--epochs", "1"], capsys, work))


@pytest.mark.parametrize("args, message", [
    (["train", "table.csv", "--target", "Z0", "--save", "table.csv"], "--save 'table.csv' is the same file as DATA"),
    (["train", "table.csv", "--target", "Z0", "--save", "sub/../table.csv"], "--save 'sub/../table.csv' is the same"),
    (["train", "table.csv", "--target", "Z0", "--save", "link.csv"], "--save 'link.csv' is the same file as DATA.csv"),
    (["train", "sub/../table.csv", "--target", "Z0", "--save", "ABSOLUTE"], "is the same file as DATA.csv"),
    (["train", "table.csv", "--target", "Z0", "--save", "m.svg", "--plot", "./m.svg"],
     "--plot './m.svg' is the same file as --save 'm.svg'"),
    (["train", "table.csv", "--target", "Z0", "--save", "link.svg", "--plot", "m.svg"],
     "--plot 'm.svg' is the same file as --save 'link.svg'"),
    (["predict", "model.json", "table.csv", "--out", "link.csv"], "--out 'link.csv' is the same file as DATA.csv"),
    (["predict", "model.csv", "table.csv", "--out", "sub/../model.csv"], "is the same file as MODEL.json 'model.csv'"),
])
def test_an_output_that_is_an_input_or_another_output_is_refused_before_any_work(work, capsys, args, message):
    (work / "sub").mkdir()
    (work / "link.csv").symlink_to(work / "table.csv")
    (work / "link.svg").symlink_to("m.svg")  # a dangling link: the picture would land in the model
    (work / "model.csv").write_bytes((work / "model.json").read_bytes())
    args = [str(work / "table.csv") if a == "ABSOLUTE" else a for a in args]
    assert message in refused(args, capsys, work)


# -- Ctrl-C and a closed stdout never cost the model ---------------------------------------------------

def weights(path):
    return json.loads(path.read_text())["weights"]


def test_ctrl_c_during_train_saves_the_last_completed_step_and_exits_130(work, capsys, monkeypatch):
    """Ctrl-C in the 5th update (the table has 4 rows): the saved model is the one one epoch makes."""
    assert cli.main(["train", "table.csv", "--target", "Z0", "--epochs", "1", "--save", "one-epoch.json"]) == 0
    step, calls = SGD.step, []

    def interrupted_in_step_5(self):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        step(self)

    monkeypatch.setattr(SGD, "step", interrupted_in_step_5)
    capsys.readouterr()
    assert cli.main(["train", "table.csv", "--target", "Z0", "--epochs", "50", "--save", "model.json"]) == 130
    err = capsys.readouterr().err
    assert err.endswith("microgd: interrupted; saved the model at its last completed step (1 epoch(s), 4 step(s)) "
                        "to model.json\n")
    assert weights(work / "model.json") == weights(work / "one-epoch.json")
    assert load_model(work / "model.json").columns.target == "Z0"  # a whole model file, scaling and names


def test_ctrl_c_before_the_first_step_leaves_an_existing_model_alone(work, capsys, monkeypatch):
    before = (work / "model.json").read_bytes()

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(SGD, "step", interrupted)
    assert cli.main(["train", "table.csv", "--target", "Z0", "--save", "model.json"]) == 130
    assert "interrupted before the first step; model.json not written" in capsys.readouterr().err
    assert (work / "model.json").read_bytes() == before
    assert cli.main(["train", "table.csv", "--target", "Z0"]) == 130
    assert capsys.readouterr().err.endswith("microgd: interrupted; nothing saved (no --save)\n")


def test_a_real_ctrl_c_saves_the_model(tmp_path):
    rows = "\n".join(f"{i % 7},{i % 5},{i % 3}" for i in range(200))
    (tmp_path / "data.csv").write_text(f"a,b,y\n{rows}\n")
    child = subprocess.Popen([sys.executable, "-m", "microgd", "train", "data.csv", "--target", "y", "--epochs",
                              "100000", "--save", "model.json"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert child.stdout.readline().startswith("data.csv: 200 rows")
        assert child.stdout.readline().startswith("model: MLP 2-3-1")
        assert child.stdout.readline().startswith("activations: hidden sigmoid, output sigmoid")  # just before training
        time.sleep(0.3)  # well into the first epochs
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130 and out == ""
    assert re.search(r"microgd: interrupted; saved the model at its last completed step \(\d+ epoch\(s\), "
                     r"[1-9]\d* step\(s\)\) to model.json\n$", err)
    assert load_model(tmp_path / "model.json").model.sizes == [2, 3, 1]


def test_a_closed_stdout_never_costs_the_saved_model(tmp_path):
    """`microgd train ... --save m.json | head -1`: the model is written, nothing is said, status 141."""
    (tmp_path / "table.csv").write_text(TABLE_CSV)
    child = subprocess.Popen([sys.executable, "-m", "microgd", "train", "table.csv", "--target", "Z0", "--epochs",
                              "300", "--save", "m.json", "--plot", "loss.png"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert child.stdout.readline().startswith(b"table.csv: 4 rows")
        child.stdout.close()  # the reader goes away while the model trains
        err = child.stderr.read()
        child.wait(timeout=60)
    finally:
        child.kill()
    assert (child.returncode, err) == (141, b"")
    assert load_model(tmp_path / "m.json").model.sizes == [2, 3, 1]
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")


def test_started_with_stdout_closed_train_still_saves(tmp_path):
    """`microgd train ... --save m.json >&-`: Python's sys.stdout is None, print() writes nothing."""
    (tmp_path / "table.csv").write_text(TABLE_CSV)
    done = subprocess.run([sys.executable, "-m", "microgd", "train", "table.csv", "--target", "Z0", "--epochs", "5",
                           "--save", "m.json"], cwd=tmp_path, stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1),
                          timeout=60)
    assert (done.returncode, done.stderr) == (0, b"")
    assert load_model(tmp_path / "m.json").model.sizes == [2, 3, 1]


class ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_with_nothing_to_write_and_no_reader_train_stops_before_training(tmp_path, monkeypatch, capsys):
    (tmp_path / "table.csv").write_text(TABLE_CSV)
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    monkeypatch.setattr(SGD, "step", lambda self: pytest.fail("trained for no one"))
    assert cli.main(["train", str(tmp_path / "table.csv"), "--target", "Z0"]) == 141
    assert capsys.readouterr().err == ""
    assert cli.main(["graph", "q", "--var", "x=3"]) == 2  # a mistake is still a mistake


# -- graph: --max-nodes and --timeout --------------------------------------------------------------------

def test_graph_has_a_max_nodes_option_and_its_message_names_it(tmp_path):
    sum_of_600 = "+".join(["x"] * 600)
    status, out, err = run("graph", sum_of_600, "--var", "x=1", "--out", "g.dot", cwd=tmp_path)
    assert (status, out) == (2, "")
    assert err == ("microgd: error: EXPR's graph has 600 nodes, more than --max-nodes 500: a picture that large is "
                   "hard to read; draw a smaller expression, or add --max-nodes 600\n")
    status, out, err = run("graph", sum_of_600, "--var", "x=1", "--out", "g.dot", "--max-nodes", "600", cwd=tmp_path)
    assert (status, err) == (0, "") and "d/dx = 600" in out
    assert (tmp_path / "g.dot").read_text().startswith("digraph")
    status, _, err = run("graph", "x", "--var", "x=1", "--max-nodes", "0", cwd=tmp_path)
    assert status == 2 and "--max-nodes: '0' must be at least 1" in err


@pytest.mark.parametrize("out", ["g.svg", "g.html"])
def test_a_renderer_that_hangs_is_stopped_and_the_message_says_how_to_allow_more(tmp_path, monkeypatch, out):
    programs = tmp_path / "bin"
    programs.mkdir()
    dot = programs / "dot"
    dot.write_text(f"#!/bin/sh\n{sys.executable} -c 'import time; time.sleep(600)' & exec {sys.executable} -c "
                   "'import time; time.sleep(600)'\n")
    dot.chmod(0o755)
    monkeypatch.setenv("PATH", f"{programs}{os.pathsep}{os.environ['PATH']}")
    status, stdout, stderr = run("graph", "x * x", "--var", "x=3", "--out", out, "--timeout", "0.5", cwd=tmp_path)
    assert (status, stdout) == (2, "")
    assert stderr == (f"microgd: error: {dot} took more than 0.5 s to lay out EXPR's graph and was stopped: "
                      "draw a smaller graph, or allow more time with --timeout 1\n")
    assert not (tmp_path / out).exists()
    status, _, err = run("graph", "x", "--var", "x=1", "--timeout", "0", cwd=tmp_path)
    assert status == 2 and "--timeout: '0' must be above 0 seconds" in err


def test_a_renderer_failing_in_the_demo_is_one_line(tmp_path, monkeypatch, capsys):
    programs = tmp_path / "bin"
    programs.mkdir()
    (programs / "dot").write_text("#!/bin/sh\necho 'Error: out of memory' >&2\nexit 1\n")
    (programs / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", str(programs))
    assert cli.main(["demo", "--out", str(tmp_path / "out"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("microgd: error: ") and "could not render svg: Error: out of" in err
