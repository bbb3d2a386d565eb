"""microgd.app.pipeline, called directly (train and predict on CSV files, their errors), then through
`microgd train --save` and `microgd predict` (cli.main, in this process)."""

import contextlib
import io
import json
import math
import os
import re
import warnings

import pytest

from microgd.app import cli
from microgd.app.modelfile import Columns, Scaling, load_model, save_model
from microgd.app.pipeline import DataError, describe, predict_csv, prepare_training, rmse
from microgd.data import MinMaxScaler
from microgd.nn import MLP

TABLE_CSV = "I0,I1,Z0\n70,98,91\n50,85,82\n65,67,80\n25,95,68\n"
X, Y = [[70, 98], [50, 85], [65, 67], [25, 95]], [91, 82, 80, 68]


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text(TABLE_CSV)
    return path


def by_hand(path, inputs):
    """A saved model's predictions in the target's units, scaling with the file's numbers by hand."""
    state = json.loads(path.read_text())
    model = load_model(path).model
    x_state, y_state = state["scaling"]["inputs"], state["scaling"]["target"]
    lo, hi = x_state["feature_range"]
    out = []
    for row in inputs:
        bounds = zip(row, x_state["data_min_"], x_state["data_max_"])
        scaled = [lo + (x - a) / (b - a) * (hi - lo) for x, a, b in bounds]
        (a,), (b,) = y_state["data_min_"], y_state["data_max_"]
        lo_y, hi_y = y_state["feature_range"]
        out.append(a + (model(scaled).data - lo_y) / (hi_y - lo_y) * (b - a))
    return out


# -- prepare_training and Training ----------------------------------------------------------------

@pytest.mark.parametrize("normalize, output, low", [("0-1", "sigmoid", 0.0), ("-1-1", "tanh", -1.0)])
def test_prepare_training_scales_every_column_and_builds_the_model(table, normalize, output, low):
    training = prepare_training(table, "Z0", hidden=[4, 2], activation="relu", normalize=normalize, seed=3)
    assert (training.X, training.y, training.columns) == (X, Y, Columns(["I0", "I1"], "Z0"))
    assert training.scaling.inputs.transform(X)[3] == [low, pytest.approx(low + (1 - low) * 28 / 31)]
    assert training.scaling.target.transform([91.0, 68.0]) == [1.0, low]
    assert training.model.sizes == [2, 4, 2, 1] and training.model.activations == ["relu", "relu", output]
    assert training.model.state_dict() == prepare_training(table, "Z0", hidden=[4, 2], activation="relu",
                                                           normalize=normalize, seed=3).model.state_dict()
    assert describe(training.model) == f"MLP 2-4-2-1 (relu, relu, {output})"


def test_training_predicts_in_the_targets_units_and_saves_what_predict_needs(table, tmp_path):
    training = prepare_training(table, "Z0", seed=0)
    history = training.fit(epochs=200, lr=0.5, seed=0, verbose=False)
    assert len(history) == 200 and history[-1] < history[0]
    scaled = [training.model(row).data for row in MinMaxScaler().fit_transform(X)]
    predictions = training.predictions()
    assert predictions == pytest.approx(MinMaxScaler().fit(Y).inverse_transform(scaled), rel=1e-12)
    assert rmse(predictions, Y) == pytest.approx(math.sqrt(sum((p - t) ** 2 for p, t in zip(predictions, Y)) / 4))
    training.save(tmp_path / "model.json")
    loaded = load_model(tmp_path / "model.json")
    assert loaded.columns == training.columns and loaded.model.state_dict() == training.model.state_dict()
    assert by_hand(tmp_path / "model.json", X) == pytest.approx(predictions, rel=1e-12)


BAD_TRAINING = {
    "constant input": ("a,b\n1,2\n1,3\n", "b", {}, "bad.csv: column 'a' is constant (1): nothing to learn from"),
    "constant target": ("a,b\n1,2\n2,2\n", "b", {}, "bad.csv: column 'b' is constant (2): nothing to learn"),
    "no inputs": ("b\n1\n2\n", "b", {}, "bad.csv: no input columns besides the target 'b'"),
    "names alike": ("a,a,y\n1,2,3\n2,1,4\n", "y", {"distinct_names": True}, "bad.csv: 'a' names two columns"),
    "unknown target": ("a,b\n1,2\n2,3\n", "c", {}, "bad.csv: target 'c' is not a column (columns: a, b)"),
    "not a number": ("a,b\n1,2\n2,x\n", "b", {}, "bad.csv line 3: column 'b': 'x' is not a number"),
}


@pytest.mark.parametrize("text, target, options, message", BAD_TRAINING.values(), ids=BAD_TRAINING.keys())
def test_a_file_that_cannot_be_trained_on_is_a_data_error(tmp_path, text, target, options, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DataError) as caught:
        prepare_training(tmp_path / "bad.csv", target, **options)
    assert str(caught.value).startswith(str(tmp_path / message))


def test_repeated_names_train_when_the_model_is_not_saved(tmp_path):
    (tmp_path / "alike.csv").write_text("a,a,y\n1,2,3\n2,1,4\n")
    assert prepare_training(tmp_path / "alike.csv", "y").columns == Columns(["a", "a"], "y")


# -- predict_csv -----------------------------------------------------------------------------------

@pytest.fixture
def saved(table, tmp_path):
    """A model trained on the table and saved with its scaling and columns, and its training."""
    training = prepare_training(table, "Z0", normalize="-1-1", seed=0)
    training.fit(epochs=50, lr=0.5, seed=0, verbose=False)
    training.save(tmp_path / "model.json")
    return tmp_path / "model.json", training


def test_predict_csv_gives_the_trained_models_predictions_and_error(saved, table):
    path, training = saved
    result = predict_csv(path, table)
    assert result.predictions == pytest.approx(training.predictions(), rel=1e-12)
    assert (result.inputs, result.target, result.truth, result.notes) == (["I0", "I1"], "Z0", Y, [])
    assert result.rmse == rmse(result.predictions, Y)
    assert result.model.state_dict() == training.model.state_dict()


def test_predict_csv_finds_columns_by_name_and_writes_a_prediction_column(saved, tmp_path):
    path, _ = saved
    (tmp_path / "new.csv").write_text("note,I1,I0\n7,90,60\n8,70,30\n")
    result = predict_csv(path, tmp_path / "new.csv")
    assert result.predictions == pytest.approx(by_hand(path, [[60, 90], [30, 70]]), rel=1e-12)
    assert (result.target, result.truth, result.rmse) == (None, None, None)
    lines = result.csv().splitlines()
    assert lines[0] == "note,I1,I0,prediction"
    assert [float(c) for c in lines[2].split(",")] == [8, 70, 30, result.predictions[1]]


def test_a_model_without_scaling_or_columns_predicts_on_raw_inputs_and_says_so(tmp_path):
    model = MLP(2, [2, 1], activations=["tanh", "linear"], seed=3)
    save_model(model, tmp_path / "old.json")
    (tmp_path / "raw.csv").write_text("a,b,c\n0.5,-1,9\n2,0.25,9\n")
    result = predict_csv(tmp_path / "old.json", tmp_path / "raw.csv")
    assert result.inputs == ["a", "b"] and result.predictions == [model([0.5, -1]).data, model([2, 0.25]).data]
    assert [note.split(": ")[1] for note in result.notes] == ["its inputs are the file's first 2",
                                                              "the raw inputs go in, the raw outputs come out"]


BAD_PREDICTION = {
    "missing input column": ("I1,Z0\n98,91\n", None,
                             "new.csv has no column 'I0' (the model's inputs: I0, I1; the file's columns: I1, Z0)"),
    "input column twice": ("I0,I1,I1\n70,98,98\n", None, "new.csv has more than one column 'I1'"),
    "not a number": ("I0,I1\n70,98\n50,x\n", None, "new.csv line 3: column 'I1': 'x' is not a number"),
    "too few columns": ("a\n1\n", MLP(2, [1], seed=0), "new.csv: 1 columns, but the model takes 2 inputs"),
    "two outputs": ("a,b\n1,2\n", MLP(2, [2], seed=0), "model.json: the model has 2 outputs; predicting needs"),
}


@pytest.mark.parametrize("text, model, message", BAD_PREDICTION.values(), ids=BAD_PREDICTION.keys())
def test_a_file_that_does_not_fit_the_model_is_a_data_error(saved, tmp_path, text, model, message):
    path, _ = saved
    if model is not None:
        save_model(model, path)
    (tmp_path / "new.csv").write_text(text)
    with pytest.raises(DataError) as caught:
        predict_csv(path, tmp_path / "new.csv")
    assert str(caught.value).startswith(str(tmp_path / message))


def test_a_malformed_model_file_is_a_data_error_naming_file_and_key(saved, table):
    path, _ = saved
    state = json.loads(path.read_text())
    state["scaling"]["inputs"]["data_max_"][1] = "98"
    path.write_text(json.dumps(state))
    with pytest.raises(DataError, match=re.escape(f"{path}: scaling.inputs: data_max_[1] must be a finite number")):
        predict_csv(path, table)


# -- the command line ----------------------------------------------------------------------------

def run(*args, cwd):
    """Run the ``microgd`` command (cli.main, in this process) in `cwd`; (exit status, stdout, stderr). A warning
    goes to stderr as a fresh Python's default filters would print it (as tests/test_cli.py's run does)."""
    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            warnings.resetwarnings()
            warnings.filterwarnings("default", category=DeprecationWarning, module="__main__", append=True)
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category, append=True)
            status = cli.main(list(args))
    finally:
        os.chdir(previous)
    for w in caught:
        err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
    return status, out.getvalue(), err.getvalue()


def table_rows(stdout):
    """The printed table's rows after its header, as lists of cells."""
    return [line.split() for line in stdout.splitlines() if re.match(r"^\s+\d+\s", line)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder with table.csv and model.json trained on it by `microgd train --save`, and train's stdout."""
    folder = tmp_path_factory.mktemp("trained")
    (folder / "table.csv").write_text(TABLE_CSV)
    status, out, err = run("train", "table.csv", "--target", "Z0", "--epochs", "200", "--normalize", "-1-1",
                           "--save", "model.json", cwd=folder)
    assert (status, err) == (0, "")
    return folder, out


def test_train_saves_scalers_and_columns(trained):
    folder, _ = trained
    state = json.loads((folder / "model.json").read_text())
    assert state["columns"] == {"inputs": ["I0", "I1"], "target": "Z0"}
    assert state["scaling"] == {
        "inputs": {"feature_range": [-1.0, 1.0], "data_min_": [25.0, 67.0], "data_max_": [70.0, 98.0]},
        "target": {"feature_range": [-1.0, 1.0], "data_min_": [68.0], "data_max_": [91.0]}}
    assert (state["format"], state["version"]) == ("microgd-mlp", 1)


def test_predict_round_trip_in_the_targets_units(trained):
    folder, train_out = trained
    status, out, err = run("predict", "model.json", "table.csv", cwd=folder)
    assert (status, err) == (0, "")
    expected = by_hand(folder / "model.json", X)
    rows = table_rows(out)
    assert [r[:2] for r in rows] == [["1", "91"], ["2", "82"], ["3", "80"], ["4", "68"]]
    assert [float(r[2]) for r in rows] == [pytest.approx(e, rel=1e-5) for e in expected]  # 6 significant digits
    assert [float(r[3]) for r in rows] == [pytest.approx(e - t, abs=1e-4) for e, t in zip(expected, Y)]
    assert all(r[3][0] in "+-" for r in rows)
    rmse_printed = re.search(r"root mean squared error against the file's Z0: (\S+)", out).group(1)
    assert float(rmse_printed) == pytest.approx(rmse(expected, Y), rel=1e-5)
    # the same numbers, printed the same way, as train printed for the model it had just trained
    shown = re.findall(r"^\s+(\d+)\s+(\S+)$", train_out, re.M)
    assert shown == [(r[1], r[2]) for r in rows]
    assert f"root mean squared error on the training rows: {rmse_printed} " in train_out
    assert "model.json: MLP 2-3-1 (sigmoid, tanh), inputs I0, I1" in out
    assert "scaling" not in out  # no note: the model carries its scaling


def test_predict_columns_in_any_order_without_target_and_out_csv(trained):
    folder, _ = trained
    (folder / "new.csv").write_text("note,I1,I0\n7,90,60\n8,70,30\n9,110,80\n")  # 110, 80: beyond training
    status, out, err = run("predict", "model.json", "new.csv", "--out", "predictions.csv", cwd=folder)
    assert (status, err) == (0, "")
    expected = by_hand(folder / "model.json", [[60, 90], [30, 70], [80, 110]])
    rows = table_rows(out)
    assert [r[0] for r in rows] == ["1", "2", "3"] and all(len(r) == 2 for r in rows)  # no target: no error
    assert [float(r[1]) for r in rows] == [pytest.approx(e, rel=1e-5) for e in expected]
    assert "root mean squared error" not in out and "wrote predictions.csv" in out
    lines = (folder / "predictions.csv").read_text().splitlines()
    assert lines[0] == "note,I1,I0,prediction"
    assert [line.rsplit(",", 1)[0] for line in lines[1:]] == ["7,90,60", "8,70,30", "9,110,80"]  # as written
    cells = [[float(c) for c in line.split(",")] for line in lines[1:]]
    assert [c[3] for c in cells] == [pytest.approx(e, abs=1e-9) for e in expected]


def test_a_model_without_scaling_predicts_on_raw_inputs_and_says_so_once(tmp_path):
    model = MLP(2, [2, 1], activations=["tanh", "linear"], seed=3)
    save_model(model, tmp_path / "old.json")
    (tmp_path / "raw.csv").write_text("a,b,c\n0.5,-1,9\n2,0.25,9\n")
    status, out, err = run("predict", "old.json", "raw.csv", cwd=tmp_path)
    assert (status, err) == (0, "")
    assert len([line for line in out.splitlines() if "no scaling" in line]) == 1
    assert "the file's first 2" in out
    assert [r[1] for r in table_rows(out)] == [format(model([0.5, -1]).data, ".6g"),
                                               format(model([2, 0.25]).data, ".6g")]


BAD_INPUT = {
    "malformed model": (["predict", "bad.json", "table.csv"],
                        r"bad.json: scaling.inputs: data_max_\[1\] must be a finite number, got '98'"),
    "missing input column": (
        ["predict", "model.json", "missing.csv"],
        r"missing.csv has no column 'I0' \(the model's inputs: I0, I1; the file's columns: I1, Z0\)"),
    "not a number": (["predict", "model.json", "words.csv"], "words.csv line 3: column 'I1': 'x' is not a number"),
    "no model": (["predict", "none.json", "table.csv"], "none.json"),
    "out over data": (["predict", "model.json", "table.csv", "--out", "./table.csv"],
                      "--out './table.csv' is the same file as DATA.csv 'table.csv': it would be overwritten"),
    "out a folder": (["predict", "model.json", "table.csv", "--out", "sub.csv"], "--out 'sub.csv' is a folder"),
    "train: save over data": (["train", "table.csv", "--target", "Z0", "--save", "table.csv"],
                              "--save 'table.csv' is the same file as DATA.csv 'table.csv'"),
    "out suffix": (["predict", "model.json", "table.csv", "--out", "p.txt"], "the suffix must be one of .csv"),
    "out column exists": (["predict", "model.json", "predicted.csv", "--out", "p.csv"],
                          "predicted.csv already has a column 'prediction'"),
    "train: --save with two names alike": (["train", "alike.csv", "--target", "y", "--save", "m.json"],
                                           "alike.csv: 'a' names two columns"),
    # hostile inputs: each was a traceback, a wrong message or a memory without bound
    "model nested 100,000 deep": (["predict", "nested.json", "table.csv"],
                                  r"^microgd: error: nested.json: nested too deeply to be a model"),
    "model with a 5,000-digit integer": (["predict", "long.json", "table.csv"],
                                         r"long.json: an integer of 5000 digits \(11111111111111111111...\), larger"),
    "model from /dev/zero": (["predict", "/dev/zero", "table.csv"],
                             r"/dev/zero: larger than 64 MiB, more than microgd reads \(an endless input"),
    "predict: data from /dev/zero": (["predict", "model.json", "/dev/zero"], r"/dev/zero: larger than 64 MiB"),
    "train: data from /dev/zero": (["train", "/dev/zero", "--target", "y"], r"/dev/zero: larger than 64 MiB"),
    "train: a column spanning ±1e308": (["train", "wide.csv", "--target", "y"],
                                        r"wide.csv: column 'a': it spans -1e\+308 to 1e\+308, wider than a float"),
    "predict: inputs far outside the training range": (
        ["predict", "narrow.json", "far.csv"],
        r"far.csv row 2: column 'a': 1e\+308 is inf once scaled, beyond the float range \(fitted on \[0.0, 0.5\]\)"),
    "predict: a model that overflows": (["predict", "huge.json", "far.csv"],
                                        r"far.csv row 2: the model overflows on these inputs \(weighted_sum: "),
    "predict: a prediction beyond the float range": (
        ["predict", "linear.json", "quarter.csv"],
        r"quarter.csv row 1: the prediction in y's units is beyond the float range \(1e\+200 is inf once scaled"),
}


def hostile_files(folder):
    """The model and data files of the hostile cases."""
    (folder / "nested.json").write_text("[" * 100_000)
    (folder / "long.json").write_text('{"format": "microgd-mlp", "version": ' + "1" * 5000 + "}")
    (folder / "wide.csv").write_text("a,y\n-1e308,1\n1e308,2\n3,4\n")
    (folder / "far.csv").write_text("a\n0.25\n1e308\n")
    (folder / "quarter.csv").write_text("a\n0.25\n")
    narrow = Scaling(MinMaxScaler().fit([[0.0], [0.5]]), MinMaxScaler().fit([0.0, 1.0]))
    save_model(MLP(1, [1], seed=0), folder / "narrow.json", scaling=narrow, columns=Columns(["a"], "y"))
    save_model(MLP(1, [1], activations=["linear"], weights=[[[1e308, 0.0]]]), folder / "huge.json",
               columns=Columns(["a"], "y"))
    wide = Scaling(MinMaxScaler().fit([[0.0], [1.0]]), MinMaxScaler().fit([0.0, 1e300]))
    save_model(MLP(1, [1], activations=["linear"], weights=[[[4e200, 0.0]]]), folder / "linear.json", scaling=wide,
               columns=Columns(["a"], "y"))


@pytest.mark.parametrize("args, message", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_on_stderr(trained, args, message):
    folder, _ = trained
    state = json.loads((folder / "model.json").read_text())
    state["scaling"]["inputs"]["data_max_"][1] = "98"
    (folder / "bad.json").write_text(json.dumps(state))
    (folder / "missing.csv").write_text("I1,Z0\n98,91\n")
    (folder / "words.csv").write_text("I0,I1\n70,98\n50,x\n")
    (folder / "predicted.csv").write_text("I0,I1,prediction\n70,98,1\n")
    (folder / "alike.csv").write_text("a,a,y\n1,2,3\n2,1,4\n")
    (folder / "sub.csv").mkdir(exist_ok=True)
    hostile_files(folder)
    model = (folder / "model.json").read_text()
    status, out, err = run(*args, cwd=folder)
    assert (status, out) == (2, "")
    assert len(err.splitlines()) == 1 and re.search(message, err) and err.startswith("microgd: error: ")
    assert (folder / "table.csv").read_text() == TABLE_CSV and (folder / "model.json").read_text() == model
