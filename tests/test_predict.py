"""Saving a model with its data's scaling and column names, and `microgd predict` (run in a subprocess)."""

import json
import math
import re
import subprocess
import sys

import pytest

from microgd.data import MinMaxScaler
from microgd.nn import MLP, StateError

SEED_CSV = "I0,I1,Z0\n70,98,91\n50,85,82\n65,67,80\n25,95,68\n"


def run(*args, cwd):
    """Run ``python -m microgd``; (exit status, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "microgd", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    return done.returncode, done.stdout, done.stderr


def by_hand(path, inputs):
    """The saved model's predictions in the target's units, scaling with the file's numbers by hand."""
    state = json.loads(path.read_text())
    model = MLP.load(path)
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


def table_rows(stdout):
    """The printed table's rows after its header, as lists of cells."""
    return [line.split() for line in stdout.splitlines() if re.match(r"^\s+\d+\s", line)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder with seed.csv and model.json trained on it by `microgd train --save`, and train's stdout."""
    folder = tmp_path_factory.mktemp("trained")
    (folder / "seed.csv").write_text(SEED_CSV)
    status, out, err = run("train", "seed.csv", "--target", "Z0", "--epochs", "200", "--normalize", "-1-1",
                           "--save", "model.json", cwd=folder)
    assert (status, err) == (0, "")
    return folder, out


# -- the command line ----------------------------------------------------------------------------

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
    status, out, err = run("predict", "model.json", "seed.csv", cwd=folder)
    assert (status, err) == (0, "")
    X, y = [[70, 98], [50, 85], [65, 67], [25, 95]], [91, 82, 80, 68]
    expected = by_hand(folder / "model.json", X)
    rows = table_rows(out)
    assert [r[:2] for r in rows] == [["1", "91"], ["2", "82"], ["3", "80"], ["4", "68"]]
    assert [float(r[2]) for r in rows] == [pytest.approx(e, abs=1e-9) for e in expected]
    assert [float(r[3]) for r in rows] == [pytest.approx(e - t, abs=1e-5) for e, t in zip(expected, y)]
    rmse = math.sqrt(sum((e - t) ** 2 for e, t in zip(expected, y)) / 4)
    assert float(re.search(r"root mean squared error against the file's Z0: (\S+)", out).group(1)) == pytest.approx(
        rmse, rel=1e-5)
    # the same numbers train printed for the model it had just trained
    shown = [float(p) for p in re.findall(r"^\s+\d+\s+(\S+)$", train_out, re.M)]
    assert shown == [pytest.approx(e, rel=1e-5) for e in expected]
    assert "scaling" not in out  # no note: the model carries its scaling


def test_predict_columns_in_any_order_without_target_and_out_csv(trained):
    folder, _ = trained
    (folder / "new.csv").write_text("note,I1,I0\n7,90,60\n8,70,30\n9,110,80\n")  # 110, 80: beyond training
    status, out, err = run("predict", "model.json", "new.csv", "--out", "predictions.csv", cwd=folder)
    assert (status, err) == (0, "")
    expected = by_hand(folder / "model.json", [[60, 90], [30, 70], [80, 110]])
    rows = table_rows(out)
    assert [r[0] for r in rows] == ["1", "2", "3"] and all(len(r) == 2 for r in rows)  # no target: no error
    assert [float(r[1]) for r in rows] == [pytest.approx(e, abs=1e-9) for e in expected]
    assert "root mean squared error" not in out and "wrote predictions.csv" in out
    lines = (folder / "predictions.csv").read_text().splitlines()
    assert lines[0] == "note,I1,I0,prediction"
    cells = [[float(c) for c in line.split(",")] for line in lines[1:]]
    assert [c[:3] for c in cells] == [[7, 90, 60], [8, 70, 30], [9, 110, 80]]
    assert [c[3] for c in cells] == [pytest.approx(e, abs=1e-9) for e in expected]


def test_an_old_model_file_predicts_on_raw_inputs_and_says_so(tmp_path):
    model = MLP(2, [2, 1], activations=["tanh", "linear"], seed=3)
    model.save(tmp_path / "old.json")
    assert set(json.loads((tmp_path / "old.json").read_text())) == {"format", "version", "sizes", "activations",
                                                                     "weights"}
    (tmp_path / "raw.csv").write_text("a,b,c\n0.5,-1,9\n2,0.25,9\n")
    status, out, err = run("predict", "old.json", "raw.csv", cwd=tmp_path)
    assert (status, err) == (0, "")
    assert len([line for line in out.splitlines() if "no scaling" in line]) == 1
    assert "the file's first 2" in out
    assert [float(r[1]) for r in table_rows(out)] == [pytest.approx(model([0.5, -1]).data, abs=1e-9),
                                                      pytest.approx(model([2, 0.25]).data, abs=1e-9)]


def damaged(folder, name, change):
    state = json.loads((folder / "model.json").read_text())
    change(state)
    (folder / name).write_text(json.dumps(state))
    return name


BAD_MODELS = {
    "scaling number": (lambda s: s["scaling"]["inputs"]["data_max_"].__setitem__(1, "98"),
                       r"bad.json: scaling.inputs: data_max_\[1\] should be a finite number, got '98'"),
    "scaling width": (lambda s: s["scaling"]["inputs"].update(data_min_=[25.0], data_max_=[70.0]),
                      "bad.json: scaling.inputs scales 1 columns, but the model has 2 inputs"),
    "scaling not an object": (lambda s: s.update(scaling=[1, 2]),
                              "bad.json: scaling should be an object with keys 'inputs' and 'target', got list"),
    "scaling min not below max": (lambda s: s["scaling"]["target"].update(data_max_=[68.0]),
                                  r"bad.json: scaling.target: data_max_\[0\] = 68.0 should be above data_min_\[0\]"),
    "columns repeated": (lambda s: s["columns"].update(inputs=["I0", "I0"]),
                         "bad.json: columns.inputs should list 2 distinct column names"),
}


@pytest.mark.parametrize("change, message", BAD_MODELS.values(), ids=BAD_MODELS.keys())
def test_a_malformed_model_file_is_one_line_naming_file_and_key(trained, change, message):
    folder, _ = trained
    status, out, err = run("predict", damaged(folder, "bad.json", change), "seed.csv", cwd=folder)
    assert (status, out) == (2, "")
    assert len(err.splitlines()) == 1 and re.search(message, err) and err.startswith("microgd: error: ")


BAD_INPUT = {
    "missing input column": (["predict", "model.json", "missing.csv"], r"missing.csv has no column 'I0' "
                             r"\(the model's inputs: I0, I1; the file's columns: I1, Z0\)"),
    "input column twice": (["predict", "model.json", "twice.csv"], "twice.csv has more than one column 'I1'"),
    "not a number": (["predict", "model.json", "words.csv"], "words.csv line 3: column 'I1': 'x' is not a number"),
    "no model": (["predict", "none.json", "seed.csv"], "none.json"),
    "out over data": (["predict", "model.json", "seed.csv", "--out", "seed.csv"], "would overwrite"),
    "out suffix": (["predict", "model.json", "seed.csv", "--out", "p.txt"], "the suffix must be one of .csv"),
    "train: --save with two names alike": (["train", "alike.csv", "--target", "y", "--save", "m.json"],
                                           "alike.csv: 'a' names two columns"),
}


@pytest.mark.parametrize("args, message", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_on_stderr(trained, args, message):
    folder, _ = trained
    (folder / "missing.csv").write_text("I1,Z0\n98,91\n")
    (folder / "twice.csv").write_text("I0,I1,I1\n70,98,98\n")
    (folder / "words.csv").write_text("I0,I1\n70,98\n50,x\n")
    (folder / "alike.csv").write_text("a,a,y\n1,2,3\n2,1,4\n")
    status, out, err = run(*args, cwd=folder)
    assert (status, out) == (2, "")
    assert len(err.splitlines()) == 1 and re.search(message, err) and err.startswith("microgd: error: ")
    assert (folder / "seed.csv").read_text() == SEED_CSV


# -- MinMaxScaler.state_dict / from_state ----------------------------------------------------------

def test_scaler_state_round_trips_exactly():
    scaler = MinMaxScaler((-1, 1)).fit([[1 / 3, 10], [2.5, -7], [0.1, 3]])
    state = scaler.state_dict()
    assert state == {"feature_range": [-1.0, 1.0], "data_min_": [0.1, -7.0], "data_max_": [2.5, 10.0]}
    copy = MinMaxScaler.from_state(json.loads(json.dumps(state)))
    assert copy.feature_range == (-1.0, 1.0)
    rows = [[1.0, 2.0], [-4.0, 30.0]]
    assert copy.transform(rows) == scaler.transform(rows)
    assert copy.inverse_transform(rows) == scaler.inverse_transform(rows)
    with pytest.raises(RuntimeError, match="call fit"):
        MinMaxScaler().state_dict()


GOOD_SCALER = {"feature_range": [0, 1], "data_min_": [1, 2], "data_max_": [3, 4]}
BAD_SCALERS = [
    ([1, 2], "a scaler state should be an object with keys feature_range, data_min_, data_max_, got list"),
    ({"feature_range": [0, 1], "data_min_": [1]}, "missing 'data_max_'"),
    ({**GOOD_SCALER, "scale_": [1]}, "unexpected 'scale_'"),
    ({**GOOD_SCALER, "feature_range": [1, 0]}, r"feature_range needs lo < hi, got \[1.0, 0.0\]"),
    ({**GOOD_SCALER, "feature_range": [0, 1, 2]}, "feature_range should be 2 numbers"),
    ({**GOOD_SCALER, "data_min_": []}, "data_min_ should be a non-empty list of numbers"),
    ({**GOOD_SCALER, "data_min_": [1]}, "data_min_ has 1 numbers but data_max_ has 2"),
    ({**GOOD_SCALER, "data_max_": [3, True]}, r"data_max_\[1\] should be a finite number, got True"),
    ({**GOOD_SCALER, "data_max_": [3, float("nan")]}, r"data_max_\[1\] should be a finite number, got nan"),
    ({**GOOD_SCALER, "data_max_": [3, 10 ** 400]}, r"data_max_\[1\] should be a finite number, got inf"),
    ({**GOOD_SCALER, "data_max_": [3, 2]}, r"data_max_\[1\] = 2.0 should be above data_min_\[1\] = 2.0"),
]


@pytest.mark.parametrize("state, message", BAD_SCALERS)
def test_scaler_from_state_names_the_bad_key(state, message):
    with pytest.raises(ValueError, match=message):
        MinMaxScaler.from_state(state)


# -- model.scaling / model.columns in model files --------------------------------------------------

def with_extras(model):
    model.scaling = {"inputs": MinMaxScaler().fit([[0, 10], [4, 20]]), "target": MinMaxScaler((-1, 1)).fit([5, 7])}
    model.columns = {"inputs": ["a", "b"], "target": "y"}
    return model


def test_scaling_and_columns_save_and_load(tmp_path):
    model = with_extras(MLP(2, [3, 1], seed=0))
    model.save(tmp_path / "m.json")
    loaded = MLP.load(tmp_path / "m.json")
    assert loaded.columns == {"inputs": ["a", "b"], "target": "y"}
    assert {k: s.state_dict() for k, s in loaded.scaling.items()} == {
        k: s.state_dict() for k, s in model.scaling.items()}
    assert loaded.state_dict() == model.state_dict()
    plain = MLP(2, [3, 1], seed=1)
    assert (plain.scaling, plain.columns) == (None, None)
    plain.load(tmp_path / "m.json")
    assert plain.columns == model.columns and plain.scaling["target"].inverse_transform([0.0]) == [6.0]
    MLP(2, [3, 1], seed=2).save(tmp_path / "old.json")
    assert plain.load(tmp_path / "old.json") is plain and (plain.scaling, plain.columns) == (None, None)
    model.columns["inputs"].append("c")  # the state holds a copy, checked when made
    with pytest.raises(StateError, match="model: columns.inputs should list 2 distinct column names"):
        model.state_dict()


def test_a_bad_scaling_entry_leaves_the_model_untouched(tmp_path):
    with_extras(MLP(2, [3, 1], seed=0)).save(tmp_path / "m.json")
    state = json.loads((tmp_path / "m.json").read_text())
    state["scaling"]["target"]["feature_range"] = [0, "1"]
    (tmp_path / "m.json").write_text(json.dumps(state))
    model = with_extras(MLP(2, [3, 1], seed=5))
    before = model.state_dict()
    with pytest.raises(StateError, match=r"m.json: scaling.target: feature_range\[1\] should be a finite number"):
        model.load(tmp_path / "m.json")
    assert model.state_dict() == before


def test_bad_attributes_are_caught_before_writing(tmp_path):
    model = MLP(2, [1], seed=0)
    model.scaling = {"inputs": MinMaxScaler().fit([[0, 1], [1, 0]])}
    with pytest.raises(TypeError, match="model.scaling should be None or"):
        model.save(tmp_path / "m.json")
    model.scaling = {"inputs": MinMaxScaler().fit([0, 1]), "target": MinMaxScaler().fit([0, 1])}
    with pytest.raises(StateError, match="model: scaling.inputs scales 1 columns, but the model has 2 inputs"):
        model.save(tmp_path / "m.json")
    model.scaling, model.columns = None, {"inputs": ["a", "b"], "target": "a"}
    with pytest.raises(StateError, match="columns.target should be a column name not among the inputs"):
        model.save(tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()
