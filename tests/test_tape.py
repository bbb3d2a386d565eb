"""The tape: generated from the rules run on symbols, exact against the eager engine, batched, checked."""

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgd import DomainError, Value, define_op, gradients, rules
from microgd.rules import OPS
from microgd.tape import trace
from microgd.testing import expressions, mlps


def exactly(a, b):
    """Equal to 1e-12 relative (and exactly where one is 0)."""
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


def eager(build, point):
    leaves = [Value(x) for x in point]
    out = build(*leaves)
    return out.data, gradients(out, leaves)


points = st.lists(st.floats(-3, 3, allow_nan=False), min_size=3, max_size=3)


@given(expressions(max_depth=4, n_vars=3, max_nodes=8), points)
def test_values_and_gradients_equal_the_eager_engines_at_new_points(e, other):
    tape = trace(e.build, *e.inputs)
    for point in (e.inputs, other):
        try:
            expected = eager(e.build, point)
        except DomainError:
            with pytest.raises(DomainError):
                tape.value_and_grad(*point)
            continue
        value, grads = tape.value_and_grad(*point)
        assert exactly(value, expected[0]), tape.source
        assert all(map(exactly, grads, expected[1])), tape.source


@pytest.mark.parametrize("f", [
    lambda x, y: x.relu() * abs(y) + (x * y).relu(),
    lambda x, y: abs(x - y) + (x + y).relu(),
], ids=["relu-abs", "differences"])
def test_kinks_give_the_engines_subgradient(f):
    tape = trace(f, 1.0, 2.0)
    for point in ((0.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (1.0, 1.0)):
        value, grads = tape.value_and_grad(*point)
        assert (value, grads) == (eager(f, point)[0], eager(f, point)[1])


def test_constants_reuse_and_a_value_exponent():
    def f(x, p):
        y = x * x + 2 * x - 0.5
        return y ** p + (3 - y) / (x + 4) + 2 ** x
    tape = trace(f, 1.5, 2.5)
    for point in ((1.5, 2.5), (0.7, -1.25), (2.0, 3.0)):
        value, grads = tape.value_and_grad(*point)
        expected = eager(f, point)
        assert value == expected[0] and grads == expected[1]


def test_the_source_reads_like_python_with_the_labels():
    w = Value(0.5, label="w")

    def error(x, target):
        sop = w * x
        sop.label = "sop"
        predicted = sop.sigmoid()
        predicted.label = "predicted"
        return (predicted - target) ** 2
    source = trace(error, 0.1, 0.3).source
    assert source.splitlines()[:4] == ["def error(x, target, captured):", "    (w,) = captured",
                                       "    sop = w * x", "    predicted = sigmoid(sop)"]
    assert "    d_sop = d_v2 * predicted * (1.0 - predicted)" in source.splitlines()
    compile(source, "tape", "exec")


def test_a_node_may_be_named_like_the_function_but_never_like_an_op():
    w = Value(0.5, label="w")

    def error(x, target):
        out = ((w * x).sigmoid() - target) ** 2
        out.label = "error"
        return out
    tape = trace(error, 0.1, 0.3)
    assert tape.source.startswith("def error(x, target, captured):")
    assert tape.source.splitlines()[-1] == "    return error, (d_x, d_target), (d_w,)"
    assert tape(0.1, 0.3) == error(Value(0.1), 0.3).data

    def sigmoid(x):
        return x.sigmoid()
    named_like_an_op = trace(sigmoid, 0.5)
    assert named_like_an_op.source.startswith("def sigmoid_1(x, captured):")
    assert named_like_an_op(0.5) == Value(0.5).sigmoid().data


def test_lists_of_inputs_and_captured_values_accumulate_like_backward():
    weights = [Value(0.3, label="w1"), Value(-0.8, label="w2")]

    def f(x, t):
        return (Value.weighted_sum(weights, x, 0.1).tanh() - t) ** 2
    tape = trace(f, [0.5, -1.0], 0.2)
    value, (dx, dt) = tape.value_and_grad([0.25, 2.0], 0.7)
    tape_grads = [w.grad for w in weights]
    for w in weights:
        w.grad = 0.0
    leaves = [Value(0.25), Value(2.0)]
    target = Value(0.7)
    out = f(leaves, target)
    out.backward()
    assert value == out.data and dx == [leaf.grad for leaf in leaves] and dt == target.grad
    assert tape_grads == [w.grad for w in weights]
    tape([0.25, 2.0], 0.7)
    assert [w.grad for w in weights] == [2 * g for g in tape_grads]  # a second call adds, as backward does


def test_domain_errors_name_the_op_and_operand():
    tape = trace(lambda x, y: (x * y).log() + 1 / (x - 1), 2.0, 2.0)
    with pytest.raises(DomainError, match=r"log: operand must be > 0, got -2.0"):
        tape(2.0, -1.0)
    with pytest.raises(DomainError, match=r"div: division by zero"):
        tape(1.0, 2.0)
    big = trace(lambda x: x.exp() * x, 1.0)
    with pytest.raises(DomainError, match=r"exp: result overflows a float for operand 1000.0"):
        big(1000.0)
    overflow = trace(lambda x: x * x * x, 1.0)
    with pytest.raises(DomainError, match=r"\*: the result is inf"):
        overflow(1e200)


def test_batch_domain_errors_name_the_sample():
    tape = trace(lambda x, y: (x * y).log(), 1.0, 2.0)
    with pytest.raises(DomainError, match=r"sample 2: log: operand must be > 0, got -6.0"):
        tape.batch(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 1.0, -2.0, -3.0]))
    divide = trace(lambda x: 1 / x, 1.0)
    with pytest.raises(DomainError, match=r"sample 1: div: division by zero"):
        divide.batch(np.array([1.0, 0.0]))


def as_list(out):
    return out if isinstance(out, list) else [out]


def network_loss(model):
    def loss(x, target):
        out = model(x)
        outputs = out if isinstance(out, list) else [out]
        total = 0.5 * (outputs[0] - target[0]) ** 2
        for y, t in zip(outputs[1:], target[1:]):
            total = total + 0.5 * (y - t) ** 2
        return total
    return loss


def draw_batch(net, size, rng):
    X = np.array([[rng.uniform(-1, 1) for _ in net.x] for _ in range(size)])
    T = np.array([[rng.uniform(0, 1) for _ in net.target] for _ in range(size)])
    return X, T


def batch_grads(tape, model, *arrays):
    model.zero_grad()
    values = tape.batch(*arrays)
    return values, [p.grad for p in model.parameters()]


def sum_bound(parts):
    """How far two orders of summing ``parts`` may differ: (n - 1) units of rounding of sum(|parts|)."""
    return max(len(parts) - 1, 1) * 2.3e-16 * math.fsum(map(abs, parts))


@settings(max_examples=25)
@given(mlps(activations=("sigmoid", "tanh", "relu", "linear")), st.integers(1, 8), st.randoms(use_true_random=False))
def test_a_batch_equals_its_samples_one_by_one(net, size, rng):
    """Sample i of a batch is computed exactly as a batch of that one sample (the same array functions);
    the parameters' gradients are the samples' gradients summed."""
    model = net.model
    tape = trace(network_loss(model), list(net.x), list(net.target))
    X, T = draw_batch(net, size, rng)
    values, grads = batch_grads(tape, model, X, T)
    singles = [batch_grads(tape, model, X[i:i + 1], T[i:i + 1]) for i in range(size)]
    assert list(values) == [v[0] for v, _ in singles]
    for k, total in enumerate(grads):
        parts = [g[k] for _, g in singles]
        assert abs(total - math.fsum(parts)) <= sum_bound(parts)


@settings(max_examples=25)
@given(mlps(activations=("relu", "linear")), st.integers(1, 8), st.randoms(use_true_random=False))
def test_a_batch_of_exactly_rounded_ops_equals_the_eager_engine(net, size, rng):
    """With + - * / and relu only (exactly rounded in numpy and in Python alike; not ``**``), the batch gives the eager
    engine's numbers: values bit for bit, gradients up to the order of the sum over samples."""
    model = net.model

    def loss(x, target):  # squares as products: numpy squares x ** 2 as x * x, Python's pow may differ by an ulp
        return sum((y - t) * (y - t) for y, t in zip(as_list(model(x)), target))

    tape = trace(loss, list(net.x), list(net.target))
    X, T = draw_batch(net, size, rng)
    values, grads = batch_grads(tape, model, X, T)
    eager = [(out.data, gradients(out, model.parameters()))
             for out in (loss([Value(v) for v in x], [Value(v) for v in t]) for x, t in zip(X.tolist(), T.tolist()))]
    assert list(values) == [value for value, _ in eager]
    for k, total in enumerate(grads):
        parts = [g[k] for _, g in eager]
        assert abs(total - math.fsum(parts)) <= sum_bound(parts)


def test_batch_of_a_define_op_op_without_an_array_form_runs_element_by_element():
    cube = define_op("cube_tape_test", forward=lambda x: x ** 3, vjp=lambda g, out, x: (3 * g * x * x,))
    try:
        tape = trace(lambda x: cube(x) + x, 2.0)
        assert "cube_tape_test(x)" in tape.source
        assert list(tape.batch(np.array([1.0, 2.0, -3.0]))) == [2.0, 10.0, -30.0]
    finally:
        del rules._REGISTRY["cube_tape_test"]


def test_changing_a_rule_changes_the_next_traces_source_and_result(monkeypatch):
    f = lambda x: x.tanh()  # noqa: E731
    before = trace(f, 0.5)
    assert "d_x = 1.0 - v0 * v0" in before.source
    monkeypatch.setattr(rules.tanh, "vjp", lambda g, out, x: (g * (1.0 - out * out) * 2.0,))  # a wrong rule
    after = trace(f, 0.5)
    assert "d_x = (1.0 - v0 * v0) * 2.0" in after.source
    assert after.value_and_grad(0.5)[1][0] == 2 * before.value_and_grad(0.5)[1][0]


def test_check_says_whether_the_structure_still_matches():
    def f(x):
        return x.relu() if x.data > 0 else -x  # a Python branch on the data: invisible to a trace
    tape = trace(f, 1.0)
    assert tape.check(2.0) and not tape.check(-1.0)
    assert tape(-1.0) == 0.0  # the traced branch, as documented: check() is the way to find out


def test_bad_arguments_are_named():
    tape = trace(lambda x, y: x * y[0], 1.0, [2.0])
    with pytest.raises(TypeError, match=r"takes 2 argument\(s\)"):
        tape(1.0)
    with pytest.raises(TypeError, match=r"argument 2 should be a list of 1"):
        tape(1.0, 2.0)
    with pytest.raises(ValueError, match=r"argument 2 should have shape \(n, 1\): n samples of the traced argument's "
                                         r"shape \(1,\), got shape \(1,\)"):
        tape.batch(np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"different batch sizes \[1, 2\]"):
        tape.batch(np.array([1.0]), np.array([[1.0], [2.0]]))
    with pytest.raises(TypeError, match=r"argument 1 is a Value"):
        trace(lambda x: x, Value(1.0))
    with pytest.raises(TypeError, match=r"must return a Value"):
        trace(lambda x: 1.0, 1.0)
    assert OPS  # the registry is untouched by failed traces


# -- replaying many samples ------------------------------------------------------------------------------------

def relu_sigmoid_model():
    from microgd.nn import MLP
    return MLP(3, [4, 2], activations=["relu", "sigmoid"], seed=2)


def two_output_loss(model):
    def loss(x, target):
        y1, y2 = model(x)
        return (y1 - target[0]) ** 2 + (y2 - target[1]) ** 2
    return loss


SAMPLES = [([0.5, -0.25, 1.0], [0.0, 1.0]), ([-1.0, 0.75, 0.125], [1.0, 0.5]), ([0.3, 0.3, -0.9], [0.2, 0.8])]


def start_grads(model):
    for k, p in enumerate(model.parameters()):
        p.grad = 0.1 * k - 0.7  # not 0: the sums go on from here, as backward's do


def test_each_adds_every_samples_gradient_exactly_as_calls_one_by_one():
    model = relu_sigmoid_model()
    tape = trace(two_output_loss(model), *SAMPLES[0])
    start_grads(model)
    one_by_one = [tape(x, t) for x, t in SAMPLES]
    expected = [p.grad for p in model.parameters()]
    start_grads(model)
    assert tape.each(SAMPLES) == one_by_one
    assert [p.grad for p in model.parameters()] == expected


def test_batch_in_order_adds_gradients_in_sample_order_so_it_equals_calls_one_by_one():
    from microgd.nn import MLP
    model = MLP(3, [4, 2], activations=["relu", "linear"], seed=2)  # numpy computes +, -, *, relu as Python does

    def loss(x, target):
        y1, y2 = model(x)
        return (y1 - target[0]) * (y1 - target[0]) + (y2 - target[1]) * (y2 - target[1])

    tape = trace(loss, *SAMPLES[0])
    start_grads(model)
    one_by_one = [tape(x, t) for x, t in SAMPLES]
    expected = [p.grad for p in model.parameters()]
    X, T = np.array([x for x, _ in SAMPLES]), np.array([t for _, t in SAMPLES])
    start_grads(model)
    assert tape.batch(X, T, in_order=True).tolist() == one_by_one
    assert [p.grad for p in model.parameters()] == expected
    start_grads(model)
    assert tape.batch(X, T).tolist() == one_by_one  # numpy's own summation: equal to rounding
    assert [p.grad for p in model.parameters()] == [pytest.approx(g, rel=1e-15, abs=1e-15) for g in expected]


def test_each_raises_the_engines_domain_error_and_leaves_the_grads_alone():
    w = Value(1.0, label="w")
    tape = trace(lambda x: (w * x).log(), 1.0)
    w.grad = 0.5
    with pytest.raises(DomainError, match=r"log: operand must be > 0, got -2.0"):
        tape.each([(1.0,), (2.0,), (-2.0,)])
    assert w.grad == 0.5
    assert tape.each([]) == [] and w.grad == 0.5


def test_a_gradient_summed_past_the_largest_float_is_an_error():
    w = Value(1.0, label="w")
    tape = trace(lambda x: w * x, 1.0)
    with pytest.raises(DomainError, match=r"tape: the gradient of Value\(data=1.0, grad=0.0, label='w'\) summed past"):
        tape.each([(1e308,), (1e308,)])
    for in_order in (False, True):
        with pytest.raises(DomainError, match=r"tape.batch: .*, although every sample alone is fine: a gradient "
                                              r"summed over the batch past the largest float"):
            tape.batch(np.array([1e308, 1e308]), in_order=in_order)
    assert w.grad == 0.0


def test_a_number_the_engine_refuses_names_its_sample_in_a_batch():
    tape = trace(lambda x: x * 2.0, 1.0)
    with pytest.raises(ValueError, match=r"^tape.batch: sample 1: argument 1 must be a finite number, got nan$"):
        tape.batch(np.array([1.0, math.nan]))


def test_a_gradient_that_does_not_depend_on_the_batch_counts_once_per_sample():
    w = Value(0.1, label="w")
    tape = trace(lambda x: w + x, 1.0)  # d/dw = 1.0 for every sample: a number, not an array
    tape.batch(np.zeros(10))
    assert w.grad == 10.0
    w.grad = 0.0
    tape = trace(lambda x: 0.1 * w + x, 1.0)
    tape.batch(np.zeros(10), in_order=True)
    expected = 0.0
    for _ in range(10):
        expected += 0.1
    assert w.grad == expected != 10 * 0.1
    assert list(trace(lambda x: w * 3.0 + x * 0.0, 1.0).batch(np.zeros(3))) == [w.data * 3.0] * 3


def test_the_batched_replay_lets_each_array_go_after_its_last_use():
    weights = [Value(0.001 * k) for k in range(300)]

    def chain(x):
        for w in weights:
            x = x * 1.0001 + w  # 600 arrays along the way, each dead once the next line has read it
        return x
    tape = trace(chain, 0.5)
    samples = np.linspace(-1.0, 1.0, 10_000)
    tape.batch(samples)
    tracemalloc.start()
    values = tape.batch(samples)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 * samples.nbytes  # not 600 of them
    assert values[0] == chain(Value(-1.0)).data
    (d_w7,) = gradients(chain(Value(-1.0)), [weights[7]])  # the same for every sample: two batches of 10,000
    assert weights[7].grad == 2 * (10_000 * d_w7)


def test_trace_is_on_the_packages_face():
    import microgd

    assert microgd.trace is trace and "trace" in microgd.__all__
