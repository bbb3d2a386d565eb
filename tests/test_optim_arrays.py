"""microgd.optim on arrays: ``optimizer.arrays(order)`` steps SGD and Adam on numpy arrays to the last bit of
their scalar ``step()``, in any order of the Values, leaving alone the Values the optimizer does not hold;
``write_back()`` lets the scalar steps continue exactly; non-finite gradients and results are refused
as the scalar step refuses them, with the same message, changing nothing."""

import math
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgd import Value
from microgd.optim import SGD, Adam, AdamArrays, Optimizer, OptimizerArrays, SGDArrays


def bits(xs):
    """Floats as their exact bits (-0.0 and 0.0 differ; so does every last bit)."""
    return [float(x).hex() for x in xs]


def state_of(optimizer):
    """Everything a scalar step reads or writes, bit for bit."""
    state = {"data": bits(p.data for p in optimizer.params)}
    for name in ("velocity", "m", "v"):
        if hasattr(optimizer, name):
            state[name] = bits(getattr(optimizer, name))
    if hasattr(optimizer, "t"):
        state["t"] = optimizer.t
    return state


def arrays_state(arrays):
    """The same, read off the arrays (in the optimizer's order)."""
    at = arrays.positions
    state = {"data": bits(arrays.data[at])}
    for name in ("velocity", "m", "v"):
        if hasattr(arrays, name):
            state[name] = bits(getattr(arrays, name)[at])
    if hasattr(arrays, "t"):
        state["t"] = arrays.t
    return state


def scalar_step(optimizer, grads):
    """The scalar step from ``grads`` (in the optimizer's order): None, or the error's message."""
    for p, g in zip(optimizer.params, grads):
        p.grad = g
    try:
        optimizer.step()
    except FloatingPointError as error:
        return str(error)
    return None


def array_step(arrays, grads):
    try:
        arrays.step(grads)
    except FloatingPointError as error:
        return str(error)
    return None


# every kind of float a gradient can be: ordinary, tiny, huge (overflowing the step), inf and nan
gradients = st.one_of(st.floats(-10.0, 10.0), st.floats(-1e-300, 1e-300), st.floats(allow_nan=True),
                      st.sampled_from([0.0, -0.0, 5e-324, 1e308, -1e308, math.inf, math.nan]))
numbers = st.one_of(st.floats(-10.0, 10.0), st.floats(-1e300, 1e300), st.sampled_from([0.0, -0.0, 5e-324]))
makers = st.one_of(
    st.builds(lambda lr, momentum: (SGD, dict(lr=lr, momentum=momentum)), st.floats(1e-6, 10.0),
              st.sampled_from([0.0]) | st.floats(0.0, 0.999)),
    st.builds(lambda lr, b1, b2, eps: (Adam, dict(lr=lr, betas=(b1, b2), eps=eps)), st.floats(1e-6, 10.0),
              st.floats(0.0, 0.9999), st.floats(0.0, 0.99999), st.floats(1e-12, 1e-2)),
)


@st.composite
def runs(draw):
    """An optimizer's settings, its parameters' numbers, an order of them with Values it does not hold mixed
    in, and the gradients of some steps (in the order)."""
    make = draw(makers)
    n = draw(st.integers(1, 6))
    data = draw(st.lists(numbers, min_size=n, max_size=n))
    extra = draw(st.lists(numbers, max_size=3))
    order = draw(st.permutations(range(n + len(extra))))
    steps = draw(st.lists(st.lists(gradients, min_size=len(order), max_size=len(order)), min_size=1, max_size=12))
    return make, data, extra, order, steps


@given(runs(), st.integers(0, 12), st.lists(gradients, min_size=6, max_size=6))
def test_array_steps_are_the_scalar_steps_bit_for_bit_and_continue_after_write_back(run, then, later):
    (kind, options), data, extra, order, steps = run
    reference = kind([Value(x) for x in data], **options)
    params = [Value(x, label=f"p{i}") for i, x in enumerate(data)]
    for p, r in zip(params, reference.params):
        r.label = p.label
    others = [Value(x) for x in extra]
    optimizer = kind(params, **options)
    values = [*params, *others]
    laid_out = [values[k] for k in order]
    arrays = optimizer.arrays(laid_out)
    assert type(arrays) is {SGD: SGDArrays, Adam: AdamArrays}[kind]
    where = {id(p): k for k, p in enumerate(laid_out)}
    for grads in steps:  # grads in the arrays' order; the scalar step gets them in the optimizer's
        expected = scalar_step(reference, [grads[where[id(p)]] for p in params])
        assert array_step(arrays, np.array(grads)) == expected
        assert arrays_state(arrays) == state_of(reference)
        assert bits(arrays.data[[where[id(o)] for o in others]]) == bits(extra)  # the others are left alone
    assert bits(p.data for p in values) == bits([*data, *extra])  # nothing touched the Values
    assert state_of(optimizer) == state_of(kind([Value(x) for x in data], **options))  # nor the optimizer
    arrays.write_back()
    assert state_of(optimizer) == state_of(reference)
    assert bits(o.data for o in others) == bits(extra)
    for k in range(then):  # the scalar steps go on from where the arrays stopped
        grads = [later[(k + i) % len(later)] for i in range(len(params))]
        assert scalar_step(optimizer, grads) == scalar_step(reference, grads)
        assert state_of(optimizer) == state_of(reference)


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.5), lambda ps: Adam(ps, lr=0.1)])
def test_a_non_finite_gradient_is_refused_naming_the_parameter_and_nothing_changes(make):
    ps = [Value(1.0, label="w1"), Value(2.0, label="w2"), Value(3.0, label="w3")]
    arrays = make(ps).arrays([ps[2], ps[0], ps[1]])
    arrays.step(np.array([1.0, 1.0, 1.0]))
    before = arrays._state
    for grads in ([1.0, 1.0, math.inf], [math.nan, 1.0, -math.inf]):  # w2 is first in the optimizer's order
        with pytest.raises(FloatingPointError, match=r"parameter 1 \(w2\) has a non-finite gradient -?(inf|nan); "
                                                     r"nothing was updated"):
            arrays.step(np.array(grads))
        assert arrays._state is before
    assert [p.data for p in ps] == [1.0, 2.0, 3.0]


def test_a_step_that_would_overflow_is_refused_naming_the_parameter():
    ps = [Value(1.0), Value(1e308)]
    scalar_ps = [Value(1.0), Value(1e308)]
    arrays = SGD(ps, lr=10.0).arrays()
    message = scalar_step(SGD(scalar_ps, lr=10.0), [1.0, -1e308])
    assert message is not None and "would make parameter 1 inf (learning rate too large?)" in message
    with pytest.raises(FloatingPointError) as error:
        arrays.step(np.array([1.0, -1e308]))
    assert str(error.value) == message
    assert arrays.data.tolist() == [1.0, 1e308]


def test_values_the_optimizer_does_not_hold_keep_their_numbers_whatever_their_gradient():
    w, frozen = Value(1.0), Value(5.0)
    arrays = Adam([w], lr=0.1).arrays([frozen, w])
    arrays.step(np.array([math.nan, 2.0]))  # the frozen Value's gradient is not the optimizer's business
    assert arrays.data[0] == 5.0 and arrays.m[0] == arrays.v[0] == 0.0 and arrays.data[1] != 1.0
    arrays.write_back()
    assert frozen.data == 5.0 and w.data == arrays.data[1]


def test_the_default_order_is_the_optimizers():
    ps = [Value(1.0), Value(2.0)]
    arrays = SGD(ps, lr=0.1).arrays()
    assert arrays.params == ps and arrays.data.tolist() == [1.0, 2.0] and arrays.positions.tolist() == [0, 1]


def test_hyperparameters_are_read_at_every_step_as_the_scalar_step_reads_them():
    ps, ref = [Value(1.0)], [Value(1.0)]
    optimizer, reference = Adam(ps, lr=0.1), Adam(ref, lr=0.1)
    arrays = optimizer.arrays()
    for lr in (0.1, 0.01, 0.5):  # a schedule
        optimizer.lr = reference.lr = lr
        arrays.step(np.array([0.3]))
        scalar_step(reference, [0.3])
    arrays.write_back()
    assert state_of(optimizer) == state_of(reference)


def test_arrays_start_from_the_optimizers_state():
    ps, ref = [Value(1.0), Value(-1.0)], [Value(1.0), Value(-1.0)]
    optimizer, reference = SGD(ps, lr=0.1, momentum=0.9), SGD(ref, lr=0.1, momentum=0.9)
    for opt in (optimizer, reference):
        scalar_step(opt, [0.5, -0.25])
    arrays = optimizer.arrays(ps[::-1])
    assert arrays.velocity.tolist() == optimizer.velocity[::-1]
    arrays.step(np.array([1.0, 2.0]))
    scalar_step(reference, [2.0, 1.0])
    arrays.write_back()
    assert state_of(optimizer) == state_of(reference)


def test_a_ctrl_c_inside_a_step_changes_nothing(monkeypatch):
    ps = [Value(1.0), Value(2.0)]
    arrays = Adam(ps, lr=0.1).arrays()
    arrays.step(np.array([1.0, -1.0]))
    before = arrays._state

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "sqrt", interrupted)
    with pytest.raises(KeyboardInterrupt):
        arrays.step(np.array([1.0, -1.0]))
    assert arrays._state is before and arrays.t == 1


class Recording(SGD):
    """An optimizer with a step of its own: the arrays must call it."""

    def __init__(self, params, lr):
        super().__init__(params, lr)
        self.after = []

    def step(self):
        super().step()
        self.after.append([p.data for p in self.params])


def test_an_optimizer_with_a_step_of_its_own_is_stepped_through_it():
    ps, ref = [Value(1.0, label="a"), Value(2.0, label="b")], [Value(1.0), Value(2.0)]
    optimizer, reference = Recording(ps, lr=0.1), SGD(ref, lr=0.1)
    arrays = optimizer.arrays(ps[::-1])
    assert type(arrays) is OptimizerArrays
    arrays.step(np.array([3.0, 4.0]))
    scalar_step(reference, [4.0, 3.0])
    assert arrays.data.tolist() == [r.data for r in ref][::-1] and optimizer.after == [[r.data for r in ref]]
    assert [p.data for p in ps] == [1.0, 2.0]  # the Values hold their numbers until write_back
    with pytest.raises(FloatingPointError, match=r"parameter 0 \(a\) has a non-finite gradient nan"):
        arrays.step(np.array([1.0, math.nan]))
    arrays.write_back()
    assert [p.data for p in ps] == [r.data for r in ref]


def test_a_ctrl_c_in_an_optimizers_own_step_leaves_the_values_and_arrays_as_they_were():
    class Halfway(Optimizer):
        def step(self):
            self.params[0].data += 1.0
            raise KeyboardInterrupt

    ps = [Value(1.0), Value(2.0)]
    arrays = Halfway(ps).arrays()
    before = arrays._state
    with pytest.raises(KeyboardInterrupt):
        arrays.step(np.array([1.0, 1.0]))
    assert arrays._state is before and [p.data for p in ps] == [1.0, 2.0]


@pytest.mark.parametrize("order, error, message", [
    (lambda ps: ps[:1], ValueError, r"SGD.arrays: order lacks parameter 1 \(b\) of the optimizer \(1 missing\)"),
    (lambda ps: [*ps, ps[0]], ValueError, r"SGD.arrays: order\[2\] appears twice"),
    (lambda ps: [*ps, 1.0], TypeError, r"SGD.arrays: order\[2\] is a float, not a Value"),
])
def test_a_bad_order_is_a_clear_error(order, error, message):
    ps = [Value(1.0, label="a"), Value(2.0, label="b")]
    with pytest.raises(error, match=message):
        SGD(ps, lr=0.1).arrays(order(ps))


def test_gradients_must_be_one_per_value():
    arrays = SGD([Value(1.0), Value(2.0)], lr=0.1).arrays()
    with pytest.raises(ValueError, match=r"SGDArrays.step: expected 2 gradients in a 1-D array, got shape \(3,\)"):
        arrays.step(np.array([1.0, 2.0, 3.0]))


def test_without_numpy_arrays_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(ImportError, match=r'optimizer.arrays needs numpy: pip install "microgd\[fast\]"'):
        SGD([Value(1.0)], lr=0.1).arrays()
