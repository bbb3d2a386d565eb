"""microgd.nn: the second seed's worked example to the last digit, the delta rule as a property,
initialisation, the model API, and model files (round trip, bad files, atomic writes)."""

import json
import math
import os
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgd import Value
from microgd.losses import half_squared_error
from microgd.nn import MLP, Layer, Neuron, StateError
from microgd.optim import SGD

# The seed's initial weights, per neuron [w_1, ..., w_n, b]: hidden nodes 0..2, then the output node.
SEED_WEIGHTS = [[[-0.5, -1.0, 0.5], [-0.5, 0.5, 0.5], [1.0, 0.0, 0.5]], [[0.5, -1.0, 0.0, 0.5]]]
SEED_X = [1.0, 1.0]  # the first row (70, 98) of the seed's table, normalised to [0, 1]


def seed_model():
    return MLP(2, [3, 1], weights=SEED_WEIGHTS)


def sigmoid(s):
    return 1.0 / (1.0 + math.exp(-s))


# -- the seed's worked example ---------------------------------------------------------------------

def test_seed_forward_pass_to_four_places():
    model = seed_model()
    hidden = model.layers[0](SEED_X)
    y = model(SEED_X)
    assert [round(a.data, 4) for a in hidden] == [0.2689, 0.6225, 0.8176]
    assert round(y.data, 4) == 0.5030
    assert [a.data for a in hidden] == [sigmoid(-1.0), sigmoid(0.5), sigmoid(1.5)]


def output_delta(target):
    """The engine's delta at the output neuron: d loss / d s for the seed's 1/2 (y - z)^2."""
    model = seed_model()
    y = model(SEED_X)
    half_squared_error(y, target).backward()
    s = y.parents[0]  # the output neuron's weighted sum
    assert s.op == "weighted_sum"
    return y.data, s.grad


def test_seed_output_delta_for_the_unnormalised_target_91():
    y, delta = output_delta(91.0)
    assert delta == pytest.approx(y * (1 - y) * (y - 91.0), rel=1e-15)
    assert round(delta, 4) == -22.6234
    # The seed prints 0.5030 (1 - 0.5030) = 0.2494 and delta = 0.2494 * -90.4970 = -22.56.
    # Wrong: 0.5030 * 0.4970 = 0.2500 (0.249991), and even 0.2494 * -90.4970 is -22.5700.
    # Rounding y to 0.5030 is harmless (its delta is -22.6234 too); the true delta is -22.6234,
    # 0.0634 below the seed's -22.56.
    assert round(y * (1 - y), 4) == 0.2500 != 0.2494
    assert round(0.5030 * (1 - 0.5030) * (0.5030 - 91), 4) == -22.6234
    assert round(0.2494 * -90.4970, 4) == -22.5700
    assert round(delta - (-22.56), 4) == -0.0634


def test_seed_output_delta_for_the_normalised_target():
    y, delta = output_delta(1.0)  # Z0 = 91 is the column's maximum: 1.0 on [0, 1]
    assert delta == pytest.approx(y * (1 - y) * (y - 1.0), rel=1e-15)
    assert round(delta, 4) == -0.1242


def test_one_sgd_step_is_the_seeds_delta_rule_update():
    eta, z = 0.1, 1.0
    model = seed_model()
    loss = half_squared_error(model(SEED_X), z)
    model.zero_grad()
    loss.backward()
    SGD(model.parameters(), lr=eta).step()

    # By hand, from the seed's formulas.
    (hidden_rows, (out_row,)) = SEED_WEIGHTS
    a = [sigmoid(sum(w * x for w, x in zip(row[:-1], SEED_X)) + row[-1]) for row in hidden_rows]
    y = sigmoid(sum(w * ai for w, ai in zip(out_row[:-1], a)) + out_row[-1])
    delta_o = y * (1 - y) * (y - z)
    delta_h = [aj * (1 - aj) * out_row[j] * delta_o for j, aj in enumerate(a)]
    expected = []
    for row, d in zip(hidden_rows, delta_h):
        expected += [w - eta * d * x for w, x in zip(row[:-1], SEED_X)] + [row[-1] - eta * d]
    expected += [w - eta * delta_o * ai for w, ai in zip(out_row[:-1], a)] + [out_row[-1] - eta * delta_o]

    assert [p.data for p in model.parameters()] == pytest.approx(expected, rel=1e-14, abs=1e-16)
    assert model.parameters()[12].data != out_row[-1]  # the step moved the output bias


# -- the delta rule, as a property -----------------------------------------------------------------

ACT = {"sigmoid": sigmoid, "tanh": math.tanh}
DERIVATIVE_FROM_OUTPUT = {"sigmoid": lambda a: a * (1 - a), "tanh": lambda a: 1 - a * a}


def delta_rule_gradients(weights, activations, x, z):
    """Every parameter's gradient of 1/2 sum (y_k - z_k)^2 by the seed's delta rule, in parameters() order,
    with a bound on each one's rounding scale.

    delta_out = f'(s) (y - z); delta_hidden_j = f'(s_j) sum_k w_kj delta_k (k over the next layer);
    dL/dw_ji = delta_j a_i and dL/db_j = delta_j. The scale is the same recursion on absolute values:
    it equals |gradient| unless terms cancel, and bounds the rounding error of any summation order.
    """
    outs = [list(x)]
    for layer, act in zip(weights, activations):
        a = outs[-1]
        outs.append([ACT[act](sum(w * ai for w, ai in zip(row[:-1], a)) + row[-1]) for row in layer])
    f_out = DERIVATIVE_FROM_OUTPUT[activations[-1]]
    deltas = [f_out(y) * (y - zk) for y, zk in zip(outs[-1], z)]
    scales = [abs(d) for d in deltas]
    per_layer = []
    for li in reversed(range(len(weights))):
        a = outs[li]
        per_layer.append([([d * ai for ai in a] + [d], [s * abs(ai) for ai in a] + [s])
                          for d, s in zip(deltas, scales)])
        if li:
            f = DERIVATIVE_FROM_OUTPUT[activations[li - 1]]
            rows = weights[li]
            deltas, scales = (
                [f(aj) * sum(rows[k][j] * deltas[k] for k in range(len(rows))) for j, aj in enumerate(a)],
                [abs(f(aj)) * sum(abs(rows[k][j]) * scales[k] for k in range(len(rows))) for j, aj in enumerate(a)],
            )
    grads, bounds = [], []
    for layer in reversed(per_layer):
        for g, s in layer:
            grads += g
            bounds += s
    return grads, bounds


@st.composite
def networks(draw):
    nin = draw(st.integers(1, 3))
    sizes = [nin, *draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)), draw(st.integers(1, 2))]
    activations = [draw(st.sampled_from(["sigmoid", "tanh"])) for _ in sizes[1:]]
    number = st.floats(-2.0, 2.0)
    weights = [[[draw(number) for _ in range(nin_ + 1)] for _ in range(nout)] for nin_, nout in zip(sizes, sizes[1:])]
    x = [draw(st.floats(-1.0, 1.0)) for _ in range(nin)]
    z = [draw(st.floats(0.0, 1.0)) for _ in range(sizes[-1])]
    return sizes, activations, weights, x, z


@given(networks())
def test_engine_gradients_equal_the_delta_rule(network):
    sizes, activations, weights, x, z = network
    model = MLP(sizes[0], sizes[1:], activations=activations, weights=weights)
    out = model(x)
    outputs = out if isinstance(out, list) else [out]
    loss = half_squared_error(outputs[0], z[0])
    for y, zk in zip(outputs[1:], z[1:]):
        loss = loss + half_squared_error(y, zk)
    loss.backward()
    engine = [p.grad for p in model.parameters()]
    hand, scale = delta_rule_gradients(weights, activations, x, z)
    assert len(engine) == len(hand) == sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    for i, (e, h, s) in enumerate(zip(engine, hand, scale)):
        assert abs(e - h) <= 1e-9 * s, f"parameter {i}: engine {e!r}, delta rule {h!r}"


# -- building models -------------------------------------------------------------------------------

def test_one_dot_node_per_neuron_and_inputs_wrapped_once():
    model = seed_model()
    y = model(SEED_X)
    # 2 inputs + 13 parameters + (dot, sigmoid) for each of the 4 neurons
    assert len(y.topo()) == 2 + 13 + 8
    assert y.op == "sigmoid" and y.parents[0].op == "weighted_sum"
    first, second, _ = (a.parents[0] for a in model.layers[0](SEED_X))
    assert first.parents[2] is second.parents[2] and first.parents[3] is second.parents[3]
    assert first.parents[2].op == "" and first.parents[2].label == "x1"


def test_parameters_order_layer_neuron_weights_then_bias():
    model = seed_model()
    flat = [x for layer in SEED_WEIGHTS for row in layer for x in row]
    assert [p.data for p in model.parameters()] == flat
    assert model.parameters()[2] is model.layers[0].neurons[0].b
    assert model.parameters()[9] is model.layers[1].neurons[0].w[0]
    assert model.sizes == [2, 3, 1] and model.activations == ["sigmoid", "sigmoid"]
    assert model.parameters()[3].label == "L1.n2.w1" and model.parameters()[-1].label == "L2.n1.b"


@pytest.mark.parametrize("activation, expected", [
    ("sigmoid", sigmoid(0.5)), ("tanh", math.tanh(0.5)), ("relu", 0.5), ("linear", 0.5),
])
def test_activations(activation, expected):
    neuron = Neuron(2, activation, weights=[1.0, -1.0, 0.5])
    out = neuron([0.25, 0.25])
    assert out.data == pytest.approx(expected, rel=1e-15)
    assert out.op == ("weighted_sum" if activation == "linear" else activation)
    negative = {"sigmoid": sigmoid(-0.5), "tanh": math.tanh(-0.5), "relu": 0.0, "linear": -0.5}[activation]
    assert neuron([-1.0, 0.0]).data == pytest.approx(negative, rel=1e-15)


def test_activation_applies_to_every_layer_and_activations_per_layer():
    assert MLP(2, [3, 2, 1], "tanh", seed=0).activations == ["tanh"] * 3
    assert MLP(2, [3, 1], seed=0).activations == ["sigmoid", "sigmoid"]
    model = MLP(2, [3, 1], activations=["relu", "linear"], seed=0)
    assert model.activations == ["relu", "linear"]
    assert model([0.3, -0.2]).op == "weighted_sum"


def test_model_output_is_a_value_or_a_list():
    assert isinstance(MLP(2, [3, 1], seed=0)([0.1, 0.2]), Value)
    out = MLP(2, [3, 2], seed=0)([0.1, 0.2])
    assert isinstance(out, list) and len(out) == 2
    assert len(Layer(2, 1, seed=0)([0.1, 0.2])) == 1  # a Layer always returns a list


def test_inputs_may_be_values_and_get_gradients():
    x = [Value(1.0), Value(1.0)]
    model = seed_model()
    half_squared_error(model(x), 1.0).backward()
    assert x[0].grad != 0.0 and math.isfinite(x[1].grad)


def test_repr():
    assert repr(MLP(2, [3, 1], seed=0)) == "MLP(2, [3, 1], activation='sigmoid')"
    assert repr(MLP(2, [4, 1], activations=["tanh", "linear"], seed=0)) == \
        "MLP(2, [4, 1], activations=['tanh', 'linear'])"
    assert repr(Layer(3, 2, "relu", seed=0)) == "Layer(3, 2, activation='relu')"
    assert repr(Neuron(4, seed=0)) == "Neuron(4, activation='sigmoid')"


@pytest.mark.parametrize("x, error, message", [
    ([1.0, 2.0, 3.0], ValueError, "MLP expected 2 inputs, got 3"),
    ([1.0], ValueError, "MLP expected 2 inputs, got 1"),
    (1.0, TypeError, "MLP expected a list of 2 inputs, got float"),
    (["a", 1.0], TypeError, "real number"),
])
def test_model_checks_its_input(x, error, message):
    with pytest.raises(error, match=message):
        seed_model()(x)


def test_layer_and_neuron_check_their_input():
    with pytest.raises(ValueError, match="Layer expected 2 inputs, got 1"):
        Layer(2, 3, seed=0)([1.0])
    with pytest.raises(ValueError, match="Neuron expected 2 inputs, got 3"):
        Neuron(2, seed=0)([1.0, 2.0, 3.0])


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(nin=0, nouts=[1]), ValueError, "MLP nin must be a whole number >= 1, got 0"),
    (dict(nin=2, nouts=[]), TypeError, "non-empty list of layer widths"),
    (dict(nin=2, nouts=3), TypeError, "non-empty list of layer widths"),
    (dict(nin=2, nouts=[3, 0]), ValueError, r"MLP nouts\[1\] must be a whole number >= 1"),
    (dict(nin=2, nouts=[1], activation="softmax"), ValueError, "unknown activation 'softmax'"),
    (dict(nin=2, nouts=[3, 1], activations=["tanh"]), ValueError, "one activation per layer"),
    (dict(nin=2, nouts=[1], activation="tanh", activations=["tanh"]), TypeError, "not both"),
    (dict(nin=2, nouts=[1], init="normal"), ValueError, "unknown init 'normal'"),
    (dict(nin=2, nouts=[1], seed=1, rng=random.Random(1)), TypeError, "seed= or rng=, not both"),
    (dict(nin=2, nouts=[1], seed=1.5), TypeError, "seed must be an int"),
    (dict(nin=2, nouts=[1], rng=1), TypeError, "rng must be a random.Random"),
    (dict(nin=2, nouts=[1], weights=[[[1.0, 2.0]]]), StateError,
     r"weights\[0\]\[0\] should be 3 numbers \(2 weights then the bias\), got 2"),
    (dict(nin=2, nouts=[1], weights=[[[1.0, 2.0, "x"]]]), StateError, r"weights\[0\]\[0\]\[2\] should be a number"),
    (dict(nin=2, nouts=[1], weights=[[[1.0, math.nan, 0.0]]]), StateError, r"weights\[0\]\[0\]\[1\] is nan"),
    (dict(nin=2, nouts=[2], weights=[[[1.0, 2.0, 3.0]]]), StateError, r"weights\[0\] should list 2 neurons, got 1"),
    (dict(nin=2, nouts=[2, 1], weights=[[[1.0, 2.0, 3.0]] * 2]), StateError, "weights should list 2 layers, got 1"),
])
def test_bad_construction_is_a_clear_error(kwargs, error, message):
    with pytest.raises(error, match=message):
        MLP(**kwargs)


# -- initialisation --------------------------------------------------------------------------------

def data(model):
    return [p.data for p in model.parameters()]


def test_init_is_seedable_and_never_uses_the_global_random_state():
    random.seed(123)
    state = random.getstate()
    a, b = MLP(3, [4, 2], seed=7), MLP(3, [4, 2], rng=random.Random(7))
    c, d = MLP(3, [4, 2], seed=8), MLP(3, [4, 2])
    assert random.getstate() == state
    assert data(a) == data(b) and data(a) != data(c) and data(a) != data(d)
    rng = random.Random(0)
    first, second = Layer(2, 2, rng=rng), Layer(2, 2, rng=rng)
    assert data(first) != data(second)  # one generator, drawn on


def test_uniform_init_is_the_seeds_uniform_minus_one_to_one():
    values = data(MLP(10, [20, 20, 1], init="uniform", seed=0))
    assert all(-1.0 <= v <= 1.0 for v in values)
    assert min(values) < -0.95 and max(values) > 0.95  # spread over the whole interval


@pytest.mark.parametrize("init, limit", [("xavier", math.sqrt(6 / (10 + 20))), ("he", math.sqrt(6 / 10))])
def test_scaled_inits_bound_weights_by_fan_and_zero_the_biases(init, limit):
    layer = Layer(10, 20, "relu" if init == "he" else "tanh", init=init, seed=0)
    weights = [w.data for n in layer.neurons for w in n.w]
    assert all(-limit <= w <= limit for w in weights) and max(map(abs, weights)) > 0.9 * limit
    assert all(n.b.data == 0.0 for n in layer.neurons)


# -- state dicts and files -------------------------------------------------------------------------

AWKWARD = [[[0.1, 1 / 3, -2.0e-308], [5e-324, -0.0, 1e300], [math.pi, -math.e, 123456789.123456789]],
           [[0.7, -1.0000000000000002, 2.0 ** -40, 0.3]]]


def test_save_then_load_round_trips_every_parameter_exactly(tmp_path):
    model = MLP(2, [3, 1], activations=["tanh", "sigmoid"], weights=AWKWARD)
    path = tmp_path / "model.json"
    model.save(path)
    state = json.loads(path.read_text())
    assert state == {"format": "microgd-mlp", "version": 1, "sizes": [2, 3, 1],
                     "activations": ["tanh", "sigmoid"], "weights": AWKWARD}
    loaded = MLP.load(path)
    assert isinstance(loaded, MLP) and loaded.sizes == [2, 3, 1] and loaded.activations == ["tanh", "sigmoid"]
    assert [x.hex() for x in data(loaded)] == [x.hex() for x in data(model)]  # bit for bit, -0.0 included
    other = MLP(2, [3, 1], activations=["tanh", "sigmoid"], seed=0)
    assert other.load(str(path)) is other and data(other) == data(model)
    assert loaded([0.3, -0.4]).data == model([0.3, -0.4]).data


def test_state_dict_round_trip_and_shape_check():
    model = MLP(2, [3, 1], seed=0)
    copy = MLP(2, [3, 1], seed=1)
    copy.load_state_dict(model.state_dict())
    assert data(copy) == data(model)
    before = data(copy)
    with pytest.raises(StateError, match=r"state dict: holds a network \[2, 3, 1\].*this model is \[2, 4, 1\]"):
        MLP(2, [4, 1], seed=0).load_state_dict(model.state_dict())
    with pytest.raises(StateError, match="this model is"):
        MLP(2, [3, 1], "tanh", seed=0).load_state_dict(model.state_dict())
    assert data(copy) == before


def test_neurons_and_layers_save_and_load_too(tmp_path):
    neuron, layer = Neuron(3, "tanh", seed=0), Layer(2, 4, "relu", seed=0)
    neuron.save(tmp_path / "n.json")
    layer.save(tmp_path / "l.json")
    assert data(Neuron.load(tmp_path / "n.json")) == data(neuron)
    assert data(Layer.load(tmp_path / "l.json")) == data(layer)
    MLP(2, [3, 1], seed=0).save(tmp_path / "m.json")
    with pytest.raises(StateError, match=r"m.json: holds a network \[2, 3, 1\] of 2 layers, not a single layer"):
        Layer.load(tmp_path / "m.json")
    with pytest.raises(StateError, match="l.json: holds a network .2, 4., not a single neuron"):
        Neuron.load(tmp_path / "l.json")


def edit(state, **changes):
    return {**state, **changes}


GOOD = MLP(2, [3, 1], seed=0).state_dict()
BAD_FILES = [
    (lambda text: text[: len(text) // 2], r"not valid JSON at line 1 column \d+.*truncated or hand-edited"),
    (lambda text: "", "not valid JSON at line 1 column 1"),
    (lambda text: json.dumps([1, 2]), "expected a JSON object, got list"),
    (lambda text: json.dumps(edit(GOOD, format="pickle")), "not a microgd model .format 'pickle'"),
    (lambda text: json.dumps(edit(GOOD, version=2)), "written by a newer microgd .format version 2."),
    (lambda text: json.dumps(edit(GOOD, version="1")), "unsupported format version '1'"),
    (lambda text: json.dumps({k: v for k, v in GOOD.items() if k != "sizes"}), "missing 'sizes'"),
    (lambda text: json.dumps(edit(GOOD, extra=1)), "unexpected 'extra'"),
    (lambda text: json.dumps(edit(GOOD, sizes=[2, 0, 1])), "sizes should be a list of at least 2 whole numbers"),
    (lambda text: json.dumps(edit(GOOD, activations=["sigmoid", "softmax"])), "activations should list 2 of"),
    (lambda text: json.dumps(edit(GOOD, weights=GOOD["weights"][:1])), "weights should list 2 layers, got 1"),
    # the last number only is bad: nothing before it may have been loaded
    (lambda text: text.replace(repr(GOOD["weights"][1][0][3]), '"0.5"'), r"weights\[1\]\[0\]\[3\] should be a number"),
    (lambda text: text.replace(repr(GOOD["weights"][1][0][3]), "NaN"), r"weights\[1\]\[0\]\[3\] is nan"),
    (lambda text: text.replace(repr(GOOD["weights"][1][0][3]), "1e999"), r"weights\[1\]\[0\]\[3\] is inf"),
    (lambda text: text.replace(repr(GOOD["weights"][1][0][3]), "true"), r"weights\[1\]\[0\]\[3\] should be a number"),
    (lambda text: text.replace(repr(GOOD["weights"][0][2][1]) + ", ", ""), r"weights\[0\]\[2\] should be 3 numbers"),
]


@pytest.mark.parametrize("damage, message", BAD_FILES)
def test_a_bad_file_is_a_clear_error_and_leaves_the_model_untouched(tmp_path, damage, message):
    path = tmp_path / "model.json"
    source = MLP(2, [3, 1], seed=0)
    assert source.state_dict() == GOOD
    source.save(path)
    path.write_text(damage(path.read_text()))
    model = MLP(2, [3, 1], seed=5)
    before = data(model)
    with pytest.raises(StateError, match=message) as caught:
        model.load(path)
    assert str(caught.value).startswith(str(path) + ": ")
    assert data(model) == before
    with pytest.raises(StateError, match=message):
        MLP.load(path)


def test_a_binary_file_is_a_clear_error(tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(StateError, match="model.json: not a UTF-8 text file"):
        MLP.load(path)


def files(folder):
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("crash", ["mid-write", "os.replace"])
def test_saving_is_atomic_a_crash_leaves_the_old_file(tmp_path, monkeypatch, crash):
    path = tmp_path / "model.json"
    MLP(2, [3, 1], seed=0).save(path)
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
        MLP(2, [3, 1], seed=1).save(path)
    assert path.read_bytes() == good
    assert files(tmp_path) == ["model.json"]  # no temporary file left behind
    assert data(MLP.load(path)) == data(MLP(2, [3, 1], seed=0))


def test_save_to_a_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot write .*nowhere.model.json.*: folder .*nowhere.* does not exist"):
        MLP(2, [1], seed=0).save(tmp_path / "nowhere" / "model.json")


def test_save_replaces_an_old_file_and_respects_the_umask(tmp_path):
    path = tmp_path / "model.json"
    MLP(2, [3, 1], seed=0).save(path)
    MLP(2, [3, 1], seed=1).save(str(path))
    assert data(MLP.load(path)) == data(MLP(2, [3, 1], seed=1))
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert files(tmp_path) == ["model.json"]
