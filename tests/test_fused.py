"""The fused tape: layers found in any traced graph (nn's neurons, micrograd's hand-built sums), run as matrix
products, agreeing with Tape.batch on values and gradients; what does not fuse runs as columns; errors in one line.

Agreement is to 1e-12 relative, element by element, with an absolute floor of 1e-12 times the largest entry of
the same array (at least 1): a matrix product adds in its own order, and a sum that cancels to nearly 0 keeps
the rounding of its terms, which is relative to them, not to itself."""

import math
import random
import re
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from microgd import DomainError, Value, define_op, fused_program, rules
from microgd import fused as fusing
from microgd.fused import FusedLayer, FusedTape
from microgd.losses import binary_cross_entropy, cross_entropy, half_squared_error, hinge, mse, squared_error
from microgd.nn import MLP
from microgd.tape import trace
from microgd.testing import expressions, mlps

TOLERANCE = 1e-12
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "softplus", "sin", "abs", "neg", "step")


def agree(got, expected) -> bool:
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    floor = TOLERANCE * max(1.0, float(np.abs(expected).max(initial=0.0)))
    return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=TOLERANCE, atol=floor))


def params_of(tape):
    return np.array([p.data for p in tape.captured], dtype=float)


def replayed(tape, *arrays):
    """Tape.batch's values and summed gradients; the captured Values' .grad left as they were."""
    before = [p.grad for p in tape.captured]
    for p in tape.captured:
        p.grad = 0.0
    values = tape.batch(*arrays)
    grads = np.array([p.grad for p in tape.captured])
    for p, g in zip(tape.captured, before):
        p.grad = g
    return values, grads


def as_shown(fused, arrays, params):
    """The program run as ``source`` shows it: plain array code, every block a new array, nothing in place."""
    program = fused._program
    namespace = program.namespace(np, None)
    exec(fused.source, namespace)
    arrays = [np.asarray(a, dtype=float) for a in arrays]
    with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
        value, grads = namespace[program.function](*arrays, params)
    return np.broadcast_to(value, (len(arrays[0]),)), grads


def same(got, expected) -> bool:
    """Equal numbers (0.0 and -0.0 alike), pair by pair."""
    return all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def assert_agrees(tape, *arrays):
    """The fused run agrees with Tape.batch; it computes the numbers ``source`` does, exactly, in the arrays it
    keeps from run to run (a run on other samples in between leaves nothing behind that the next one reads);
    what it returns stays the caller's, and it only reads its arguments."""
    fused = tape.fused()
    expected_values, expected_grads = replayed(tape, *arrays)
    params = params_of(tape)
    given = [np.array(a, dtype=float) for a in (*arrays, params)]
    first = fused.run(arrays, params)
    assert agree(first[0], expected_values), fused.source
    assert agree(first[1], expected_grads), fused.source
    kept = [a.copy() for a in first]
    fused.run([a[::-1] for a in arrays], params * 0.5)  # other numbers in the working arrays
    assert same(first, kept) and same([np.asarray(a, dtype=float) for a in (*arrays, params)], given)
    assert same(fused.run(arrays, params), kept), fused._program.text(True)
    assert same(as_shown(fused, arrays, params), kept), fused._program.text(True)
    return fused


# -- networks of microgd.nn, with every loss --------------------------------------------------------------------

def outputs(model, x):
    out = model(x)
    return out if isinstance(out, list) else [out]


def loss_case(loss: str, model: MLP, size: int, rng: np.random.Generator):
    """f(x, target) with ``loss`` over the model's outputs, an example target, and a batch of targets."""
    k = model.sizes[-1]
    if loss == "cross_entropy":
        return lambda x, label: cross_entropy(outputs(model, x), label), 0, rng.integers(0, k, size) * 1.0
    if loss == "squared_error":
        return (lambda x, t: sum((squared_error(y, z) for y, z in zip(outputs(model, x), t)), Value(0.0)),
                [0.5] * k, rng.uniform(-1, 1, (size, k)))
    if loss == "mse":
        return lambda x, t: mse(outputs(model, x), t), [0.5] * k, rng.uniform(-1, 1, (size, k))
    if loss == "half_squared_error":
        return lambda x, t: half_squared_error(outputs(model, x)[0], t), 0.5, rng.uniform(-1, 1, size)
    if loss == "binary_cross_entropy":
        return (lambda x, t: binary_cross_entropy(outputs(model, x)[0].sigmoid(), t), 0.5,
                rng.integers(0, 2, size) * 1.0)
    return lambda x, label: hinge(outputs(model, x)[0], label), 1.0, rng.choice([-1.0, 1.0], size)


LOSSES = ("cross_entropy", "squared_error", "mse", "half_squared_error", "binary_cross_entropy", "hinge")


@given(mlps(max_inputs=5, hidden_layers=(0, 3), max_width=6, max_outputs=4, activations=ACTIVATIONS),
       st.sampled_from(LOSSES), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_random_networks_agree_with_the_batched_tape_and_fuse_every_layer(net, loss, size, seed):
    rng = np.random.default_rng(seed)
    f, target, targets = loss_case(loss, net.model, size, rng)
    tape = trace(f, list(net.x), target)
    fused = assert_agrees(tape, rng.uniform(-1, 1, (size, len(net.x))), targets)
    widths = [*net.sizes[1:-1], net.sizes[-1] if loss in ("cross_entropy", "squared_error", "mse") else 1]
    expected = [(a, b, None if act == "linear" else act) for a, b, act in zip(net.sizes, widths, net.activations)]
    got = [(layer.inputs, layer.units, layer.activation) for layer in fused.layers]
    if expected[-1][2] is None:  # the loss's own first op may be applied to every output: it fuses then
        expected[-1], got[-1] = expected[-1][:2], got[-1][:2]
    assert got == expected


def test_the_digits_network_is_two_matrix_products():
    model = MLP(64, [32, 10], activations=["relu", "linear"], init="he", seed=0)
    tape = trace(lambda x, label: cross_entropy(model(x), label), [0.5] * 64, 3)
    fused = tape.fused()
    assert fused.layers == [FusedLayer("s_h", 64, 32, "relu"), FusedLayer("y", 32, 10, None)]
    lines = [line.strip() for line in fused.source.splitlines()]
    assert [line for line in lines if " @ " in line and "=" in line and "_grads" not in line] == [
        "s_h = w_h @ x.T + b_h[:, None]", "y = w_y @ h + b_y[:, None]", "d_h = w_y.T @ d_y"]
    assert "h = relu(s_h)" in lines and "d_s_h = d_h * step(s_h)" in lines
    rng = np.random.default_rng(0)
    assert_agrees(tape, rng.integers(0, 17, (32, 64)) / 16.0, rng.integers(0, 10, 32) * 1.0)


# -- hand-built layers, micrograd's way and others ----------------------------------------------------------------

SPELLINGS = ("weighted_sum", "micrograd", "from_zero", "plus_bias", "input_first", "no_bias")


def unit_sum(spelling: str, w: list[Value], b: Value, xs: list) -> Value:
    """One unit's sum, spelled as people write it."""
    if spelling == "weighted_sum":
        return Value.weighted_sum(w, xs, b)
    if spelling == "micrograd":  # micrograd's Neuron: ((b + w1*x1) + w2*x2) + ...
        return sum((wi * xi for wi, xi in zip(w, xs)), b)
    if spelling == "from_zero":  # ((0 + w1*x1) + w2*x2) + ...
        return sum(wi * xi for wi, xi in zip(w, xs))
    if spelling == "plus_bias":
        return sum(wi * xi for wi, xi in zip(w, xs)) + b
    if spelling == "input_first":
        return sum((xi * wi for wi, xi in zip(w, xs)), b)
    total = w[0] * xs[0]  # no bias, no constant
    for wi, xi in zip(w[1:], xs[1:]):
        total = total + wi * xi
    return total


class HandLayer:
    """A layer written by hand, micrograd-style: lists of Values, one sum per unit, then an activation."""

    def __init__(self, nin: int, nout: int, spelling, activation, rng: random.Random):
        self.w = [[Value(rng.uniform(-1, 1)) for _ in range(nin)] for _ in range(nout)]
        self.b = [Value(rng.uniform(-1, 1)) for _ in range(nout)]
        self.spellings = spelling if isinstance(spelling, list) else [spelling] * nout
        self.activations = activation if isinstance(activation, list) else [activation] * nout

    def __call__(self, xs: list) -> list[Value]:
        sums = [unit_sum(s, w, b, xs) for s, w, b in zip(self.spellings, self.w, self.b)]
        return [getattr(s, a)() if a else s for s, a in zip(sums, self.activations)]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_hand_built_networks_fuse_like_microgd_ones(spelling):
    rng = random.Random(1)
    first, second = HandLayer(4, 5, spelling, "tanh", rng), HandLayer(5, 3, spelling, None, rng)
    tape = trace(lambda x, label: cross_entropy(second(first(x)), label), [0.1, 0.2, 0.3, 0.4], 2)
    data = np.random.default_rng(2)
    fused = assert_agrees(tape, data.uniform(-1, 1, (8, 4)), data.integers(0, 3, 8) * 1.0)
    assert [(layer.inputs, layer.units, layer.activation) for layer in fused.layers] == [(4, 5, "tanh"),
                                                                                         (5, 3, None)]


def test_micrograds_mlp_reads_as_two_layers():
    rng = random.Random(0)
    first, second = HandLayer(2, 3, "micrograd", "relu", rng), HandLayer(3, 1, "micrograd", None, rng)
    tape = trace(lambda x, t: (second(first(x))[0] - t) ** 2, [0.5, -0.5], 1.0)
    source = tape.fused().source
    assert "    z1 = w1 @ x.T + b_z1[:, None]\n    a1 = relu(z1)\n" in source
    assert "    z2 = w2 @ a1 + b_z2[:, None]\n" in source
    assert "    d_z1 = d_a1 * step(z1)\n" in source


def test_units_of_one_layer_may_be_spelled_differently_and_only_a_shared_activation_is_fused():
    rng = random.Random(3)
    mixed = HandLayer(3, 4, ["weighted_sum", "micrograd", "input_first", "weighted_sum"], "sigmoid", rng)
    some = HandLayer(4, 3, "micrograd", ["tanh", None, "tanh"], rng)
    different = HandLayer(3, 2, "micrograd", ["tanh", "relu"], rng)
    tape = trace(lambda x: sum(different(some(mixed(x))), Value(0.0)), [0.1, 0.2, 0.3])
    fused = assert_agrees(tape, np.random.default_rng(4).uniform(-2, 2, (6, 3)))
    assert [(layer.units, layer.activation) for layer in fused.layers] == [(4, "sigmoid"), (3, None), (2, None)]
    assert "tanh(z2_1)" in fused.source and "relu(z3_2)" in fused.source  # the unshared ones, as columns


# -- random traced functions: layers over any inputs, then any ops ------------------------------------------------

TAIL_OPS = ("+", "-", "*", "/", "tanh", "exp", "log", "sigmoid", "relu", "softplus", "logsumexp", "powc",
            "weighted_sum", "sin")


@st.composite
def layered_functions(draw):
    """A function of one list argument: 1 to 3 layers, each over the argument's numbers, the previous layer's
    outputs or any earlier numbers (repeats too), each unit spelled its own way with its own activation or
    the layer's, then random ops (microgd.testing.expressions) over some of the numbers made."""
    rng = random.Random(draw(st.integers(0, 2**16)))
    n = draw(st.integers(1, 4))
    plans = []
    made = n
    for _ in range(draw(st.integers(1, 3))):
        reads = draw(st.one_of(st.just("previous"), st.lists(st.integers(0, made - 1), min_size=1, max_size=4)))
        width = draw(st.integers(1, 4))
        spellings = draw(st.lists(st.sampled_from(SPELLINGS), min_size=width, max_size=width))
        shared = draw(st.sampled_from((None, "tanh", "relu", "sigmoid", "sin")))
        acts = draw(st.one_of(st.just([shared] * width), st.lists(st.sampled_from((None, "tanh", "relu")),
                                                                  min_size=width, max_size=width)))
        plans.append((reads, spellings, acts))
        made += width
    tail = draw(expressions(ops=TAIL_OPS, n_vars=2, max_nodes=4, max_depth=2))
    picks = draw(st.lists(st.integers(0, made - 1), min_size=2, max_size=2))
    layers, previous, count = [], list(range(n)), n
    for reads, spellings, acts in plans:
        inputs = previous if reads == "previous" else reads
        layers.append((inputs, HandLayer(len(inputs), len(spellings), spellings, acts, rng)))
        previous = list(range(count, count + len(spellings)))
        count += len(spellings)

    def f(x):
        numbers = list(x)
        for inputs, layer in layers:
            numbers += layer([numbers[i] for i in inputs])
        return tail.build(*(numbers[i] for i in picks)) + sum(numbers[n:], Value(0.0))
    return f, n


@given(layered_functions(), st.integers(1, 7), st.integers(0, 2**32 - 1))
def test_random_layered_functions_agree_with_the_batched_tape(built, size, seed):
    f, n = built
    X = np.random.default_rng(seed).uniform(-1, 1, (size, n))
    tape = trace(f, X[0].tolist())
    try:
        replayed(tape, X)
    except DomainError:
        assume(False)  # outside an op's domain: errors are tested below
    fused = assert_agrees(tape, X)
    assert fused.layers


@given(expressions(max_depth=3, n_vars=3, max_nodes=6), st.integers(0, 2**32 - 1))
def test_a_function_with_nothing_to_fuse_runs_as_columns(e, seed):
    w = Value(0.75, label="w")
    tape = trace(lambda a, b, c: e.build(a, b, c) * w, *e.inputs)
    X = np.array(e.inputs) + np.random.default_rng(seed).normal(0.0, 1e-3, (4, 3))
    try:
        replayed(tape, *X.T)
    except DomainError:
        assume(False)
    assert assert_agrees(tape, *X.T).layers == []


def test_weights_that_are_no_parameters_are_not_fused():
    w, b = Value(0.5), Value(0.25)
    tape = trace(lambda x, y: Value.weighted_sum([2.0, y], [x, x], b) + Value.weighted_sum([w, y], [x, y], b)
                 + Value.weighted_sum([w], [w], b) + w * 3.0 * x, 1.0, 2.0)
    assert assert_agrees(tape, np.array([1.0, -2.0, 0.5]), np.array([0.25, 3.0, -1.0])).layers == []


def test_a_rule_without_the_contractions_form_is_not_fused(monkeypatch):
    """The same numbers (products commute exactly), another form: ``x * g`` is not ``g * x``."""
    def swapped(g, out, *inputs):
        n = len(inputs) // 2
        return (*[x * g for x in inputs[n:2 * n]], *[w * g for w in inputs[:n]], g)
    monkeypatch.setattr(rules.weighted_sum, "vjp", swapped)
    model = MLP(3, [4, 2], seed=0)
    tape = trace(lambda x: sum(model(x), Value(0.0)), [0.1, 0.2, 0.3])
    assert assert_agrees(tape, np.random.default_rng(0).uniform(-1, 1, (5, 3))).layers == []


def test_inputs_from_a_nested_argument_and_tied_weights():
    rng = random.Random(5)
    w = [[Value(rng.uniform(-1, 1)) for _ in range(6)] for _ in range(3)]
    w[2][4] = w[0][1]  # one parameter twice in a layer: its gradient added at each place
    b = [Value(0.1) for _ in range(3)]

    def f(image):
        pixels = [p for row in image for p in row]
        return sum((Value.weighted_sum(wj, pixels, bj).tanh() for wj, bj in zip(w, b)), Value(0.0))
    tape = trace(f, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    fused = assert_agrees(tape, np.random.default_rng(6).uniform(-1, 1, (4, 2, 3)))
    assert fused.layers == [FusedLayer("z1", 6, 3, "tanh")] and "_add_at(_grads, at_w1, " in fused.source


def test_parameters_outside_layers_and_an_output_that_does_not_vary():
    model = MLP(2, [3, 1], activations=["sigmoid", "linear"], seed=4)
    decay = Value(0.01, label="decay")
    weights = model.parameters()
    tape = trace(lambda x, t: squared_error(model(x), t) + decay * sum((p * p for p in weights), Value(0.0)),
                 [0.5, 0.5], 1.0)
    rng = np.random.default_rng(7)
    assert_agrees(tape, rng.uniform(-1, 1, (6, 2)), rng.uniform(-1, 1, 6))
    constant = trace(lambda x: decay * decay + 0.0 * x, 1.0)
    values, grads = constant.fused().run((np.array([1.0, 2.0, 3.0]),), np.array([0.5]))
    assert values.tolist() == [0.25, 0.25, 0.25] and grads.tolist() == [3.0]


# -- how a run computes: in arrays it keeps, in place, in chunks ---------------------------------------------------

@pytest.fixture
def odd_ops(forget_defined_ops):
    """Ops whose array forms return no new array: the input itself, a view."""
    itself = define_op("fused_test_same", forward=lambda x: x, vjp=lambda g, out, x: (g,), array=lambda xp, x: x)
    view = define_op("fused_test_half", forward=lambda x: 0.5 * x, vjp=lambda g, out, x: (0.5 * g,),
                     array=lambda xp, x: (0.5 * x)[...])
    return {"same": itself, "half": view}


def through(op):
    """A network whose first layer's activation is ``op``."""
    rng = random.Random(7)
    first, second = HandLayer(3, 4, "weighted_sum", None, rng), HandLayer(4, 2, "weighted_sum", "tanh", rng)

    def f(x):
        hidden = [op(s) for s in first(x)]
        return sum((v * v for v in second(hidden)), Value(0.0)) + hidden[0] * hidden[1]
    return trace(f, [0.1, 0.2, 0.3]), np.random.default_rng(8).uniform(-1, 1, (6, 3))


@pytest.mark.parametrize("kind", ["same", "half"])
def test_an_activation_that_returns_its_input_or_a_view_is_never_written_through(kind, odd_ops):
    tape, X = through(odd_ops[kind])
    fused = assert_agrees(tape, X)
    assert [layer.activation for layer in fused.layers] == [odd_ops[kind].name, "tanh"]


def test_a_column_an_op_may_have_returned_unchanged_keeps_its_layer_alive(odd_ops):
    """``itself(h_1)`` may be ``h``'s row itself, read at the very end (the gradient of ``scale``): the backward
    of ``h``, which could go into ``h``'s array, goes elsewhere."""
    layer, scale, itself = HandLayer(2, 3, "weighted_sum", "tanh", random.Random(9)), Value(0.7), odd_ops["same"]

    def f(x):
        h = layer(x)
        return sum(h, Value(0.0)) * 0.5 + scale * itself(h[0])
    assert_agrees(trace(f, [0.1, 0.2]), np.random.default_rng(15).uniform(-1, 1, (5, 2)))


def tanh_mlp():
    """The benchmark's network: 2-16-16-1, tanh, squared error."""
    model = MLP(2, [16, 16, 1], activations=["tanh", "tanh", "linear"], seed=0)
    return trace(lambda x, y: (model(x) - y) ** 2, [0.5, -0.5], 1.0)


def test_the_backward_of_a_tanh_layer_runs_in_the_layers_own_arrays():
    """tanh into its sums' array, its backward into that array again: a layer makes one block of its own."""
    tape = tanh_mlp()
    run = tape.fused()._program.text(True)
    sums, = re.findall(r"s_h = _xp\.matmul\(w_h, x\.T, out=(_w\[\d\])\)", run)
    assert f"h = _xp.tanh(s_h, out={sums})" in run
    assert f"d_s_h = _xp.multiply(h, h, out={sums})\n    _xp.subtract(1.0, d_s_h, out=d_s_h)\n    d_s_h *= d_h\n" in run
    assert len(set(re.findall(r"_w\[\d+\]", run))) == 4 and "_xp.stack" not in run  # 3 blocks of 16 rows, 1 of 1
    rng = np.random.default_rng(9)
    assert_agrees(tape, rng.uniform(-1, 1, (40, 2)), rng.uniform(-1, 1, 40))


def test_a_run_asks_for_no_new_memory_for_its_blocks():
    """Once a run of a size is done, the next makes its blocks in the arrays that one kept, and an activation's
    new array where the one before was: less than one block's worth of new memory at its peak."""
    tape = tanh_mlp()
    fused, n = tape.fused(), 2000
    rng = np.random.default_rng(10)
    X, Y, params = rng.uniform(-1, 1, (n, 2)), rng.uniform(-1, 1, n), params_of(tape)
    tracemalloc.start()
    try:
        for _ in range(2):
            fused.run((X, Y), params)
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fused.run((X, Y), params)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < 16 * n * 8


def test_a_large_batch_runs_in_chunks(monkeypatch):
    monkeypatch.setattr(fusing, "_CHUNK_BYTES", {"numpy": 1, "torch": 1})
    monkeypatch.setattr(fused_program, "_SMALLEST_CHUNK", 4)
    tape = tanh_mlp()
    fused = tape.fused()
    rng = np.random.default_rng(11)
    X, Y = rng.uniform(-1, 1, (11, 2)), rng.uniform(-1, 1, 11)
    expected = replayed(tape, X, Y)
    for _ in range(2):
        values, grads = fused.run((X, Y), params_of(tape))
        assert agree(values, expected[0]) and agree(grads, expected[1])
    assert sorted(size for _, _, size in fused._kept) == [3, 4]  # 11 samples: chunks of 3, 4 and 4
    with pytest.raises(DomainError, match=r"^fused\.run: a value or gradient is not finite"):
        fused.run((np.where(np.arange(11)[:, None] == 10, np.inf, X), Y), params_of(tape))


def test_threads_may_share_a_fused_tape():
    tape = tanh_mlp()
    fused, params = tape.fused(), params_of(tape)
    rng = np.random.default_rng(12)
    batches = [(rng.uniform(-1, 1, (300, 2)), rng.uniform(-1, 1, 300)) for _ in range(4)]
    expected = [fused.run(batch, params) for batch in batches]
    wrong = []

    def work(k):
        for _ in range(20):
            if not same(fused.run(batches[k], params), expected[k]):
                wrong.append(k)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


# -- the API ------------------------------------------------------------------------------------------------------

def digits_like():
    model = MLP(4, [3, 2], activations=["tanh", "linear"], seed=2)
    tape = trace(lambda x, label: cross_entropy(model(x), label), [0.1, 0.2, 0.3, 0.4], 1)
    rng = np.random.default_rng(8)
    return tape, rng.uniform(-1, 1, (5, 4)), np.array([0.0, 1.0, 1.0, 0.0, 1.0])


def test_fused_is_made_once_and_batch_adds_to_grad_as_the_tape_does():
    tape, X, Y = digits_like()
    assert isinstance(tape.fused(), FusedTape) and tape.fused() is tape.fused()
    expected_values, expected_grads = replayed(tape, X, Y)
    for p in tape.captured:
        p.grad = 1.0
    values = tape.fused().batch(X.tolist(), Y.tolist())  # nested lists too
    assert agree(values, expected_values)
    assert agree([p.grad for p in tape.captured], expected_grads + 1.0)


def test_values_that_are_a_layers_outputs_stay_the_callers():
    model = MLP(3, [5, 2], activations=["relu", "linear"], seed=3)
    tape = trace(lambda x: model(x)[1], [0.1, 0.2, 0.3])
    assert_agrees(tape, np.random.default_rng(13).uniform(-1, 1, (7, 3)))


def test_run_reads_params_and_leaves_every_value_alone():
    tape, X, Y = digits_like()
    before = [(p.data, p.grad) for p in tape.captured]
    params = params_of(tape) * 0.5
    values, grads = tape.fused().run((X, Y), params)
    assert [(p.data, p.grad) for p in tape.captured] == before
    for p, x in zip(tape.captured, params):
        p.data = x
    assert agree(values, replayed(tape, X, Y)[0]) and agree(grads, replayed(tape, X, Y)[1])


def test_wrong_arguments_are_refused_in_one_line():
    tape, X, Y = digits_like()
    fused, params = tape.fused(), params_of(tape)
    cases = [
        (lambda: fused.run((X,), params), TypeError, r"^fused\.run: takes 2 array\(s\), one per argument of f, got 1$"),
        (lambda: fused.run((X[:, :3], Y), params), ValueError,
         r"^fused\.run: argument 1 should have shape \(n, 4\): n samples of the traced argument's shape \(4,\), got "
         r"shape \(5, 3\)$"),
        (lambda: fused.run((X, Y[:4]), params), ValueError, r"^fused\.run: the arguments have different batch "
                                                             r"sizes \[4, 5\]$"),
        (lambda: fused.run((X, Y), params[:-1]), ValueError, r"^fused\.run: params should be a 1-D array of the 23 "
                                                              r"captured Values' numbers \(tape\.captured's order\), "
                                                              r"got shape \(22,\)$"),
        (lambda: fused.run(X, params), TypeError, r"^fused\.run: arrays must be a tuple of arrays, one per argument "
                                                  r"of f, got ndarray$"),
        (lambda: fused.batch(X, Y + 1j), TypeError, r"^tape\.batch: argument 2 holds complex numbers"),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind, match=message) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_numbers_that_are_not_finite_raise_domain_error():
    tape, X, Y = digits_like()
    fused, params = tape.fused(), params_of(tape)
    message = r"^fused\.run: a value or gradient is not finite in this batch .*: Tape\.batch names the sample$"
    for arrays, numbers in [((X * 1e300, Y), params * 1e10),  # the first layer's products overflow
                            ((X, Y), np.where(np.arange(len(params)) == 3, np.nan, params)),
                            ((np.where(X > 0.5, np.inf, X), Y), params)]:
        with pytest.raises(DomainError, match=message):
            fused.run(arrays, numbers)
    w = Value(1.0)
    logged = trace(lambda x: (w * x).log(), 1.0)
    with pytest.raises(DomainError, match=r"^tape\.batch: sample 2: log: operand must be > 0, got -1\.0$"):
        logged.fused().batch(np.array([1.0, 2.0, -1.0]))
    assert w.grad == 0.0


def test_a_product_that_overflows_where_tanh_would_hide_it_is_refused():
    w = [Value(1e200), Value(1e200)]
    tape = trace(lambda x: Value.weighted_sum(w, x, Value(0.0)).tanh() * w[0], [1.0, 1.0])
    with pytest.raises(DomainError, match=r"^fused\.run: a value or gradient is not finite"):
        tape.fused().run((np.array([[1e200, 1e200]]),), np.array([1e200, 1e200]))
    assert math.isfinite(tape.fused().run((np.ones((1, 2)),), np.ones(2))[0][0])


def test_an_overflow_only_the_batch_sum_makes_is_named_so():
    w = Value(1.0)
    fused = trace(lambda x: w * x, 1.0).fused()
    assert fused.batch(np.array([1e308])).tolist() == [1e308] and w.grad == 1e308
    with pytest.raises(DomainError, match=r"^tape: the gradient of Value\(data=1.0, grad=1e\+308\) summed past "
                                          r"the largest float$"):
        fused.batch(np.array([1e308]))
    with pytest.raises(DomainError, match=r"^tape\.batch: a value or gradient is not finite, although every sample "
                                          r"alone is fine: a sum over the batch passed the largest float$"):
        fused.batch(np.full(3, 1e308))
    assert w.grad == 1e308


@pytest.mark.requires_torch
def test_torch_tensors_stay_torch_and_agree_with_numpy():
    import torch

    tape, X, Y = digits_like()
    fused = tape.fused()
    values, grads = fused.run((X, Y), params_of(tape))
    tensor_values, tensor_grads = fused.run((torch.as_tensor(X), torch.as_tensor(Y)), torch.as_tensor(params_of(tape)))
    assert isinstance(tensor_values, torch.Tensor) and tensor_grads.dtype == torch.float64
    assert agree(tensor_values.numpy(), values) and agree(tensor_grads.numpy(), grads)
    expected = replayed(tape, X, Y)
    assert agree(fused.batch(torch.as_tensor(X), torch.as_tensor(Y)).numpy(), expected[0])
    with pytest.raises(DomainError, match=r"^fused\.run: a value or gradient is not finite"):
        fused.run((torch.as_tensor(X * 1e300), torch.as_tensor(Y)), torch.as_tensor(params_of(tape) * 1e10))


@pytest.mark.requires_torch
def test_torch_runs_in_kept_arrays_and_chunks_as_numpy_does(monkeypatch, odd_ops):
    import torch

    monkeypatch.setattr(fusing, "_CHUNK_BYTES", {"numpy": 1, "torch": 1})
    monkeypatch.setattr(fused_program, "_SMALLEST_CHUNK", 8)
    tape = tanh_mlp()
    fused = tape.fused()
    rng = np.random.default_rng(14)
    for n in (5, 20, 5):
        X, Y = rng.uniform(-1, 1, (n, 2)), rng.uniform(-1, 1, n)
        expected = replayed(tape, X, Y)
        params = torch.tensor(params_of(tape), requires_grad=True)  # the run records no autograd graph
        values, grads = fused.run((torch.as_tensor(X), torch.as_tensor(Y)), params)
        assert agree(values.numpy(), expected[0]) and agree(grads.numpy(), expected[1])
        assert not values.requires_grad and not grads.requires_grad
    for op in odd_ops.values():
        tape, X = through(op)
        expected = replayed(tape, X)
        for _ in range(2):
            values, grads = tape.fused().run((torch.as_tensor(X),), torch.as_tensor(params_of(tape)))
            assert agree(values.numpy(), expected[0]) and agree(grads.numpy(), expected[1])


@pytest.mark.requires_torch
def test_torch_checks_the_lines_where_an_inf_would_vanish():
    """tanh(inf) is 1.0: torch raises nowhere, so the product before it is checked."""
    import torch

    w = [Value(1e200), Value(1e200)]
    tape = trace(lambda x: Value.weighted_sum(w, x, Value(0.0)).tanh() * w[0], [1.0, 1.0])
    with pytest.raises(DomainError):
        tape.fused().run((torch.tensor([[1e200, 1e200]], dtype=torch.float64),),
                         torch.tensor([1e200, 1e200], dtype=torch.float64))
    assert math.isfinite(tape.fused().run((torch.ones(1, 2, dtype=torch.float64),), torch.ones(2))[0].item())
