"""The tape at its edges: nothing silently wrong. Values f makes itself, captured Values replaced after tracing,
batches of the wrong shape, concurrent calls, intermediates that overflow, torch batches and complex numbers."""

import math
import sys
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgd import DomainError, Value, define_op, gradients, no_grad, rules
from microgd.losses import squared_error
from microgd.tape import trace
from microgd.testing import expressions


def eager(f, *point):
    leaves = [Value(x) for x in point]
    out = f(*leaves)
    return out.data, gradients(out, leaves)


# -- Values f makes itself ---------------------------------------------------------------------------------------

def doubled_in_no_grad(x):
    with no_grad():
        s = x * 2
    return s * x


def doubled_from_the_data(x):
    return Value(x.data * 2) * x


@pytest.mark.parametrize("f", [doubled_in_no_grad, doubled_from_the_data], ids=["no_grad", "Value(x.data)"])
def test_a_value_f_makes_from_its_arguments_without_recording_is_refused(f):
    assert f(Value(5.0)).data == 50.0  # eagerly; a tape would replay 2.0 * 5.0 = 10.0
    with pytest.raises(ValueError, match=r"^trace: f made Value\(data=2.0, grad=0.0\) without recording it .* and "
                                         r"its number changes with f's arguments: .*make it outside f, or compute it "
                                         r"from the arguments with recorded ops$"):
        trace(f, 1.0)


def test_values_f_makes_that_do_not_depend_on_its_arguments_are_constants_or_parameters():
    params = {}

    def f(x):
        if "w" not in params:  # a parameter made on the first call, then kept
            params["w"] = Value(3.0, label="w")
        total = Value(0.0)  # a constant made afresh at every call
        return total + params["w"] * x + squared_error(1.5, x)  # squared_error makes Value(1.5)
    tape = trace(f, 2.0)
    w = params["w"]
    assert len(tape.captured) == 1 and tape.captured[0] is w and "1.5" in tape.source
    for point in (2.0, -1.0):
        assert tape.value_and_grad(point) == eager(f, point)
        assert tape.check(point)
    w.data = 4.0
    assert tape.value_and_grad(-1.0) == eager(f, -1.0)


def test_a_value_f_makes_that_may_depend_on_its_arguments_is_refused():
    def f(x):  # at x + 1 ulp the graph is another: a Value f made cannot be told a constant
        return Value(2.0) * x if x.data == 1.0 else x
    with pytest.raises(ValueError, match=r"^trace: f made Value\(data=2.0, grad=0.0\) .* its number may change"):
        trace(f, 1.0)


def test_check_compares_the_replay_with_the_eager_engine_at_the_point(forget_defined_ops):
    tapes = []
    for forward in (lambda x: 2.0 * x, lambda x: 3.0 * x):  # the same line run twice: a re-run notebook cell
        op = define_op("edge_scale", forward=forward, vjp=lambda g, out, x: (2.0 * g,))
        tapes.append(trace(lambda x: op(x) + x, 1.0))  # noqa: B023 (op is the one of this round)
    old, new = tapes
    assert old.source == new.source and old(1.0) == 3.0 and new(1.0) == 4.0
    assert new.check(1.0) and not old.check(1.0)  # the old tape keeps the op it was made with; f does not


# -- captured Values replaced after tracing ----------------------------------------------------------------------

def test_check_notices_a_captured_value_replaced_after_tracing():
    params = {"w": Value(2.0)}
    tape = trace(lambda x: params["w"] * x, 3.0)
    assert tape.check(3.0)
    params["w"] = Value(10.0)
    assert not tape.check(3.0)
    params["w"] = Value(2.0)  # the same number, but not the Value whose .grad the tape adds to
    assert not tape.check(3.0)


# -- batch shapes and numbers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("columns", [5, 2])
def test_a_batch_with_other_columns_than_the_traced_list_names_the_argument_and_both_shapes(columns):
    tape = trace(lambda x, y: x[0] * x[1] + x[2] * y, [1.0, 2.0, 3.0], 1.0)
    with pytest.raises(ValueError, match=rf"^tape.batch: argument 1 should have shape \(n, 3\): n samples of the "
                                         rf"traced argument's shape \(3,\), got shape \(4, {columns}\)$"):
        tape.batch(np.ones((4, columns)), np.ones(4))


def test_a_batch_of_nested_lists_checks_every_axis_and_refuses_a_ragged_trace():
    square = trace(lambda m: m[0][0] * m[1][1] - m[0][1] * m[1][0], [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match=r"argument 1 should have shape \(n, 2, 2\): .* got shape \(3, 2, 3\)$"):
        square.batch(np.ones((3, 2, 3)))
    assert square.batch(np.ones((3, 2, 2))).tolist() == [0.0] * 3
    ragged = trace(lambda m: m[0][0] * m[1][0] + m[0][1], [[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match=r"^tape.batch: argument 1 was traced as lists of different lengths"):
        ragged.batch(np.ones((3, 2, 2)))


def test_complex_numbers_are_refused_naming_the_argument():
    tape = trace(lambda x, y: x * y, 1.0, 2.0)
    with pytest.raises(TypeError, match=r"^tape.batch: argument 2 holds complex numbers"):
        tape.batch(np.ones(2), np.array([1 + 2j, 1.0]))
    with pytest.raises(TypeError, match=r"^tape: argument 2 must be a real number or a list of numbers, got "
                                        r"\(1\+2j\)$"):
        tape(1.0, 1 + 2j)


@pytest.mark.requires_torch
def test_complex_tensors_are_refused_naming_the_argument():
    import torch
    tape = trace(lambda x: x * x, 1.0)
    with pytest.raises(TypeError, match=r"^tape.batch: argument 1 holds complex numbers"):
        tape.batch(torch.tensor([1 + 2j]))


# -- concurrent calls --------------------------------------------------------------------------------------------

@pytest.fixture
def switching_often():
    """Threads switched every microsecond, so that a lost update shows in a short test."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.parametrize("method", ["call", "value_and_grad", "each", "batch"])
def test_concurrent_calls_add_every_gradient(method, switching_often):
    weights = [Value(0.5 * k) for k in range(8)]
    tape = trace(lambda x: Value.weighted_sum(weights, [x] * len(weights), 0.0), 1.0)  # d/dw_k = x = 1.0
    calls = {"call": lambda: tape(1.0), "value_and_grad": lambda: tape.value_and_grad(1.0),
             "each": lambda: tape.each([(1.0,)] * 50), "batch": lambda: tape.batch(np.ones(50))}
    per_call = 50 if method in ("each", "batch") else 1
    rounds, threads = 400 // per_call + 20, 4

    def work():
        for _ in range(rounds):
            calls[method]()
    running = [threading.Thread(target=work) for _ in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    assert [w.grad for w in weights] == [float(threads * rounds * per_call)] * len(weights)


# -- intermediates that overflow ---------------------------------------------------------------------------------

def reciprocal_square(x):
    return 1 / (x * x)  # x * x overflows at 1e200, and 1 / inf is a harmless-looking 0.0


def reciprocal_step(x):
    return 1 / (rules.step(x) + 1e-300)  # a gradient overflows in a line no output reads


INTERMEDIATES = [(reciprocal_square, 1e200, r"\*: the result is inf for the operand\(s\) 1e\+200, 1e\+200"),
                 (reciprocal_step, -1.0, r"backward of /\(1.0, 1e-300\): its contribution to input 2 is -inf")]


@pytest.mark.parametrize(("f", "x", "message"), INTERMEDIATES, ids=["forward", "backward"])
def test_an_intermediate_that_is_not_finite_is_the_engines_domain_error(f, x, message):
    with pytest.raises(DomainError, match=message):
        eager(f, x)
    tape = trace(f, 1.0)
    w = Value(1.0)
    weighted = trace(lambda x: f(x) * w, 1.0)
    for call in (lambda: tape(x), lambda: tape.value_and_grad(x), lambda: tape.each([(1.0,), (x,)]),
                 lambda: weighted(x)):
        with pytest.raises(DomainError, match=message):
            call()
    with pytest.raises(DomainError, match=rf"^tape.batch: sample 1: {message}"):
        weighted.batch(np.array([1.0, x, 2.0]))
    assert w.grad == 0.0


@pytest.mark.requires_torch
@pytest.mark.parametrize(("f", "x", "message"), INTERMEDIATES, ids=["forward", "backward"])
def test_a_torch_sample_whose_intermediate_is_not_finite_is_named(f, x, message):
    import torch
    w = Value(1.0)
    tape = trace(lambda x: f(x) * w, 1.0)
    with pytest.raises(DomainError, match=rf"^tape.batch: sample 1: {message}"):
        tape.batch(torch.tensor([1.0, x, 2.0], dtype=torch.float64))
    assert w.grad == 0.0


# -- torch -------------------------------------------------------------------------------------------------------

@pytest.mark.requires_torch
def test_a_torch_batch_reads_the_captured_values_as_tensors_of_its_dtype():
    import torch
    w = Value(0.5, label="w")
    tape = trace(lambda x: w.exp() * x + w.tanh() + rules.step(w), 1.0)
    values = tape.batch(torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert values.dtype == torch.float64
    assert values.tolist() == [tape(1.0), tape(2.0)]


@pytest.mark.requires_torch
def test_a_torch_batch_stays_float64_through_an_array_form_that_is_not(forget_defined_ops):
    import torch
    positive = define_op("edge_positive", forward=lambda x: float(x > 0.0), vjp=lambda g, out, x: (0.0,),
                         array=lambda xp, x: (x > 0) * 1.0)  # float32 on torch: True * 1.0
    w = Value(0.1, label="w")
    tape = trace(lambda x: positive(x) * w + x, 1.0)
    values = tape.batch(torch.tensor([0.5, -1.0], dtype=torch.float64))
    assert values.dtype == torch.float64
    assert values.tolist() == [0.5 + 0.1, -1.0] == tape.batch(np.array([0.5, -1.0])).tolist()


@pytest.mark.requires_torch
@given(expressions(max_depth=3, n_vars=3, max_nodes=6),
       st.lists(st.tuples(*[st.floats(-3, 3, allow_nan=False)] * 2), min_size=1, max_size=4))
def test_a_torch_batch_equals_the_numpy_batch(e, others):
    """x2 is a captured Value, x0 and x1 the batch's columns: values and the captured gradient agree to 1e-12."""
    import torch
    w = Value(e.inputs[2], label="w")
    tape = trace(lambda x0, x1: e.build(x0, x1, w), *e.inputs[:2])
    columns = np.array([e.inputs[:2], *others]).T
    results = []
    for batch in (columns, torch.tensor(columns, dtype=torch.float64)):
        w.grad = 0.0
        try:
            values = tape.batch(*batch)
        except DomainError as error:  # both name the same sample
            results.append(str(error).split(":")[1])
            continue
        results.append((np.asarray(values.tolist()), w.grad))
    if isinstance(results[0], str):
        assert results[0] == results[1]
        return
    (numpy_values, numpy_grad), (torch_values, torch_grad) = results
    assert np.allclose(torch_values, numpy_values, rtol=1e-12, atol=1e-12)
    assert math.isclose(torch_grad, numpy_grad, rel_tol=1e-12, abs_tol=1e-12)
