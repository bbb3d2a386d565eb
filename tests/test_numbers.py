"""One rule for every number a user reads (microgd.table.number): 6 significant digits for what microgd computes,
the user's own numbers echoed as written (70, not 70.0), pictures at their fixed number_format, and never a
negative zero; train and predict print the same numbers the same way; the activations train offers."""

import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgd import Value
from microgd.app import cli
from microgd.app.pipeline import HIDDEN_ACTIVATIONS, OUTPUT_ACTIVATIONS, output_activation, prepare_training
from microgd.nn import MLP
from microgd.stepper import backprop_page
from microgd.table import number
from microgd.viz import draw_dot, draw_graph, draw_mlp

TABLE_CSV = "I0,I1,Z0\n70,98,91\n50,85,82\n65,67,80\n25,95,68\n"
NEGATIVE_ZERO = re.compile(r"(?<![\w.])-0(\.0*)?(?![\d.])|-0\.0+e")  # -0, -0.0000, -0.00e+00: not -0.5


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- the rule --

def test_computed_numbers_have_six_significant_digits_and_no_sign_on_zero():
    assert number(85.53712351780982) == "85.5371" == format(85.53712351780982, ".6g")
    assert [number(x) for x in (-0.0, 0.0, -1e-300, 70.0, 1234567.0)] == ["0", "0", "-1e-300", "70", "1.23457e+06"]
    assert [number(x, ".4f") for x in (-0.0, -0.00004, -0.00005001, 2.0)] == ["0.0000", "0.0000", "-0.0001", "2.0000"]
    assert number(-1e-9, "+.3f") == "+0.000" and number(-0.0, ".2e") == "0.00e+00"
    assert number(-0.0, "8.2f") == "    0.00"
    assert [number(x, ".4f") for x in (math.inf, -math.inf)] == ["inf", "-inf"]


def test_the_users_numbers_are_echoed_exactly():
    assert [number(x, None) for x in (70.0, 1e2, 0.5, -0.0, 0.1 + 0.2, 1e300, -7.0)] == \
        ["70", "100", "0.5", "0", "0.30000000000000004", "1e+300", "-7"]


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_an_echoed_number_reads_back_as_the_same_float(x):
    assert float(number(x, None)) == x
    assert not number(x, None).startswith("-0") or number(x, None).startswith("-0.")


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e-3, max_value=1e-3),
       st.sampled_from([".4f", ".2f", ".6g", ".3g", ".2e", "g", ".17g"]))
def test_no_format_ever_shows_a_negative_zero(x, spec):
    text = number(x, spec)
    assert not NEGATIVE_ZERO.search(text), text
    assert float(text) == pytest.approx(float(format(x, spec)), abs=0)  # only the sign of a zero changes


# -- pictures --

def tiny_negatives():
    """An expression whose values, local derivatives and grads include -0.0 and negatives that round to zero."""
    x = Value(-1e-9, label="x")
    z = Value(-0.0, label="z")
    w = Value(3.0, label="w")
    y = (x * w + z * w).tanh() * Value(-1e-7, label="scale")
    y.label = "y"
    y.backward()
    return y


@pytest.mark.parametrize("draw", [draw_graph, draw_dot, lambda root: backprop_page(root)], ids=["graph", "dot", "page"])
def test_pictures_never_show_a_negative_zero(draw):
    root = tiny_negatives()
    picture = draw(root)
    text = picture.source if hasattr(picture, "source") else picture.html
    assert "0.0000" in text and "-0.0000" not in text and not NEGATIVE_ZERO.search(text)
    if draw is draw_graph:
        assert "-0.00e+00" not in draw_graph(root, number_format=".2e").source


def test_the_mlp_picture_never_shows_a_negative_zero():
    model = MLP(2, [2, 1], weights=[[[-1e-9, -0.0, -0.001], [0.5, -0.004, 0.0]], [[-0.0, 1e-12, -1e-5]]])
    (model([1.0, -1.0]) - 1.0).backward()
    source = draw_mlp(model, show_grad=True).source
    assert "0.00" in source and "-0.00" not in source


# -- the command line --

def test_train_and_predict_print_the_same_numbers_the_same_way(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "table.csv").write_text(TABLE_CSV)
    status, trained, _ = run(capsys, "train", "table.csv", "--target", "Z0", "--epochs", "50", "--lr", "1",
                             "--save", "model.json")
    assert status == 0 and "learning rate 1," in trained  # as typed, not 1.0
    status, predicted, _ = run(capsys, "predict", "model.json", "table.csv", "--out", "out.csv")
    assert status == 0
    train_rows = re.findall(r"^  (\S+)  +(\S+)$", trained, re.M)[1:]
    predict_rows = [row.split()[1:3] for row in predicted.splitlines() if re.match(r"^  \d+ ", row)]
    assert [list(row) for row in train_rows] == predict_rows
    assert [t for t, _ in train_rows] == ["91", "82", "80", "68"]  # 70 stays 70: no 91.0
    for _, p in train_rows:
        assert p == format(float(p), ".6g") and len(p.replace(".", "")) <= 6
    rmse_train = re.search(r"training rows: (\S+)", trained).group(1)
    assert f"against the file's Z0: {rmse_train}" in predicted
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "I0,I1,Z0,prediction" and [line.rsplit(",", 1)[0] for line in lines[1:]] == \
        ["70,98,91", "50,85,82", "65,67,80", "25,95,68"]
    assert "70.0" not in trained + predicted + "".join(lines)


def test_graph_prints_a_zero_without_a_sign(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, out, _ = run(capsys, "graph", "x*y", "--var", "x=70", "--var", "y=-0.0", "--out", "g.dot")
    assert status == 0 and "x*y = 0\n" in out and "d/dx = 0\n" in out and "d/dy = 70\n" in out
    assert "-0" not in out and "-0.0000" not in (tmp_path / "g.dot").read_text()


# -- activations --

def test_train_offers_only_activations_that_train(tmp_path, monkeypatch, capsys):
    assert HIDDEN_ACTIVATIONS == ("sigmoid", "tanh", "relu", "softplus", "abs", "linear")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "table.csv").write_text(TABLE_CSV)
    for bad in ("log", "exp", "neg", "step", "sign"):
        status, out, err = run(capsys, "train", "table.csv", "--target", "Z0", "--activation", bad)
        assert status == 2 and out == "" and err.count("\n") == 1
        assert f"invalid choice: '{bad}' (choose from 'sigmoid', 'tanh', 'relu', 'softplus', 'abs', 'linear')" in err
        with pytest.raises(ValueError, match=f"hidden activation must be one of .*, got '{bad}'"):
            prepare_training(tmp_path / "table.csv", "Z0", activation=bad)
    assert cli.main(["train", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "hidden layers: sigmoid, tanh, relu, softplus, abs, linear (default: sigmoid)" in help_text
    assert "--output-activation NAME activation of the output unit: linear, sigmoid, tanh (default: the one whose " \
           "range is the scaled target's: sigmoid for --normalize 0-1, tanh for --normalize -1-1)" in help_text
    assert "log" not in help_text


@pytest.mark.parametrize("options, output, said", [
    ((), "sigmoid", "output sigmoid (the default for --normalize 0-1; change it with --output-activation)"),
    (("--normalize", "-1-1"), "tanh", "output tanh (the default for --normalize -1-1; change it with"),
    (("--output-activation", "linear"), "linear", "output linear (--output-activation)"),
    (("--output-activation", "tanh"), "tanh", "output tanh (--output-activation)"),
    (("--normalize", "-1-1", "--output-activation", "linear"), "linear", "output linear (--output-activation)"),
])
def test_the_output_activation_is_chosen_said_and_saved(options, output, said, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "table.csv").write_text(TABLE_CSV)
    status, out, _ = run(capsys, "train", "table.csv", "--target", "Z0", "--epochs", "5", "--activation", "relu",
                         "--save", "m.json", *options)
    assert status == 0 and f"activations: hidden relu, {said}" in out
    assert json.loads((tmp_path / "m.json").read_text())["activations"] == ["relu", output]
    status, out, _ = run(capsys, "predict", "m.json", "table.csv")
    assert status == 0 and f"m.json: MLP 2-3-1 (relu, {output})" in out


def test_an_output_that_cannot_reach_the_scaled_target_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "table.csv").write_text(TABLE_CSV)
    status, out, err = run(capsys, "train", "table.csv", "--target", "Z0", "--normalize", "-1-1",
                           "--output-activation", "sigmoid", "--save", "m.json")
    assert (status, out) == (2, "") and err == (
        "microgd: error: --output-activation sigmoid gives values in (0, 1) only, but --normalize -1-1 scales the "
        "target to [-1, 1]: part of it could never be predicted; use tanh or linear, or --normalize 0-1\n")
    assert not (tmp_path / "m.json").exists()
    assert output_activation("0-1", "tanh") == "tanh"  # (-1, 1) covers [0, 1]
    with pytest.raises(ValueError, match="output activation must be one of linear, sigmoid, tanh, got 'relu'"):
        output_activation("0-1", "relu")
    assert set(OUTPUT_ACTIVATIONS) == {"linear", "sigmoid", "tanh"}


def test_a_model_file_from_before_the_option_still_loads_and_predicts(tmp_path, monkeypatch, capsys):
    """Files have always recorded every layer's activation, the output's last: nothing new to read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "table.csv").write_text(TABLE_CSV)
    old = {"format": "microgd-mlp", "version": 1, "sizes": [2, 1, 1], "activations": ["sigmoid", "sigmoid"],
           "weights": [[[0.5, -0.5, 0.1]], [[1.0, 0.0]]],
           "scaling": {"inputs": {"feature_range": [0.0, 1.0], "data_min_": [25.0, 67.0], "data_max_": [70.0, 98.0]},
                       "target": {"feature_range": [0.0, 1.0], "data_min_": [68.0], "data_max_": [91.0]}},
           "columns": {"inputs": ["I0", "I1"], "target": "Z0"}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    status, out, _ = run(capsys, "predict", "old.json", "table.csv")
    assert status == 0 and "old.json: MLP 2-1-1 (sigmoid, sigmoid)" in out
