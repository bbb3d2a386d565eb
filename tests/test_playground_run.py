"""microgd.playground.run: a Run learns, its frames are the engine's own numbers at the current step (checked
against fresh eager graphs and against fit), the learning rate changes without a reset, every bad option is
one PlaygroundError naming it, and a user's own model and data train in place."""

import json
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgd import Value, explain
from microgd.data import MinMaxScaler, tutorial2_table
from microgd.losses import binary_cross_entropy
from microgd.nn import MLP
from microgd.optim import Adam
from microgd.playground.run import (
    DEFAULTS,
    GRID,
    LOSSES,
    OPTIONS,
    PlaygroundError,
    Run,
    TrainingDiverged,
    validate,
)
from microgd.train import fit


def fresh(run):
    """An independent copy of the run's model, at the run's current weights."""
    return MLP.from_state_dict(run.model.state_dict())


def sample_loss(model, loss, x, target):
    """One sample's loss built eagerly, as the run builds the selected sample's: the leaves x1, x2 and z, then the
    model's output, then the loss."""
    x = [Value(x[0], label="x1"), Value(x[1], label="x2")]
    z = Value(target, label="z")
    return loss(model(x), z)


def strict_json(value):
    return json.loads(json.dumps(value, allow_nan=False))


# -- learning --------------------------------------------------------------------------------------

def test_loss_falls_on_two_moons():
    run = Run({"dataset": "moons", "hidden": [16, 16]})
    start = run.frame()["loss"]
    run.steps(300)
    frame = run.frame()
    assert run.step_count == frame["step"] == 300
    assert frame["loss"] < 0.5 * start
    points, targets = run.setup()["points"], run.setup()["targets"]
    model = fresh(run)
    right = sum((model(x).data > 0.5) == (t > 0.5) for x, t in zip(points, targets))
    assert right / len(points) > 0.85


def test_steps_are_fits_steps():
    """SGD over shuffled mini-batches, seeded as fit(seed=...) is: the same weights to the last bit."""
    run = Run({"hidden": [5], "points": 40, "batch": 8, "seed": 3, "optimizer": "adam", "lr": 0.05})
    model = fresh(run)
    setup = run.setup()
    run.steps(5 * 5)  # five epochs of five batches
    fit(model, setup["points"], setup["targets"], loss=binary_cross_entropy,
        optimizer=Adam(model.parameters(), lr=0.05), epochs=5, batch_size=8, seed=3, verbose=False, engine="fused")
    assert run.model.state_dict() == model.state_dict()


@pytest.mark.parametrize("dataset, hidden, steps", [("circles", [8, 8], 300), ("xor", [8, 8], 300),
                                                    ("tutorial2", [8, 8], 300), ("spiral", [16, 16], 2000)])
def test_every_built_in_dataset_learns(dataset, hidden, steps):
    run = Run({"dataset": dataset, "hidden": hidden, "optimizer": "adam", "lr": 0.03})
    start = run.frame()["loss"]
    run.steps(steps)
    assert run.frame()["loss"] < 0.5 * start


# -- the frame is the engine's numbers ---------------------------------------------------------------

def test_frame_equals_a_fresh_eager_graph_at_the_same_step():
    run = Run({"hidden": [4, 3], "points": 60, "batch": 10})
    run.steps(17)
    run.select_sample(7)
    run.select_weight("w_h2_3_1")
    frame = run.frame()
    setup = run.setup()
    model = fresh(run)
    x, target = setup["points"][7], setup["targets"][7]
    loss = sample_loss(model, binary_cross_entropy, x, target)
    loss.backward()
    nodes = loss.topo()
    expected = {}
    for i, v in enumerate(nodes):
        if not v.is_constant:
            expected[f"v{i}"] = [v.data, v.grad]
        for k, parent in enumerate(v.parents):
            if not parent.is_constant:
                expected[f"e{i}_{k}"] = [v.local_grads()[k], v.grad]
    assert frame["graph"] == expected
    assert frame["weights"] == [p.data for p in model.parameters()]
    assert frame["sample"] == {"index": 7, "x": x, "target": target, "output": model(x).data, "loss": loss.data}
    units = setup["network"]["units"]
    assert units == [["x1", "x2"], ["h1_1", "h1_2", "h1_3", "h1_4"], ["h2_1", "h2_2", "h2_3"], ["y"]]
    found = {v.label: v.data for v in model(x).topo()}
    assert frame["activations"] == [[found[name] for name in layer] for layer in units]
    weight = next(p for p in model.parameters() if p.label == "w_h2_3_1")
    derivation = explain(loss, wrt=weight)
    assert frame["derivation"] == {"weight": "w_h2_3_1", "text": derivation.text().split("\n"),
                                   "latex": derivation.latex()}
    every = [sample_loss(model, binary_cross_entropy, x, t).data for x, t in zip(setup["points"], setup["targets"])]
    assert frame["loss"] == pytest.approx(sum(every) / len(every), rel=1e-12)


def test_the_pictures_ids_are_the_frames_keys():
    run = Run({"hidden": [3, 2], "points": 20})
    svg = run.setup()["graph"]["svg"]
    drawn = {key: (kind, tail) for key, kind, tail in
             re.findall(r'<g id="([^"]+)" class="([^"]+)">\s*<title>([^&<]+)', svg)}
    constants = {key for key, (kind, _) in drawn.items() if kind == "node const"}
    updated = {key for key, (kind, tail) in drawn.items() if kind == "node value" or kind.startswith("node value ")
               or (kind == "edge local" and tail not in constants)}
    assert set(run.frame()["graph"]) == updated  # every value node and every edge but a constant's (dashed)
    assert {kind for key, (kind, _) in drawn.items() if key not in updated} == \
        {"node op", "edge out", "node const", "edge local"}


def test_the_last_steps_gradient_and_update():
    """A full batch: the frame's grads are the mean of every sample's eager gradient at the weights before the
    step, and SGD's update of the selected weight is -lr x grad."""
    run = Run({"dataset": "xor", "hidden": [3], "lr": 0.3, "batch": 4})
    run.steps(4)
    before = fresh(run)
    run.select_weight("b_h1")
    run.steps(1)
    frame = run.frame()
    setup = run.setup()
    for x, t in zip(setup["points"], setup["targets"]):
        sample_loss(before, binary_cross_entropy, x, t).backward()
    mean = [p.grad / 4 for p in before.parameters()]
    assert frame["grads"] == pytest.approx(mean, rel=1e-12, abs=1e-15)
    weight = frame["weight"]
    index = [w["name"] for w in setup["network"]["weights"]].index("b_h1")
    assert weight["value"] == frame["weights"][index] and weight["grad"] == frame["grads"][index]
    assert weight["update"] == pytest.approx(-0.3 * weight["grad"], rel=1e-12, abs=1e-15)
    assert weight["value"] - weight["update"] == pytest.approx(before.parameters()[index].data, rel=1e-12)


def test_step_zero_has_no_gradient_and_no_update():
    frame = Run({"hidden": [2]}).frame()
    assert frame["step"] == 0 and frame["batch_loss"] is None and frame["loss_points"] == []
    assert set(frame["grads"]) == {0.0} and frame["weight"]["update"] == 0.0


def test_loss_points_are_the_loss_after_each_step_and_come_once():
    run = Run({"hidden": [4], "points": 30})
    run.steps(3)
    points = run.frame()["loss_points"]
    assert [step for step, _ in points] == [1, 2, 3] and points[-1][1] == run.frame()["loss"]
    assert run.frame()["loss_points"] == []
    run.steps(1000)
    points = run.frame()["loss_points"]
    assert len(points) <= 50 and points[-1][0] == 1003
    assert [step for step, _ in points] == sorted({step for step, _ in points})


def test_setup_and_frame_are_json_with_the_documented_keys():
    run = Run({"hidden": [5, 5]})
    run.steps(2)
    setup, frame = strict_json(run.setup()), strict_json(run.frame())
    assert set(setup) == {"config", "task", "threshold", "columns", "points", "targets", "network", "grid", "graph",
                          "sample", "weight"}
    assert set(frame) == {"step", "loss", "batch_loss", "loss_points", "boundary", "weights", "grads", "sample",
                          "activations", "graph", "weight", "derivation"}
    network = setup["network"]
    assert network["sizes"] == [2, 5, 5, 1] and len(network["weights"]) == len(frame["weights"]) == 51
    assert network["weights"][:3] == [{"name": "w_h1_1_1", "layer": 1, "from": 0, "to": 0},
                                      {"name": "w_h1_1_2", "layer": 1, "from": 1, "to": 0},
                                      {"name": "b_h1_1", "layer": 1, "from": None, "to": 0}]
    assert setup["grid"]["size"] == GRID and len(frame["boundary"]) == GRID * GRID
    assert all(0.0 <= v <= 1.0 and round(v, 4) == v for v in frame["boundary"])  # probabilities
    assert setup["task"] == "classification" and setup["threshold"] == 0.5
    assert setup["graph"]["svg"].startswith("<svg") and setup["graph"]["format"] == ".4f"
    assert strict_json(OPTIONS)["defaults"] == validate({})


def test_the_boundary_is_the_model_on_the_grid():
    run = Run({"hidden": [3], "points": 20})
    run.steps(5)
    setup, frame = run.setup(), run.frame()
    (x1_low, x1_high), (x2_low, x2_high) = setup["grid"]["x1"], setup["grid"]["x2"]
    model = fresh(run)
    for r, c in [(0, 0), (0, GRID - 1), (GRID - 1, 3), (20, 30)]:
        x = [x1_low + (x1_high - x1_low) * c / (GRID - 1), x2_low + (x2_high - x2_low) * r / (GRID - 1)]
        assert frame["boundary"][r * GRID + c] == pytest.approx(model(x).data, abs=6e-5)


def test_a_large_network_has_no_picture_but_every_other_view():
    run = Run({"hidden": [32, 32]})
    graph = run.setup()["graph"]
    assert graph["svg"] is None and "more than a picture draws" in graph["note"]
    frame = run.frame()
    assert frame["graph"] == {} and frame["derivation"]["text"] and len(frame["activations"][1]) == 32


# -- controls ------------------------------------------------------------------------------------------

def test_set_lr_keeps_the_step_and_the_weights():
    run = Run({"hidden": [4], "batch": 200})
    run.steps(5)
    weights = run.frame()["weights"]
    run.set_lr(0.5)
    frame = run.frame()
    assert run.step_count == frame["step"] == 5 and frame["weights"] == weights
    assert run.config["lr"] == 0.5
    run.steps(1)
    weight = run.frame()["weight"]
    assert weight["update"] == pytest.approx(-0.5 * weight["grad"], rel=1e-12)
    with pytest.raises(PlaygroundError, match=r"^lr: must be a number above 0 and at most 10.0, got '2'$"):
        run.set_lr("2")
    assert run.config["lr"] == 0.5


def test_reset_goes_back_to_step_zero():
    run = Run({"hidden": [4], "optimizer": "momentum"})
    first = run.frame()
    run.steps(30)
    run.reset()
    assert run.step_count == 0 and run.frame() == first
    run.steps(30)
    again = Run({"hidden": [4], "optimizer": "momentum"})
    again.steps(30)
    assert run.frame() == again.frame()


def test_selections_are_checked():
    run = Run({"hidden": [2], "points": 20})
    for bad in (20, -1, True, "3", 2.0):
        with pytest.raises(PlaygroundError, match=r"^sample: must be a whole number from 0 to 19, got "):
            run.select_sample(bad)
    for bad in ("w_h9_1", "", None, ["b_y"]):
        with pytest.raises(PlaygroundError, match=r"^weight: unknown .* \(the parameters are w_h1_1 to b_y,"):
            run.select_weight(bad)
    with pytest.raises(PlaygroundError, match="^steps: "):
        run.steps(-1)


@pytest.mark.parametrize("options", [
    {"dataset": "tutorial2", "loss": "squared_error", "activation": "relu", "lr": 10, "hidden": [16, 16]},
    {"dataset": "moons", "loss": "squared_error", "activation": "relu", "lr": 10, "hidden": [32, 32], "batch": 200},
])
def test_divergence_stops_before_the_bad_step(options):
    run = Run(options)
    with pytest.raises(TrainingDiverged, match=r"^lr: training diverged at step (\d+) with lr 10 .*lower the learning"):
        run.steps(1000)
    done = run.step_count
    frame = strict_json(run.frame())  # the last good step: every number finite
    assert frame["step"] == done
    run.set_lr(1e-6)
    run.steps(3)
    assert run.step_count == done + 3


# -- options -------------------------------------------------------------------------------------------

def test_defaults():
    assert validate({}) == {"dataset": "moons", "hidden": [8, 8], "activation": "tanh",
                            "loss": "binary_cross_entropy", "optimizer": "sgd", "lr": 0.1, "batch": 16, "seed": 0,
                            "points": 200, "noise": 0.1, "csv": None}
    assert validate({"dataset": "tutorial2"})["loss"] == "half_squared_error"
    assert validate({"dataset": "xor"})["batch"] == 4  # the default batch is at most the points
    assert set(DEFAULTS) == set(validate({}))


TOO_BIG = "x1,x2,z\n" + "0.123456,0.654321,1\n" * 6000
TOO_LONG = "x1,x2,z\n" + "0,1,0\n" * 2001


@pytest.mark.parametrize("options, message", [
    ({"dataset": "mnist"}, r"dataset: unknown 'mnist' \(choose from moons, circles, xor, spiral, tutorial2, csv\)"),
    ({"hidden": [0]}, r"hidden: must be a list of at most 4 layer widths, each a whole number from 1 to 32, got \[0\]"),
    ({"hidden": [100]}, r"hidden: .*got \[100\]"),
    ({"hidden": [2, 2, 2, 2, 2]}, r"hidden: .*got \[2, 2, 2, 2, 2\]"),
    ({"hidden": "8,8"}, r"hidden: .*got '8,8'"),
    ({"hidden": [True]}, r"hidden: .*got \[True\]"),
    ({"hidden": [4.0]}, r"hidden: .*got \[4.0\]"),
    ({"activation": "softmax"}, r"activation: unknown 'softmax' \(choose from tanh, relu, sigmoid, linear\)"),
    ({"loss": "cross_entropy"}, r"loss: unknown 'cross_entropy'"),
    ({"loss": "hinge", "dataset": "tutorial2"},
     r"loss: 'hinge' needs two classes .* regression \(choose half_squared_error, squared_error\)"),
    ({"optimizer": "rmsprop"}, r"optimizer: unknown 'rmsprop' \(choose from sgd, momentum, adam\)"),
    ({"lr": -1}, r"lr: must be a number above 0 and at most 10.0, got -1"),
    ({"lr": 0}, r"lr: .*got 0"),
    ({"lr": 10.5}, r"lr: .*got 10.5"),
    ({"lr": math.nan}, r"lr: .*got nan"),
    ({"lr": "1; import os"}, r"lr: .*got '1; import os'"),
    ({"lr": True}, r"lr: .*got True"),
    ({"batch": 0}, r"batch: must be a whole number from 1 to 200 \(the points of dataset 'moons'\), got 0"),
    ({"batch": 201}, r"batch: .*got 201"),
    ({"dataset": "xor", "batch": 5}, r"batch: must be a whole number from 1 to 4 \(the points of dataset 'xor'\)"),
    ({"batch": 2.5}, r"batch: .*got 2.5"),
    ({"points": 5}, r"points: must be a whole number from 10 to 1000, got 5"),
    ({"noise": -0.1}, r"noise: must be a number from 0 and at most 1.0, got -0.1"),
    ({"seed": -1}, r"seed: must be a whole number from 0 to 4294967295, got -1"),
    ({"seed": "0"}, r"seed: .*got '0'"),
    ({"foo": 1}, r"unknown option 'foo' \(the options are dataset, hidden, activation, loss, optimizer, lr, batch, "),
    ({1: 1}, r"unknown option 1 "),
    ({"dataset": "csv"}, r"csv: dataset 'csv' needs the text of a CSV file in the option csv"),
    ({"csv": "a,b,z\n1,2,0\n"}, r"csv: a CSV is for dataset 'csv', not 'moons'"),
    ({"dataset": "csv", "csv": TOO_BIG}, r"csv: 120,008 bytes, more than the playground takes \(100,000\)"),
    ({"dataset": "csv", "csv": TOO_LONG}, r"csv: 2,001 rows, more than the playground takes \(2,000\)"),
    ({"dataset": "csv", "csv": "a,b\n1,2\n3,4\n"}, r"csv: 2 columns \('a, b'\), expected 3: two inputs, then the"),
    ({"dataset": "csv", "csv": "a,b,c,d\n1,2,3,4\n"}, r"csv: 4 columns"),
    ({"dataset": "csv", "csv": "a,b,z\n1,2,0\n1,x,1\n"}, r"csv line 3: column 'b': 'x' is not a number"),
    ({"dataset": "csv", "csv": "a,b,z\n1,2,0\n1,2\n"}, r"csv line 3: 2 values, expected 3 \(a, b, z\)"),
    ({"dataset": "csv", "csv": "a,b,z\n1,nan,0\n"}, r"csv line 2: column 'b': 'nan' is not a finite number"),
    ({"dataset": "csv", "csv": ""}, r"csv: empty file"),
    ({"dataset": "csv", "csv": "a,b,z\n"}, r"csv: has a header but no rows of data"),
    ({"dataset": "csv", "csv": b"a,b,z\n1,2,3\n"}, r"csv: must be the text of a CSV file, got b'a,b,z"),
    ({"dataset": "csv", "csv": "a,b,z\n1,2,0\n1,3,1\n"}, r"dataset: column 'a' is constant \(1 in every row\)"),
    ({"dataset": "csv", "csv": "a,b,z\n1,2,7\n2,3,7\n"}, r"dataset: column 'z' is constant \(7 in every row\)"),
])
def test_every_bad_option_is_one_line_naming_it(options, message):
    for check in (validate, Run):
        with pytest.raises(PlaygroundError, match="^" + message) as caught:
            check(options)
        assert "\n" not in str(caught.value)


def test_options_must_be_an_object():
    with pytest.raises(PlaygroundError, match=r"^options: must be an object of options, got \[1\]$"):
        validate([1])


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
                    max_leaves=10)


@given(st.dictionaries(st.sampled_from([*DEFAULTS, "other"]), JSON, max_size=4))
def test_anything_the_page_sends_is_a_config_or_one_playground_error(options):
    try:
        config = validate(options)
    except PlaygroundError as error:
        assert "\n" not in str(error)
    else:
        assert validate(config) == config


def test_a_csv_run():
    text = "hours,score,passed\n1,20,0\n2,40,0\n3,35,1\n4,80,1\n"
    run = Run({"dataset": "csv", "csv": text, "loss": "hinge"})
    setup = run.setup()
    assert setup["columns"] == ["hours", "score", "passed"] and setup["task"] == "classification"
    assert setup["targets"] == [-1.0, -1.0, 1.0, 1.0] and setup["threshold"] == 0.0
    assert [min(c) for c in zip(*setup["points"])] == [-1.0, -1.0] and [max(c) for c in zip(*setup["points"])] == [1, 1]
    assert validate(run.config) == run.config and run.config["csv"] == text
    regression = Run({"dataset": "csv", "csv": "a,b,z\n1,2,10\n2,1,30\n3,3,20\n"}).setup()
    assert regression["task"] == "regression" and regression["threshold"] is None
    assert regression["targets"] == [-1.0, 1.0, 0.0]


def test_tutorial2_is_a_scaled_regression():
    setup = Run({"dataset": "tutorial2", "hidden": [3]}).setup()
    X, y = tutorial2_table()
    assert setup["points"] == MinMaxScaler((-1, 1)).fit_transform(X)
    assert setup["targets"] == MinMaxScaler((-1, 1)).fit_transform(y)
    assert setup["task"] == "regression" and setup["config"]["loss"] == "half_squared_error"


# -- a user's own model and data -------------------------------------------------------------------------

def test_a_users_model_and_data_train_in_place():
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(80, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)  # numpy arrays, labels 0/1, not scaled
    model = MLP(2, [6, 1], activations=["tanh", "linear"], seed=2)
    run = Run({"lr": 0.05, "batch": 20, "loss": "half_squared_error"}, model=model, data=(X, y))
    setup = run.setup()
    assert run.config["dataset"] == "user" and run.config["hidden"] == [6] and run.config["csv"] is None
    assert setup["points"] == X.tolist() and setup["targets"] == y.tolist() and setup["threshold"] == 0.5
    start = run.frame()["loss"]
    run.steps(400)
    frame = run.frame()
    assert frame["loss"] < 0.7 * start
    assert run.model is model and [p.data for p in model.parameters()] == frame["weights"]
    assert [p.grad for p in model.parameters()] == frame["grads"]
    assert Run(run.config, model=model, data=(X, y)).config == run.config


def test_a_users_labels_are_encoded_only_for_a_loss_that_needs_it():
    model = MLP(2, [3, 1], activations=["relu", "linear"], seed=0)
    data = ([[0, 0], [1, 1], [2, 0]], [0, 1, 1])
    assert Run({"loss": "hinge"}, model=model, data=data).setup()["targets"] == [-1.0, 1.0, 1.0]
    assert Run({}, model=model, data=data).setup()["targets"] == [0.0, 1.0, 1.0]  # a linear output: mse, as given
    assert Run({}, model=model, data=data).config["loss"] == "half_squared_error"


def test_a_run_with_only_a_users_model_or_only_data():
    model = MLP(2, [4, 1], activations=["relu", "sigmoid"], seed=0)
    run = Run({"dataset": "xor"}, model=model)
    run.steps(5)
    assert run.config["activation"] == "relu" and run.model is model
    run = Run({"hidden": [3]}, data=([[0, 1], [1, 0], [2, 2]], [0.5, 1.5, 3.0]))
    assert run.setup()["task"] == "regression" and run.setup()["targets"] == [0.5, 1.5, 3.0]


@pytest.mark.parametrize("model, data, options, message", [
    (MLP(3, [2, 1]), None, {}, r"model: must be a microgd.nn.MLP of 2 inputs and 1 output"),
    (MLP(2, [2, 2]), None, {}, r"model: must be a microgd.nn.MLP of 2 inputs and 1 output"),
    ("model", None, {}, r"model: must be a microgd.nn.MLP"),
    (MLP(2, [2, 1], activations=["tanh", "linear"]), None, {"loss": "binary_cross_entropy"},
     r"loss: 'binary_cross_entropy' needs the model's output to be a sigmoid, not 'linear'"),
    (MLP(2, [2, 1]), None, {"hidden": [5]}, r"hidden: the model given has \[2\], not \[5\]"),
    (None, ([[0, 1], [1, 0]], [1.0]), {}, r"data: must be \(X, y\): rows of two inputs and as many targets"),
    (None, ([[0, 1, 2]], [1.0]), {}, r"data: X\[0\] must be a row of two inputs, got \[0, 1, 2\]"),
    (None, ([[0, "a"]], [1.0]), {}, r"data: X\[0\]\[1\] must be a finite number, got 'a'"),
    (None, ([[0, 1]], [math.inf]), {}, r"data: y\[0\] must be a finite number"),
    (None, [[0, 1]], {}, r"data: must be a pair \(X, y\)"),
    (None, ([[0, 1]], [1.0]), {"dataset": "moons"}, r"dataset: a run given data= trains on it, not on 'moons'"),
])
def test_bad_models_and_data(model, data, options, message):
    with pytest.raises(PlaygroundError, match="^" + message):
        Run(options, model=model, data=data)


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_and_optimizer_trains(loss):
    for optimizer in OPTIONS["optimizer"]:
        run = Run({"loss": loss, "optimizer": optimizer, "hidden": [4], "points": 40, "lr": 0.05})
        start = run.frame()["loss"]
        run.steps(40)
        assert run.frame()["loss"] < start
