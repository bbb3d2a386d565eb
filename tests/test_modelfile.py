"""microgd.app.modelfile: model files round trip every parameter with their data's scaling and column
names, old files load, bad files are one clear error naming file and key, writes are atomic."""

import json
import math
import os
import re

import pytest

from microgd.app.modelfile import Columns, Scaling, StateError, load_model, parameter_count, save_model
from microgd.data import MinMaxScaler
from microgd.nn import MLP, Layer, Neuron


def data(model):
    return [p.data for p in model.parameters()]


AWKWARD = [[[0.1, 1 / 3, -2.0e-308], [5e-324, -0.0, 1e300], [math.pi, -math.e, 123456789.123456789]],
           [[0.7, -1.0000000000000002, 2.0 ** -40, 0.3]]]


def test_save_then_load_round_trips_every_parameter_exactly(tmp_path):
    model = MLP(2, [3, 1], activations=["tanh", "sigmoid"], weights=AWKWARD)
    path = tmp_path / "model.json"
    save_model(model, path)
    assert json.loads(path.read_text()) == {"format": "microgd-mlp", "version": 1, "sizes": [2, 3, 1],
                                            "activations": ["tanh", "sigmoid"], "weights": AWKWARD}
    loaded, scaling, columns = load_model(path)
    assert isinstance(loaded, MLP) and loaded.sizes == [2, 3, 1] and loaded.activations == ["tanh", "sigmoid"]
    assert (scaling, columns) == (None, None)
    assert [x.hex() for x in data(loaded)] == [x.hex() for x in data(model)]  # bit for bit, -0.0 included
    assert loaded([0.3, -0.4]).data == model([0.3, -0.4]).data
    other = MLP(2, [3, 1], activations=["tanh", "sigmoid"], seed=0)
    other.load_state_dict(load_model(str(path)).model.state_dict())  # into an existing model
    assert data(other) == data(model)


def test_a_file_written_by_microgd_0_2_loads(tmp_path):
    path = tmp_path / "old.json"  # as model.save wrote it: the keys in this order, one line, a newline
    path.write_text('{"format": "microgd-mlp", "version": 1, "sizes": [2, 1], "activations": ["sigmoid"], '
                    '"weights": [[[0.5, -1.0, 0.25]]], "scaling": {"inputs": {"feature_range": [0.0, 1.0], '
                    '"data_min_": [0.0, 10.0], "data_max_": [4.0, 20.0]}, "target": {"feature_range": [0.0, 1.0], '
                    '"data_min_": [5.0], "data_max_": [7.0]}}, "columns": {"inputs": ["a", "b"], "target": "y"}}\n')
    model, scaling, columns = load_model(path)
    assert model.state_dict() == {"sizes": [2, 1], "activations": ["sigmoid"], "weights": [[[0.5, -1.0, 0.25]]]}
    assert columns == Columns(["a", "b"], "y") and scaling.target.inverse_transform([0.5]) == [6.0]


def test_neurons_and_layers_save_and_load_as_networks(tmp_path):
    neuron, layer = Neuron(3, "tanh", seed=0), Layer(2, 4, "relu", seed=0)
    save_model(neuron, tmp_path / "n.json")
    save_model(layer, tmp_path / "l.json")
    assert load_model(tmp_path / "n.json").model.state_dict() == neuron.state_dict()
    assert load_model(tmp_path / "l.json").model.state_dict() == layer.state_dict()


def with_extras():
    return (Scaling(MinMaxScaler().fit([[0, 10], [4, 20]]), MinMaxScaler((-1, 1)).fit([5, 7])),
            Columns(["a", "b"], "y"))


def test_scaling_and_columns_save_and_load(tmp_path):
    model = MLP(2, [3, 1], seed=0)
    scaling, columns = with_extras()
    save_model(model, tmp_path / "m.json", scaling=scaling, columns=columns)
    state = json.loads((tmp_path / "m.json").read_text())
    assert state["columns"] == {"inputs": ["a", "b"], "target": "y"}
    assert state["scaling"] == {"inputs": scaling.inputs.state_dict(), "target": scaling.target.state_dict()}
    loaded = load_model(tmp_path / "m.json")
    assert loaded.columns == columns and loaded.model.state_dict() == model.state_dict()
    assert {k: s.state_dict() for k, s in loaded.scaling._asdict().items()} == {
        k: s.state_dict() for k, s in scaling._asdict().items()}
    assert loaded.scaling.target.inverse_transform([0.0]) == [6.0]


@pytest.mark.parametrize("extras, error, message", [
    (dict(scaling=(MinMaxScaler().fit([[0, 1], [1, 0]]),)), TypeError, "save_model: scaling should be Scaling"),
    (dict(scaling=Scaling(MinMaxScaler(), MinMaxScaler().fit([0, 1]))), TypeError, "both fitted"),
    (dict(scaling=Scaling(MinMaxScaler().fit([0, 1]), MinMaxScaler().fit([0, 1]))), StateError,
     "save_model: scaling.inputs scales 1 columns, but the model has 2 inputs"),
    (dict(columns=Columns(["a", "b"], "a")), StateError, "columns.target should be a column name not among the inputs"),
    (dict(columns=Columns(["a", "a"], "y")), StateError, "columns.inputs should list 2 distinct column names"),
    (dict(columns=["a", "b", "y"]), TypeError, r"save_model: columns should be Columns\(inputs="),
])
def test_bad_extras_are_caught_before_writing(tmp_path, extras, error, message):
    with pytest.raises(error, match=message):
        save_model(MLP(2, [1], seed=0), tmp_path / "m.json", **extras)
    assert not (tmp_path / "m.json").exists()


GOOD = {"format": "microgd-mlp", "version": 1, **MLP(2, [3, 1], seed=0).state_dict()}
BAD_FILES = [
    (lambda text: text[: len(text) // 2], r"not valid JSON at line 1 column \d+.*truncated or hand-edited"),
    (lambda text: "", "not valid JSON at line 1 column 1"),
    (lambda text: json.dumps([1, 2]), "expected a JSON object, got list"),
    (lambda text: json.dumps({**GOOD, "format": "pickle"}), "not a microgd model .format 'pickle'"),
    (lambda text: json.dumps({**GOOD, "version": 2}), "written by a newer microgd .format version 2."),
    (lambda text: json.dumps({**GOOD, "version": "1"}), "unsupported format version '1'"),
    (lambda text: json.dumps({k: v for k, v in GOOD.items() if k != "sizes"}), "missing 'sizes'"),
    (lambda text: json.dumps({**GOOD, "extra": 1}), "unexpected 'extra'"),
    (lambda text: json.dumps({**GOOD, "sizes": [2, 0, 1]}), "sizes should be a list of at least 2 whole numbers"),
    (lambda text: json.dumps({**GOOD, "activations": ["sigmoid", "softmax"]}), "activations should list 2 of"),
    (lambda text: json.dumps({**GOOD, "weights": GOOD["weights"][:1]}), "weights should list 2 layers, got 1"),
    (lambda text: text.replace(repr(GOOD["weights"][1][0][0]), '"0.5"'),
     r"weights\[1\]\[0\]\[0\] must be a finite number, got '0.5'"),
    (lambda text: text.replace(repr(GOOD["weights"][1][0][0]), "NaN"),
     r"weights\[1\]\[0\]\[0\] must be a finite number, got nan"),
    (lambda text: text.replace(repr(GOOD["weights"][1][0][0]), "1e999"),
     r"weights\[1\]\[0\]\[0\] must be a finite number, got inf"),
    (lambda text: text.replace(repr(GOOD["weights"][1][0][0]), "true"),
     r"weights\[1\]\[0\]\[0\] must be a finite number, got True"),
    (lambda text: text.replace(repr(GOOD["weights"][0][2][1]) + ", ", ""), r"weights\[0\]\[2\] should list 3 numbers"),
]


@pytest.mark.parametrize("damage, message", BAD_FILES)
def test_a_bad_file_is_a_clear_error_naming_the_file(tmp_path, damage, message):
    path = tmp_path / "model.json"
    save_model(MLP(2, [3, 1], seed=0), path)
    assert json.loads(path.read_text()) == GOOD
    path.write_text(damage(path.read_text()))
    with pytest.raises(StateError, match=message) as caught:
        load_model(path)
    assert str(caught.value).startswith(str(path) + ": ")


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000, r"nested too deeply to be a model"),
    ('{"format": "microgd-mlp", "version": ' + "1" * 5000 + "}", r"an integer of 5000 digits \(1111111111"),
    ('{"format": "microgd-mlp", "version": -' + "9" * 400 + "}", r"an integer of 400 digits \(-999"),
])
def test_a_hostile_file_is_one_clear_error(tmp_path, text, message):
    """These were a RecursionError and Python's 'Exceeds the limit (4300 digits)' message."""
    path = tmp_path / "model.json"
    path.write_text(text)
    with pytest.raises(StateError, match=rf"^{re.escape(str(path))}: {message}"):
        load_model(path)


def test_an_endless_input_is_read_only_up_to_a_bound():
    with pytest.raises(StateError, match=r"^/dev/zero: larger than 4096 bytes, more than microgd reads"):
        load_model("/dev/zero", max_bytes=4096)


def test_a_binary_file_is_a_clear_error(tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(StateError, match="model.json: not a UTF-8 text file"):
        load_model(path)


def bad_extras(change):
    scaling, columns = with_extras()
    state = {**GOOD, "sizes": [2, 3, 1], "scaling": {"inputs": scaling.inputs.state_dict(),
                                                     "target": scaling.target.state_dict()},
             "columns": {"inputs": list(columns.inputs), "target": columns.target}}
    change(state)
    return state


BAD_EXTRAS = {
    "scaling number": (lambda s: s["scaling"]["inputs"]["data_max_"].__setitem__(1, "20"),
                       r"scaling.inputs: data_max_\[1\] must be a finite number, got '20'"),
    "scaling width": (lambda s: s["scaling"]["inputs"].update(data_min_=[0.0], data_max_=[4.0]),
                      "scaling.inputs scales 1 columns, but the model has 2 inputs"),
    "scaling not an object": (lambda s: s.update(scaling=[1, 2]),
                              "scaling should be an object with keys 'inputs' and 'target', got list"),
    "scaling keys": (lambda s: s["scaling"].pop("target"),
                     "scaling should be an object with keys 'inputs' and 'target', got keys 'inputs'"),
    "scaling min not below max": (lambda s: s["scaling"]["target"].update(data_max_=[5.0]),
                                  r"scaling.target: data_max_\[0\] = 5.0 should be above data_min_\[0\]"),
    "scaling range": (lambda s: s["scaling"]["target"].update(feature_range=[0, "1"]),
                      r"scaling.target: feature_range\[1\] must be a finite number"),
    "columns repeated": (lambda s: s["columns"].update(inputs=["a", "a"]),
                         "columns.inputs should list 2 distinct column names"),
    "columns target": (lambda s: s["columns"].update(target=3), "columns.target should be a column name"),
}


@pytest.mark.parametrize("change, message", BAD_EXTRAS.values(), ids=BAD_EXTRAS.keys())
def test_a_bad_scaling_or_columns_entry_names_its_key(tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad_extras(change)))
    with pytest.raises(StateError, match=f"^{path}: {message}"):
        load_model(path)


def files(folder):
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("crash", ["mid-write", "os.replace"])
def test_saving_is_atomic_a_crash_leaves_the_old_file(tmp_path, monkeypatch, crash):
    path = tmp_path / "model.json"
    save_model(MLP(2, [3, 1], seed=0), path)
    good = path.read_bytes()

    def disk_full(fd):  # the new file's bytes are written but never reach the disk whole
        raise OSError("disk full")

    def failing_replace(src, dst):
        raise OSError("power cut")

    if crash == "mid-write":
        monkeypatch.setattr(os, "fsync", disk_full)
    else:
        monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full|power cut"):
        save_model(MLP(2, [3, 1], seed=1), path)
    assert path.read_bytes() == good
    assert files(tmp_path) == ["model.json"]  # no temporary file left behind
    assert data(load_model(path).model) == data(MLP(2, [3, 1], seed=0))


def test_save_to_a_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match="cannot write .*nowhere.model.json.*: folder .*nowhere.* does not exist"):
        save_model(MLP(2, [1], seed=0), tmp_path / "nowhere" / "model.json")


def test_save_replaces_an_old_file_and_respects_the_umask(tmp_path):
    path = tmp_path / "model.json"
    save_model(MLP(2, [3, 1], seed=0), path)
    save_model(MLP(2, [3, 1], seed=1), str(path))
    assert data(load_model(path).model) == data(MLP(2, [3, 1], seed=1))
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert files(tmp_path) == ["model.json"]


@pytest.mark.parametrize("sizes", [[999, 1], [1] * 501, [2, 249, 1]], ids=["wide input", "deep", "wide layer"])
def test_the_largest_networks_within_the_bound_load_whatever_their_column_names(tmp_path, sizes):
    """The count of lists and values a file may hold follows from the bound on parameters; brackets, braces,
    commas and quotes in column names do not count against it."""
    bound = parameter_count(sizes)
    assert 990 <= bound <= 1000
    model = MLP(sizes[0], sizes[1:], activation="linear", seed=0)
    names = [f'x[{i}],{{"' for i in range(sizes[0])]
    scaling = Scaling(MinMaxScaler().fit([[0.0] * sizes[0], [1.0] * sizes[0]]), MinMaxScaler().fit([0.0, 1.0]))
    save_model(model, tmp_path / "m.json", scaling=scaling, columns=Columns(names, "y,[{"))
    assert load_model(tmp_path / "m.json", max_parameters=bound).columns.inputs == names
    with pytest.raises(StateError, match=rf"more than microgd builds \({bound - 1}\): load_model\(path, "
                                         r"max_parameters=\.\.\.\) reads it anyway"):
        load_model(tmp_path / "m.json", max_parameters=bound - 1)


def test_a_string_of_escaped_quotes_that_never_ends_is_refused_in_one_pass(tmp_path):
    """Where each string ends is found by the JSON reader: a regular expression for strings backtracks here, in
    quadratic time (20,000 quotes: 12 s)."""
    path = tmp_path / "m.json"
    path.write_text('{"format": "microgd-mlp", "columns": {"inputs": ["' + '\\",' * 200_000)
    with pytest.raises(StateError, match=r"m.json: holds more values than a model of at most 1,000 parameters does"):
        load_model(path, max_parameters=1000)
