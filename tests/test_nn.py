"""microgd.nn: tutorial 2's worked example to the last digit, the delta rule as a property, micrograd's
nn API (its moons demo gives micrograd's numbers), initialisation, the model API and state dicts."""

import collections
import itertools
import math
import random

import micrograd.engine
import micrograd.nn
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import microgd.nn
from microgd import Value, define_op, rules
from microgd.losses import half_squared_error
from microgd.nn import MLP, Layer, Neuron, StateError, activation_names
from microgd.optim import SGD

# Tutorial 2's initial weights, per neuron [w1, ..., wn, b]: hidden units h1..h3, then the output y.
TUTORIAL2_WEIGHTS = [[[-0.5, -1.0, 0.5], [-0.5, 0.5, 0.5], [1.0, 0.0, 0.5]], [[0.5, -1.0, 0.0, 0.5]]]
TUTORIAL2_X = [1.0, 1.0]  # the first row (70, 98) of tutorial 2's table, normalised to [0, 1]


def tutorial2_model():
    return MLP(2, [3, 1], activation="sigmoid", weights=TUTORIAL2_WEIGHTS)


def sigmoid(s):
    return 1.0 / (1.0 + math.exp(-s))


# -- tutorial 2's worked example ---------------------------------------------------------------------

def test_tutorial2_forward_pass_to_four_places():
    model = tutorial2_model()
    hidden = model.layers[0](TUTORIAL2_X)
    y = model(TUTORIAL2_X)
    assert [round(a.data, 4) for a in hidden] == [0.2689, 0.6225, 0.8176]
    assert round(y.data, 4) == 0.5030
    assert [a.data for a in hidden] == [sigmoid(-1.0), sigmoid(0.5), sigmoid(1.5)]


def output_delta(target):
    """The engine's delta at the output unit: d loss / d s for tutorial 2's 1/2 (y - z)^2."""
    model = tutorial2_model()
    y = model(TUTORIAL2_X)
    half_squared_error(y, target).backward()
    s = y.parents[0]  # the output neuron's weighted sum
    assert s.op == "weighted_sum"
    return y.data, s.grad


def test_tutorial2_output_delta_for_the_unnormalised_target_91():
    y, delta = output_delta(91.0)
    assert delta == pytest.approx(y * (1 - y) * (y - 91.0), rel=1e-15)
    assert round(delta, 4) == -22.6234
    # The tutorial prints 0.5030 (1 - 0.5030) = 0.2494 and delta = 0.2494 * -90.4970 = -22.56.
    # Wrong: 0.5030 * 0.4970 = 0.2500 (0.249991), and even 0.2494 * -90.4970 is -22.5700.
    # Rounding y to 0.5030 is harmless (its delta is -22.6234 too); the true delta is -22.6234,
    # 0.0634 below the tutorial's -22.56.
    assert round(y * (1 - y), 4) == 0.2500 != 0.2494
    assert round(0.5030 * (1 - 0.5030) * (0.5030 - 91), 4) == -22.6234
    assert round(0.2494 * -90.4970, 4) == -22.5700
    assert round(delta - (-22.56), 4) == -0.0634


def test_tutorial2_output_delta_for_the_normalised_target():
    y, delta = output_delta(1.0)  # Z0 = 91 is the column's maximum: 1.0 on [0, 1]
    assert delta == pytest.approx(y * (1 - y) * (y - 1.0), rel=1e-15)
    assert round(delta, 4) == -0.1242


def test_one_sgd_step_is_tutorial2s_delta_rule_update():
    eta, z = 0.1, 1.0
    model = tutorial2_model()
    loss = half_squared_error(model(TUTORIAL2_X), z)
    model.zero_grad()
    loss.backward()
    SGD(model.parameters(), lr=eta).step()

    # By hand, from the tutorial's formulas.
    (hidden_rows, (out_row,)) = TUTORIAL2_WEIGHTS
    a = [sigmoid(sum(w * x for w, x in zip(row[:-1], TUTORIAL2_X)) + row[-1]) for row in hidden_rows]
    y = sigmoid(sum(w * ai for w, ai in zip(out_row[:-1], a)) + out_row[-1])
    delta_o = y * (1 - y) * (y - z)
    delta_h = [aj * (1 - aj) * out_row[j] * delta_o for j, aj in enumerate(a)]
    expected = []
    for row, d in zip(hidden_rows, delta_h):
        expected += [w - eta * d * x for w, x in zip(row[:-1], TUTORIAL2_X)] + [row[-1] - eta * d]
    expected += [w - eta * delta_o * ai for w, ai in zip(out_row[:-1], a)] + [out_row[-1] - eta * delta_o]

    assert [p.data for p in model.parameters()] == pytest.approx(expected, rel=1e-14, abs=1e-16)
    assert model.parameters()[12].data != out_row[-1]  # the step moved the output bias


# -- the delta rule, as a property -----------------------------------------------------------------

ACT = {"sigmoid": sigmoid, "tanh": math.tanh}
DERIVATIVE_FROM_OUTPUT = {"sigmoid": lambda a: a * (1 - a), "tanh": lambda a: 1 - a * a}


def delta_rule_gradients(weights, activations, x, z):
    """Every parameter's gradient of 1/2 sum (y_k - z_k)^2 by tutorial 2's delta rule, in parameters() order,
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
    weights = [[[draw(number) for _ in range(nin_ + 1)] for _ in range(nout)]
               for nin_, nout in itertools.pairwise(sizes)]
    x = [draw(st.floats(-1.0, 1.0)) for _ in range(nin)]
    z = [draw(st.floats(0.0, 1.0)) for _ in range(sizes[-1])]
    return sizes, activations, weights, x, z


@given(networks())
@example(([1, 2, 2, 2, 1], ["sigmoid"] * 4, [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]],
                                              [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[2.2250738585e-313, 0.0, 0.0]]],
          [0.0], [0.0]))  # gradients near 2e-315: one subnormal step apart, 5e-324, is 2e-9 of them
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
    assert len(engine) == len(hand) == sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    for i, (e, h, s) in enumerate(zip(engine, hand, scale)):  # below 2.2e-308 rounding is absolute: 5e-324 a step
        assert abs(e - h) <= 1e-9 * s + 64 * 5e-324, f"parameter {i}: engine {e!r}, delta rule {h!r}"


# -- building models -------------------------------------------------------------------------------

def test_one_weighted_sum_node_per_neuron_and_inputs_wrapped_once():
    model = tutorial2_model()
    y = model(TUTORIAL2_X)
    # 2 inputs + 13 parameters + (weighted_sum, sigmoid) for each of the 4 neurons
    assert len(y.topo()) == 2 + 13 + 8
    assert y.op == "sigmoid" and y.parents[0].op == "weighted_sum"
    first, second, _ = (a.parents[0] for a in model.layers[0](TUTORIAL2_X))
    assert first.parents[2] is second.parents[2] and first.parents[3] is second.parents[3]
    assert first.parents[2].op == "" and first.parents[2].label == "x1"


def test_every_node_a_call_makes_is_labelled_by_unit():
    model = tutorial2_model()
    y = model(TUTORIAL2_X)
    s_y = y.parents[0]
    hidden = s_y.parents[3:6]
    assert (y.label, s_y.label, [h.label for h in hidden]) == ("y", "s_y", ["h1", "h2", "h3"])
    assert [h.parents[0].label for h in hidden] == ["s_h1", "s_h2", "s_h3"]
    assert [v.label for v in y.topo() if not v.parents] == ["w_h1_1", "w_h1_2", "b_h1", "w_h2_1", "w_h2_2", "b_h2",
                                                            "w_h3_1", "w_h3_2", "b_h3", "w_y_1", "w_y_2", "w_y_3",
                                                            "b_y", "x1", "x2"]
    assert all(v.label for v in y.topo())  # no node of the network is left unnamed
    linear = MLP(2, [2, 2, 1], seed=0)  # relu hidden layers, a linear output: its sum is the output y
    out = linear([0.5, -0.5])
    assert (out.op, out.label) == ("weighted_sum", "y")
    assert sorted(v.label for v in out.topo() if v.parents) == ["h1_1", "h1_2", "h2_1", "h2_2", "s_h1_1", "s_h1_2",
                                                                 "s_h2_1", "s_h2_2", "y"]
    again = model(TUTORIAL2_X)  # each call labels its own nodes, the same way
    assert again is not y and again.label == "y" and again.parents[0].label == "s_y"
    plain = Neuron(2, "tanh", weights=[1.0, 1.0, 0.0])([0.5, 0.5])  # a unit with no name: micrograd's nodes
    assert (plain.label, plain.parents[0].label) == ("", "")


def test_parameters_order_layer_neuron_weights_then_bias_labelled_by_unit():
    model = tutorial2_model()
    flat = [x for layer in TUTORIAL2_WEIGHTS for row in layer for x in row]
    assert [p.data for p in model.parameters()] == flat
    assert model.parameters()[2] is model.layers[0].neurons[0].b
    assert model.parameters()[9] is model.layers[1].neurons[0].w[0]
    assert model.sizes == [2, 3, 1] and model.activations == ["sigmoid", "sigmoid"]
    assert [p.label for p in model.parameters()] == ["w_h1_1", "w_h1_2", "b_h1", "w_h2_1", "w_h2_2", "b_h2",
                                                     "w_h3_1", "w_h3_2", "b_h3", "w_y_1", "w_y_2", "w_y_3", "b_y"]
    deep = MLP(2, [2, 1, 2], seed=0)  # several hidden layers: h<layer>_<unit>; several outputs: y1, y2
    assert [n.b.label for layer in deep.layers for n in layer.neurons] == ["b_h1_1", "b_h1_2", "b_h2_1", "b_y1",
                                                                            "b_y2"]
    assert [n.label for layer in deep.layers for n in layer.neurons] == ["h1_1", "h1_2", "h2_1", "y1", "y2"]
    assert [p.label for p in Layer(1, 2, label=["a", "b"], seed=0).parameters()] == ["w_a_1", "b_a", "w_b_1", "b_b"]
    assert [p.label for p in Layer(1, 2, seed=0).parameters()] == ["w_n1_1", "b_n1", "w_n2_1", "b_n2"]
    assert [p.label for p in Neuron(2, seed=0).parameters()] == ["w1", "w2", "b"]
    assert all(p.label.isidentifier() for p in [*model.parameters(), *deep.parameters()])
    with pytest.raises(ValueError, match="Layer label should name 2 neurons, got"):
        Layer(1, 2, label=["a"])


@pytest.mark.parametrize("activation, expected", [
    ("sigmoid", sigmoid(0.5)), ("tanh", math.tanh(0.5)), ("relu", 0.5), ("linear", 0.5), ("exp", math.exp(0.5)),
])
def test_activations(activation, expected):
    neuron = Neuron(2, activation, weights=[1.0, -1.0, 0.5])
    out = neuron([0.25, 0.25])
    assert out.data == pytest.approx(expected, rel=1e-15)
    assert out.op == ("weighted_sum" if activation == "linear" else activation)
    negative = {"sigmoid": sigmoid(-0.5), "tanh": math.tanh(-0.5), "relu": 0.0, "linear": -0.5,
                "exp": math.exp(-0.5)}[activation]
    assert neuron([-1.0, 0.0]).data == pytest.approx(negative, rel=1e-15)


def test_linear_is_the_registrys_identity_and_a_linear_neuron_skips_it():
    assert rules.OPS["linear"] is rules.linear and activation_names()[0] == "linear"
    model = MLP(2, [3, 1], activations=["linear", "linear"], seed=0)
    out = model([0.5, -0.25])
    # as before the identity was an op: per neuron its weights, its bias and its weighted_sum, no identity node
    assert collections.Counter(v.op for v in out.topo()) == {"": 2 + 3 * 3 + 4, "weighted_sum": 4}
    assert len(MLP(2, [3, 1], activations=["tanh", "linear"], seed=0)([0.5, -0.25]).topo()) == len(out.topo()) + 3
    applied = rules.linear(Value(2.0) * Value(3.0))  # applied by hand it is a node like any op's
    applied.backward()
    assert (applied.op, applied.data, applied.parents[0].grad) == ("linear", 6.0, 1.0)


def softsign_forward(x):
    return x / (1 + abs(x))


def test_an_op_made_with_define_op_is_an_activation_by_name(forget_defined_ops):
    define_op("nn_test_softsign", forward=softsign_forward, vjp=lambda g, out, x: (g / ((1 + abs(x)) * (1 + abs(x))),))
    assert "nn_test_softsign" in activation_names() and "linear" in activation_names()
    assert "+" not in activation_names() and "weighted_sum" not in activation_names()  # not one input
    model = MLP(1, [2, 1], activations=["nn_test_softsign", "linear"], weights=[[[2.0, 0.0], [-1.0, 0.5]],
                                                                                  [[1.0, 1.0, 0.0]]])
    y = model([0.5])
    assert y.data == pytest.approx(softsign_forward(1.0) + softsign_forward(0.0), rel=1e-15)
    y.backward()
    assert model.layers[0].neurons[0].w[0].grad == pytest.approx(0.5 / (1 + 1.0) ** 2, rel=1e-15)
    assert repr(model.layers[0]) == "Layer of [Nn_test_softsignNeuron(1), Nn_test_softsignNeuron(1)]"
    assert MLP.from_state_dict(model.state_dict()).activations == ["nn_test_softsign", "linear"]


def test_an_op_named_like_a_value_method_that_is_not_it_still_applies_the_op(forget_defined_ops):
    define_op("topo", forward=lambda x: 2 * x, vjp=lambda g, out, x: (2 * g,))  # Value.topo lists a graph
    out = Neuron(1, "topo", weights=[1.0, 0.5])([1.0])
    assert (out.op, out.data) == ("topo", 3.0)


def test_activation_applies_to_every_layer_and_activations_per_layer():
    assert MLP(2, [3, 2, 1], "tanh", seed=0).activations == ["tanh"] * 3
    assert MLP(2, [3, 1], activation="sigmoid", seed=0).activations == ["sigmoid", "sigmoid"]
    model = MLP(2, [3, 1], activations=["relu", "linear"], seed=0)
    assert model.activations == ["relu", "linear"]
    assert model([0.3, -0.2]).op == "weighted_sum"


def test_model_output_is_a_value_or_a_list():
    assert isinstance(MLP(2, [3, 1], seed=0)([0.1, 0.2]), Value)
    out = MLP(2, [3, 2], seed=0)([0.1, 0.2])
    assert isinstance(out, list) and len(out) == 2
    assert isinstance(MLP(2, [1, 3, 1], seed=0)([0.1, 0.2]), Value)  # a hidden layer of one unit feeds on
    assert isinstance(Layer(2, 1, seed=0)([0.1, 0.2]), Value)  # micrograd: out[0] if len(out) == 1 else out
    assert len(Layer(2, 2, seed=0)([0.1, 0.2])) == 2


def test_inputs_may_be_values_and_get_gradients():
    x = [Value(1.0), Value(1.0)]
    model = tutorial2_model()
    half_squared_error(model(x), 1.0).backward()
    assert x[0].grad != 0.0 and math.isfinite(x[1].grad)


@pytest.mark.parametrize("x, error, message", [
    ([1.0, 2.0, 3.0], ValueError, "MLP expected 2 inputs, got 3"),
    ([1.0], ValueError, "MLP expected 2 inputs, got 1"),
    (1.0, TypeError, "MLP expected a list of 2 inputs, got float"),
    (["a", 1.0], TypeError, "real number"),
])
def test_model_checks_its_input(x, error, message):
    with pytest.raises(error, match=message):
        tutorial2_model()(x)


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
    (dict(nin=2, nouts=[1], activation="softmax"), ValueError, "unknown activation 'softmax': choose from linear, "),
    (dict(nin=2, nouts=[1], activation="+"), ValueError, r"unknown activation '\+'"),
    (dict(nin=2, nouts=[3, 1], activations=["tanh"]), ValueError, "one activation per layer"),
    (dict(nin=2, nouts=[1], activation="tanh", activations=["tanh"]), TypeError, "not both"),
    (dict(nin=2, nouts=[1], init="normal"), ValueError, "unknown init 'normal'"),
    (dict(nin=2, nouts=[1], seed=1, rng=random.Random(1)), TypeError, "seed= or rng=, not both"),
    (dict(nin=2, nouts=[1], seed=1.5), TypeError, "seed must be a whole number or None, got 1.5"),
    (dict(nin=2, nouts=[1], rng=1), TypeError, "rng must be a random.Random"),
    (dict(nin=2, nouts=[1], weights=[[[1.0, 2.0]]]), StateError,
     r"weights\[0\]\[0\] should list 3 numbers \(2 weights then the bias\), got 2"),
    (dict(nin=2, nouts=[1], weights=[[[1.0, 2.0, "x"]]]), StateError,
     r"weights\[0\]\[0\]\[2\] must be a finite number, got 'x'"),
    (dict(nin=2, nouts=[1], weights=[[[1.0, math.nan, 0.0]]]), StateError,
     r"weights\[0\]\[0\]\[1\] must be a finite number, got nan"),
    (dict(nin=2, nouts=[1], weights=[[[1.0, 10 ** 400, 0.0]]]), StateError,
     r"weights\[0\]\[0\]\[1\] must be a finite number, got an integer of 401 digits"),
    (dict(nin=2, nouts=[2], weights=[[[1.0, 2.0, 3.0]]]), StateError, r"weights\[0\] should list 2 neurons, got 1"),
    (dict(nin=2, nouts=[2, 1], weights=[[[1.0, 2.0, 3.0]] * 2]), StateError, "weights should list 2 layers, got 1"),
])
def test_bad_construction_is_a_clear_error(kwargs, error, message):
    with pytest.raises(error, match=message):
        MLP(**kwargs)


@pytest.mark.parametrize("make, error, message", [
    (lambda: Neuron(2, "softmax"), ValueError, "unknown activation 'softmax'"),
    (lambda: Neuron(2, 1), TypeError, r"Neuron: nonlin must be True \(ReLU\), False \(linear\) or an activation's"),
    (lambda: Neuron(2, True, activation="tanh"), TypeError, "Neuron takes nonlin .* or activation=, not both"),
    (lambda: Layer(2, 2, nonlin=False, activation="tanh"), TypeError, "Layer takes nonlin"),
    (lambda: Neuron(2, weights=[1.0]), StateError, r"weights should list 3 numbers"),
    (lambda: Layer(2, 0), ValueError, "Layer nout must be a whole number >= 1, got 0"),
])
def test_bad_neurons_and_layers_are_clear_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


# -- micrograd's nn API ------------------------------------------------------------------------------

def test_micrograds_defaults_relu_neurons_relu_hidden_layers_linear_output():
    assert Neuron(2, seed=0).activation == "relu" and Neuron(2, seed=0).nonlin is True
    assert Neuron(2, nonlin=False, seed=0).activation == "linear" and Neuron(2, False, seed=0).nonlin is False
    assert Neuron(2, "linear", seed=0).nonlin is False and Neuron(2, "tanh", seed=0).nonlin is True
    assert Neuron(2, activation="tanh", seed=0).activation == "tanh"
    assert Layer(3, 2, nonlin=False, seed=0).activations == ["linear"]
    assert MLP(2, [16, 16, 1], seed=0).activations == ["relu", "relu", "linear"]
    assert MLP(2, [1], seed=0).activations == ["linear"]


def micrograd_and_microgd(build):
    """``build(nn)`` with micrograd's nn and with ours, each after random.seed(1337)."""
    random.seed(1337)
    theirs = build(micrograd.nn)
    random.seed(1337)
    ours = build(microgd.nn)
    return theirs, ours


@pytest.mark.parametrize("build", [
    lambda nn: nn.Neuron(3), lambda nn: nn.Neuron(2, nonlin=False), lambda nn: nn.Layer(2, 3),
    lambda nn: nn.Layer(4, 1, nonlin=False), lambda nn: nn.MLP(2, [16, 16, 1]), lambda nn: nn.MLP(3, [4, 2]),
], ids=["Neuron", "linear Neuron", "Layer", "linear Layer of one", "MLP 2-16-16-1", "MLP 3-4-2"])
def test_same_parameters_order_and_repr_as_micrograd_from_the_global_random(build):
    theirs, ours = micrograd_and_microgd(build)
    assert [p.data for p in ours.parameters()] == [p.data for p in theirs.parameters()]
    assert repr(ours) == repr(theirs)
    assert all(row[-1] == 0.0 for layer in ours.state_dict()["weights"] for row in layer)  # biases start at 0


def test_micrograds_calls_return_the_same_values():
    theirs, ours = micrograd_and_microgd(lambda nn: nn.Layer(3, 1))
    x = [0.5, -1.0, 2.0]
    assert isinstance(ours(x), Value) and ours(x).data == pytest.approx(theirs(x).data, rel=1e-15)
    theirs, ours = micrograd_and_microgd(lambda nn: nn.MLP(3, [4, 2]))
    assert [v.data for v in ours(x)] == pytest.approx([v.data for v in theirs(x)], rel=1e-15)
    ours(x)[0].backward()
    assert any(p.grad for p in ours.parameters())
    ours.zero_grad()
    assert all(p.grad == 0.0 for p in ours.parameters())


MOONS = [[1.0, 0.5], [-0.3, 0.8], [0.2, -0.4], [1.5, -0.1], [-1.0, 0.2], [0.4, 0.9], [2.0, 0.3], [0.9, -0.5]]
MOON_LABELS = [1, -1, 1, -1, 1, -1, 1, -1]


def moons_demo(nn, Value, steps=8):
    """micrograd's demo.ipynb, shortened: MLP(2, [16, 16, 1]), SVM max-margin loss, L2, decaying SGD."""
    random.seed(1337)
    model = nn.MLP(2, [16, 16, 1])
    losses = []
    for k in range(steps):
        inputs = [list(map(Value, xrow)) for xrow in MOONS]
        scores = list(map(model, inputs))
        data_losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(MOON_LABELS, scores)]
        data_loss = sum(data_losses) * (1.0 / len(data_losses))
        alpha = 1e-4
        reg_loss = alpha * sum(p * p for p in model.parameters())
        total_loss = data_loss + reg_loss
        model.zero_grad()
        total_loss.backward()
        learning_rate = 1.0 - 0.9 * k / 100
        for p in model.parameters():
            p.data -= learning_rate * p.grad
        losses.append(total_loss.data)
    return losses, [p.data for p in model.parameters()]


def test_micrograds_moons_demo_gives_micrograds_numbers():
    their_losses, their_params = moons_demo(micrograd.nn, micrograd.engine.Value)
    our_losses, our_params = moons_demo(microgd.nn, Value)
    assert our_losses == pytest.approx(their_losses, rel=0, abs=1e-12)
    assert our_params == pytest.approx(their_params, rel=0, abs=1e-12)
    assert len(set(our_losses)) == len(our_losses) and our_losses[-1] < our_losses[0]  # it trained


# -- initialisation --------------------------------------------------------------------------------

def data(model):
    return [p.data for p in model.parameters()]


def test_seed_rng_and_the_global_random_draw_the_same_numbers():
    random.seed(7)
    from_global = MLP(3, [4, 2])
    assert data(from_global) == data(MLP(3, [4, 2], seed=7)) == data(MLP(3, [4, 2], rng=random.Random(7)))
    assert data(MLP(3, [4, 2], seed=8)) != data(from_global)


def test_seed_and_rng_leave_the_global_random_state_alone():
    random.seed(123)
    state = random.getstate()
    MLP(3, [4, 2], seed=7), MLP(3, [4, 2], rng=random.Random(7)), Layer(2, 2, seed=1), Neuron(2, seed=1)
    MLP(3, [4, 2], weights=[[[0.0] * 4] * 4, [[0.0] * 5] * 2])
    assert random.getstate() == state
    rng = random.Random(0)
    first, second = Layer(2, 2, rng=rng), Layer(2, 2, rng=rng)
    assert data(first) != data(second)  # one generator, drawn on


def test_uniform_init_is_micrograds_weights_in_minus_one_to_one_and_zero_biases():
    model = MLP(10, [20, 20, 1], init="uniform", seed=0)
    weights = [w.data for layer in model.layers for n in layer.neurons for w in n.w]
    assert all(-1.0 <= v <= 1.0 for v in weights)
    assert min(weights) < -0.95 and max(weights) > 0.95  # spread over the whole interval
    assert all(n.b.data == 0.0 for layer in model.layers for n in layer.neurons)


@pytest.mark.parametrize("init, limit", [("xavier", math.sqrt(6 / (10 + 20))), ("he", math.sqrt(6 / 10))])
def test_scaled_inits_bound_weights_by_fan_and_zero_the_biases(init, limit):
    layer = Layer(10, 20, "relu" if init == "he" else "tanh", init=init, seed=0)
    weights = [w.data for n in layer.neurons for w in n.w]
    assert all(-limit <= w <= limit for w in weights) and max(map(abs, weights)) > 0.9 * limit
    assert all(n.b.data == 0.0 for n in layer.neurons)


# -- state dicts -----------------------------------------------------------------------------------

def test_state_dict_is_plain_data_and_round_trips():
    model = MLP(2, [3, 1], activations=["tanh", "sigmoid"], seed=0)
    state = model.state_dict()
    assert state == {"sizes": [2, 3, 1], "activations": ["tanh", "sigmoid"],
                     "weights": [[[p.data for p in (*n.w, n.b)] for n in layer.neurons] for layer in model.layers]}
    copy = MLP(2, [3, 1], activations=["tanh", "sigmoid"], seed=1)
    assert data(copy) != data(model)
    copy.load_state_dict(state)
    assert data(copy) == data(model)
    rebuilt = MLP.from_state_dict(state)
    assert rebuilt.activations == ["tanh", "sigmoid"] and data(rebuilt) == data(model)
    assert rebuilt([0.3, -0.4]).data == model([0.3, -0.4]).data


def test_neurons_and_layers_have_state_dicts_too():
    neuron, layer = Neuron(3, "tanh", seed=0), Layer(2, 4, "relu", seed=0)
    assert neuron.state_dict()["sizes"] == [3, 1] and layer.state_dict()["sizes"] == [2, 4]
    other = Layer(2, 4, "relu", seed=1)
    other.load_state_dict(layer.state_dict())
    assert data(other) == data(layer)
    assert data(MLP.from_state_dict(neuron.state_dict())) == data(neuron)
    with pytest.raises(StateError, match=r"holds a network \[3, 1\] \['tanh'\], but this model is \[2, 4\]"):
        other.load_state_dict(neuron.state_dict())


GOOD = MLP(2, [3, 1], seed=0).state_dict()
BAD_STATES = [
    ([1, 2], "a state dict should be an object with keys sizes, activations, weights, got list"),
    ({k: v for k, v in GOOD.items() if k != "sizes"}, "missing 'sizes'"),
    ({**GOOD, "format": "microgd-mlp"}, "unexpected 'format'"),
    ({**GOOD, "sizes": [2, 0, 1]}, "sizes should be a list of at least 2 whole numbers >= 1"),
    ({**GOOD, "sizes": [2]}, "sizes should be a list of at least 2 whole numbers"),
    ({**GOOD, "activations": ["relu", "softmax"]}, "activations should list 2 of linear, "),
    ({**GOOD, "activations": ["relu", ["linear"]]}, "activations should list 2 of"),
    ({**GOOD, "weights": GOOD["weights"][:1]}, "weights should list 2 layers, got 1"),
    ({**GOOD, "weights": [GOOD["weights"][0], [[0.5, 0.5, 0.5, "0.5"]]]},
     r"weights\[1\]\[0\]\[3\] must be a finite number, got '0.5'"),
    ({**GOOD, "weights": [GOOD["weights"][0], [[0.5, 0.5, 0.5, math.inf]]]},
     r"weights\[1\]\[0\]\[3\] must be a finite number, got inf"),
    ({**GOOD, "sizes": [2, 4, 1]}, r"weights\[0\] should list 4 neurons, got 3"),
    ({**GOOD, "activations": ["relu", "relu"]}, r"holds a network \[2, 3, 1\] \['relu', 'relu'\], but this model"),
]


@pytest.mark.parametrize("state, message", BAD_STATES)
def test_a_bad_state_dict_is_a_clear_error_and_leaves_the_model_untouched(state, message):
    model = MLP(2, [3, 1], seed=5)
    before = data(model)
    with pytest.raises(StateError, match=message):
        model.load_state_dict(state)
    assert data(model) == before
