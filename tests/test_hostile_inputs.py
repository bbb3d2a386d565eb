"""Hostile inputs at the edges: names that would drive the terminal, bytes that are not UTF-8, plot text that
matplotlib would read as mathematics, and files or options that ask for more than microgd builds. Each is one
line on stderr and exit status 2 when it is a mistake, and shown escaped when it is only a name."""

import json
import tracemalloc
import xml.etree.ElementTree as ET

import pytest
from test_cli import run

from microgd.app.modelfile import MAX_PARAMETERS, NetworkTooLarge, StateError, load_model
from microgd.app.pipeline import prepare_training
from microgd.table import table, visible

HOSTILE = "\x1b]0;owned\x07\x1b[2J"  # retitles the terminal, then clears it
SHOWN = r"\x1b]0;owned\x07\x1b[2J"
NOT_UTF8 = "x\udcff"  # how Python hands over the argument x\xff (surrogateescape)


def harmless(text):
    """Nothing in ``text`` but printable characters and line ends: a terminal shows it, it does not obey it."""
    return all(c == "\n" or c.isprintable() for c in text)


def one_error_line(status, out, err):
    return status == 2 and len(err.splitlines()) == 1 and err.startswith("microgd") and "Traceback" not in err


# -- control characters from files and arguments are shown, never sent to the terminal -------------

def test_visible_escapes_what_a_terminal_would_obey_and_keeps_the_rest():
    assert visible(f"price{HOSTILE}") == f"price{SHOWN}"
    assert visible("a\nb\tc\u202ed\udcff") == r"a\nb\tc\u202ed\udcff"
    assert visible("σ(w·x) ∂f/∂w C:\\data") == "σ(w·x) ∂f/∂w C:\\data"
    assert table((HOSTILE, "b"), [("x\ny", 1)]) == f"  {SHOWN}  b\n  x\\ny{' ' * (len(SHOWN) - 4)}  1"


@pytest.fixture
def hostile(tmp_path):
    """A CSV file whose name and column names hold terminal commands, and a model trained on it."""
    data = tmp_path / f"data{HOSTILE}.csv"
    data.write_text(f"in{HOSTILE},out{HOSTILE}\n0,0\n1,1\n2,4\n")
    training = prepare_training(data, f"out{HOSTILE}", seed=0)
    training.fit(epochs=1, verbose=False)
    training.save(tmp_path / f"model{HOSTILE}.json")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    return tmp_path


COMMANDS = {
    "train": ["train", f"data{HOSTILE}.csv", "--target", f"out{HOSTILE}", "--epochs", "1",
              "--save", f"new{HOSTILE}.json"],
    "train: unknown target": ["train", f"data{HOSTILE}.csv", "--target", HOSTILE],
    "predict": ["predict", f"model{HOSTILE}.json", f"data{HOSTILE}.csv", "--out", f"p{HOSTILE}.csv"],
    "predict: column missing": ["predict", f"model{HOSTILE}.json", "other.csv"],
    "graph": ["graph", "x*x", "--var", "x=1", "--out", f"g{HOSTILE}.dot"],
    "graph: EXPR": ["graph", f"x{HOSTILE}", "--var", "x=1", "--out", "g.dot"],
    "explain: --wrt": ["explain", "x*x", "--var", "x=1", "--wrt", HOSTILE],
    "check: --wrt": ["check", "x*x", "--formula", "2*x", "--wrt", HOSTILE],
    "check: --formula": ["check", "x*x", "--formula", f"2*x{HOSTILE}"],
    "an unknown argument": ["explain", "x", "--var", "x=1", HOSTILE],
    "a bad option value": ["train", f"data{HOSTILE}.csv", "--target", "y", "--epochs", HOSTILE],
    "demo": ["demo", "--out", f"out{HOSTILE}", "--epochs", "1"],
}


@pytest.mark.parametrize("args", COMMANDS.values(), ids=COMMANDS.keys())
def test_names_from_files_and_arguments_are_shown_escaped(hostile, args):
    status, out, err = run(*args, cwd=hostile)
    assert harmless(out) and harmless(err), (out, err)
    assert r"\x1b" in out + err  # shown escaped (a syntax error shows only the first)
    assert status == 0 or one_error_line(status, out, err)


# -- bytes that are not UTF-8 ------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["explain", NOT_UTF8], ["graph", NOT_UTF8, "--var", "x=1"],
                                  ["check", "x", "--formula", NOT_UTF8]])
def test_a_formula_that_is_not_utf8_text_is_one_line(tmp_path, args):
    status, out, err = run(*args, cwd=tmp_path)
    assert one_error_line(status, out, err)
    assert "formula holds the byte 0xff (not UTF-8 text) at column 2" in err and harmless(err)


def test_a_file_name_that_is_not_utf8_prints_on_a_strict_utf8_terminal(tmp_path):
    (tmp_path / f"{NOT_UTF8}.csv").write_text("a,b\n0,0\n1,1\n2,4\n")
    status, out, _ = run("train", f"{NOT_UTF8}.csv", "--target", "b", "--epochs", "1", cwd=tmp_path)
    assert status == 0 and r"x\udcff.csv: 3 rows" in out
    out.encode("utf-8")  # what a UTF-8 terminal (errors="strict") takes: no lone surrogate


def test_plot_text_is_drawn_as_it_is_never_as_mathematics(tmp_path):
    name = r"$\frac$ costs.csv"
    (tmp_path / name).write_text("a,b\n0,0\n1,1\n2,4\n")
    status, _, err = run("train", name, "--target", "b", "--epochs", "2", "--save", "m.json", "--plot", "loss.svg",
                         cwd=tmp_path)
    assert (status, err) == (0, "") and (tmp_path / "m.json").exists()
    texts = {t.text for t in ET.parse(tmp_path / "loss.svg").getroot().iter("{http://www.w3.org/2000/svg}text")}
    assert f"{name}: mean loss per epoch" in texts


# -- sizes a file or an option asks for are bounded before anything is built --------------------------

@pytest.mark.parametrize("hidden, parameters", [("100000000", "at least 300,000,001"),
                                                ("2000,2000", "at least 4,008,001")])
def test_train_refuses_a_network_beyond_the_bound_before_reading_anything(tmp_path, hidden, parameters):
    status, out, err = run("train", "missing.csv", "--target", "y", "--hidden", hidden, cwd=tmp_path)
    assert one_error_line(status, out, err) and out == ""
    assert (f"argument --hidden: {hidden!r} asks for a network of {parameters} parameters, more than microgd "
            f"builds ({MAX_PARAMETERS:,})") in err


def test_train_refuses_a_network_that_the_files_columns_make_too_large(tmp_path):
    (tmp_path / "wide.csv").write_text(",".join(f"x{i}" for i in range(600)) + ",y\n" + ",".join(["0"] * 601)
                                       + "\n" + ",".join(["1"] * 601) + "\n")
    status, out, err = run("train", "wide.csv", "--target", "y", "--hidden", "2000", cwd=tmp_path)
    assert one_error_line(status, out, err) and out == ""
    assert ("--hidden 2000: the network 600-2000-1 would have 1,204,001 parameters, more than microgd builds "
            f"({MAX_PARAMETERS:,})") in err
    with pytest.raises(NetworkTooLarge, match=r"^the network 600-2000-1 would have 1,204,001 "):
        prepare_training(tmp_path / "wide.csv", "y", hidden=[2000])


def refused(path, pattern):
    """The most memory Python allocated (tracemalloc) while load_model refused ``path`` with a StateError."""
    tracemalloc.start()
    try:
        with pytest.raises(StateError, match=pattern):
            load_model(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def model_text(sizes, weights):
    return json.dumps({"format": "microgd-mlp", "version": 1, "sizes": sizes,
                       "activations": ["sigmoid"] * (len(sizes) - 1), "weights": weights}, separators=(",", ":"))


def test_a_model_file_asking_for_a_huge_network_is_refused_at_a_cost_in_proportion_to_its_size(tmp_path):
    """1.5 million weights written as 0 fit in 3 MiB; a Value each took 481 MB and 18 s to build."""
    path = tmp_path / "huge.json"
    path.write_text(model_text([1000, 1500, 1], [[[0] * 1001] * 1500, [[0] * 1501]]))
    size = path.stat().st_size
    assert size < 3 * 2**20
    assert refused(path, rf"huge.json: the network 1000-1500-1 has 1,503,001 parameters, more than microgd builds "
                         rf"\({MAX_PARAMETERS:,}\)") < 8 * size
    status, out, err = run("predict", "huge.json", "data.csv", cwd=tmp_path)
    assert one_error_line(status, out, err) and "1,503,001 parameters" in err


def test_a_model_file_of_more_lists_or_values_than_a_network_in_bounds_has_is_refused_before_parsing(tmp_path):
    path = tmp_path / "lists.json"
    path.write_text(model_text([1, 1], [[[0, 0]], *[[]] * (MAX_PARAMETERS + 100)]))
    assert refused(path, r"lists.json: holds more lists than a network of at most 1,000,000 ") < 8 * path.stat().st_size
    path.write_text(model_text([1, 1], [[[0, 0]], [0] * 5 * MAX_PARAMETERS]))
    assert refused(path, r"lists.json: holds more values than a model of at most 1,000,000 ") < 8 * path.stat().st_size
