"""The engine's contract: reuse, depth, accumulation, no_grad, higher order, numerics, errors, micrograd."""

import asyncio
import math
import re
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgd import DomainError, Value, grad, gradients, is_recording, no_grad, rules
from microgd.check import gradcheck
from microgd.engine import backward_steps
from microgd.testing import expressions

weights = st.floats(-3, 3)


def sigmoid(s):
    return 1 / (1 + math.exp(-s))


# -- reuse and the order of the walk --

def test_reuse_sums_every_path():
    a = Value(3.0)
    (a + a).backward()
    assert a.grad == 2.0
    b = Value(3.0)
    (b * b).backward()
    assert b.grad == 6.0
    c = Value(1.5)
    d = c + c
    e = d + d
    e.backward()
    assert (c.grad, d.grad, e.grad) == (4.0, 2.0, 1.0)


def test_each_node_is_processed_once(monkeypatch):
    calls = []
    vjp = rules.add.vjp

    def counted(g, out, x, y):  # floats only, so backward runs it as written (no compiled step) and it counts
        if not isinstance(g, float):
            raise TypeError("a counting rule, for floats")
        calls.append(1)
        return vjp(g, out, x, y)

    monkeypatch.setattr(rules.add, "vjp", counted)
    x = Value(1.0)
    y = x
    for _ in range(30):  # a ladder: each step is used twice by the next, 2**30 paths in all
        y = y + y
    y.backward()
    assert len(calls) == 30
    assert x.grad == 2.0**30


def test_topo_lists_each_node_once_parents_first():
    a, b = Value(1.0), Value(2.0)
    c = a * b
    d = c + c * a
    order = d.topo()
    assert len(order) == len(set(map(id, order))) == 5
    position = {id(v): i for i, v in enumerate(order)}
    for v in order:
        assert all(position[id(p)] < position[id(v)] for p in v.parents)
    assert order[-1] is d


def test_million_node_chain_differentiates_without_recursion():
    x = Value(1.0)
    y = x
    for _ in range(1_000_000):
        y = y + x  # a chain a million nodes deep, every node also reusing x
    y.backward()
    assert x.grad == 1_000_001.0
    assert y.data == 1_000_001.0


def test_leaves_accumulate_interior_nodes_hold_the_latest_call():
    w = Value(2.0)
    hidden = w * 3.0
    out = hidden * hidden
    out.backward()
    out.backward()
    assert w.grad == 2 * (2 * 6.0 * 3.0)  # leaf: summed over both calls
    assert hidden.grad == 2 * 6.0  # interior: the latest call only
    assert out.grad == 1.0


def test_backward_touches_only_the_nodes_it_reaches():
    w = Value(2.0)
    inner, other = w * 3.0, w * 5.0
    other.grad = 7.0  # another graph's gradient, on a node this backward does not reach
    out = inner * inner
    inner.backward()  # first from the inner node, then from the output: each walk marks its own nodes
    out.backward()
    assert (other.grad, inner.grad, out.grad) == (7.0, 2 * 6.0, 1.0)
    assert w.grad == 3.0 + 2 * 6.0 * 3.0


def test_backward_from_a_leaf_accumulates_one():
    a = Value(4.0)
    a.backward()
    a.backward()
    assert a.grad == 2.0


def test_gradients_is_functional_and_leaves_grad_alone():
    x, y = Value(2.0), Value(5.0)
    z = x * y + x
    assert gradients(z, [x, y, Value(1.0)]) == [6.0, 2.0, 0.0]
    assert x.grad == y.grad == z.grad == 0.0


@given(expressions(max_depth=5, n_vars=3))
def test_random_graphs_with_reuse_match_finite_differences(expression):
    assert gradcheck(expression.build, *expression.inputs, order=2)


# -- no_grad --

def test_no_grad_records_nothing_and_restores_on_error():
    w = Value(1.0)
    with no_grad():
        y = w * 2.0 + 1.0
        with no_grad():
            pass
        z = w * 3.0
    assert y.parents == () and z.parents == () and y.data == 3.0
    with pytest.raises(ZeroDivisionError), no_grad():
        raise ZeroDivisionError
    assert (w * 2.0).parents[0] is w


def test_grad_mode_is_per_thread():
    """One thread inside no_grad() never stops another thread's graph (the switch was one global)."""
    inside, outside, done = threading.Event(), threading.Event(), threading.Event()
    results = {}

    def quiet():
        with no_grad():
            inside.set()
            outside.wait(5)
            results["quiet"] = (Value(2.0) * 3).parents
        done.set()

    def learning():
        inside.wait(5)
        w = Value(2.0)
        y = w * w
        y.backward()
        results["learning"] = (is_recording(), y.parents != (), w.grad)
        outside.set()

    threads = [threading.Thread(target=quiet), threading.Thread(target=learning)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {"quiet": (), "learning": (True, True, 4.0)}


def test_overlapping_no_grad_blocks_in_threads_restore_each_threads_own_mode():
    barrier = threading.Barrier(2)
    seen = []

    def worker(delay):
        with no_grad():
            barrier.wait(5)
            time.sleep(delay)
        barrier.wait(5)
        seen.append(is_recording())

    threads = [threading.Thread(target=worker, args=(d,)) for d in (0.0, 0.05)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == [True, True] and is_recording()


def test_grad_mode_is_per_async_task():
    async def quiet(started, resume):
        with no_grad():
            started.set()
            await resume.wait()
            return (Value(1.0) + 1).parents

    async def learning(started, resume):
        await started.wait()
        recording = is_recording() and (Value(1.0) + 1).parents != ()
        resume.set()
        return recording

    async def main():
        started, resume = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(quiet(started, resume), learning(started, resume))

    assert asyncio.run(main()) == [(), True]


@pytest.mark.parametrize("call", [math.exp, math.log, math.tanh, math.sqrt, float, math.isfinite])
def test_python_math_functions_refuse_a_value_instead_of_dropping_it(call):
    w = Value(0.5)
    with pytest.raises(TypeError, match=r"a Value is not a float.*v\.exp\(\).*v\.data"):
        w * call(w)


def test_no_nan_or_inf_reaches_data_or_a_gradient_silently():
    with pytest.raises(DomainError, match=r"\*: the result is inf for the operand\(s\) 1e\+200, 1e\+200"):
        Value(1e200) * Value(1e200)
    with pytest.raises(DomainError, match=r"-: the result is -inf"):
        Value(-1.7e308) - Value(1.7e308)
    with pytest.raises(DomainError, match=r"weighted_sum: the result is inf"):
        Value.weighted_sum([Value(1e200), 1e200], [Value(1e200), 1e200], 0.0)
    with pytest.raises(DomainError, match=r"div: the result is inf|/: the result is inf"):
        Value(1.0) / Value(5e-324)
    x = Value(5e-324)
    y = x.log()
    with pytest.raises(DomainError, match=r"backward of log\(5e-324\): its contribution to input 1 is inf"):
        y.backward()
    with pytest.raises(DomainError, match=r"log\(5e-324\)"):
        gradients(y, [x])
    b = Value(1e-10)
    z = b * 1e308 + b * 1e308  # each contribution to b.grad is finite, their sum is not
    with pytest.raises(DomainError, match=r"the gradient of the leaf 1e-10 is inf: the contributions of its uses "
                                          r"summed past the largest float"):
        z.backward()
    b.grad = 1e308  # this call's gradient is finite, and so is what b held: their sum is not
    with pytest.raises(DomainError, match=r"the gradient of the leaf 1e-10 is inf: this call's gradient added to the "
                                          r"1e\+308 it held passed the largest float"):
        (b * 1e308).backward()


def test_grad_refuses_to_build_a_graph_inside_no_grad():
    with no_grad(), pytest.raises(RuntimeError, match="no_grad"):
        grad(lambda x: x * x)(Value(1.0))


# -- higher order --

@given(weights)
def test_second_derivatives_of_activations(x):
    s, t = sigmoid(x), math.tanh(x)
    assert math.isclose(grad(grad(Value.sigmoid))(x), s * (1 - s) * (1 - 2 * s), rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(grad(grad(Value.tanh))(x), -2 * t * (1 - t * t), rel_tol=1e-9, abs_tol=1e-12)


def test_third_derivative_and_mixed_partials():
    assert grad(grad(grad(lambda x: x**4)))(2.0) == 48.0
    f = lambda x, y: x * x * y + y.exp()  # noqa: E731
    assert grad(grad(f, 0), 1)(3.0, 0.5) == 6.0
    assert grad(f, argnums=(0, 1))(3.0, 0.0) == (0.0, 10.0)


def test_grad_of_a_constant_function_is_zero():
    assert grad(lambda x: 3.0)(1.0) == 0.0
    assert grad(grad(lambda x: 2 * x))(1.0) == 0.0


def test_grad_hands_every_argument_to_f_as_a_value():
    f = lambda x, y: x * (-y).exp()  # noqa: E731  (y is not differentiated, and still a Value)
    assert grad(f)(3.0, 0.0) == 1.0 and grad(f, 1)(3.0, 0.0) == -3.0 and grad(f, (0, 1))(3.0, 0.0) == (1.0, -3.0)
    assert type(grad(f)(3.0, 0.0)) is float
    seen = []
    grad(lambda x, n, flag, items: seen.extend([x, n, flag, items]) or x * n)(2.0, 3, True, [1.0])
    assert [type(a) for a in seen] == [Value, Value, bool, list] and seen[1].is_constant and seen[1].data == 3.0
    assert not seen[0].is_constant


def test_grad_on_values_of_a_function_using_its_other_arguments_builds_a_graph():
    f = lambda x, y: x * x * (-y).exp()  # noqa: E731
    d = grad(f)(Value(3.0), 0.0)
    assert isinstance(d, Value) and d.data == 6.0
    assert grad(grad(f))(3.0, 0.0) == 2.0
    assert grad(grad(f), 1)(3.0, 0.0) == -6.0 and grad(grad(f, 1), 0)(3.0, 0.0) == -6.0
    assert grad(grad(f, 1), 1)(3.0, 0.0) == 9.0


def test_grad_keeps_a_number_argument_a_constant_of_its_op():
    """``x ** n`` with n a number not differentiated stays the power by a constant (no log of a negative base);
    an outer grad's constant differentiated by an inner grad is a new leaf."""
    assert grad(lambda x, n: x ** n)(-2.0, 3.0) == 12.0
    assert grad(grad(lambda x, n: x ** n), 0)(-2.0, 3.0) == -12.0
    mixed = grad(grad(lambda x, y: x ** y, 1), 0)(2.0, 3.0)
    assert mixed == grad(grad(lambda x, y: x ** y, 0), 1)(2.0, 3.0) == pytest.approx(12 * math.log(2) + 4, rel=1e-15)


def test_grad_argnums_out_of_range():
    with pytest.raises(IndexError, match="argnums 2"):
        grad(lambda x, y: x * y, argnums=2)(1.0, 2.0)


# -- numerics --

@pytest.mark.parametrize("x", [-1e308, -1000.0, -30.0, 0.0, 30.0, 1000.0, 1e308])
def test_sigmoid_and_tanh_are_finite_for_every_finite_input(x):
    for op in (Value.sigmoid, Value.tanh):
        v = Value(x)
        y = op(v)
        y.backward()
        assert math.isfinite(y.data) and math.isfinite(v.grad)
        assert -1.0 <= y.data <= 1.0
    assert Value(-1000.0).sigmoid().data == 0.0 and Value(1000.0).sigmoid().data == 1.0


# -- bad input --

@pytest.mark.parametrize("bad, name", [("a", "str"), (None, "NoneType"), ([1], "list"), (1j, "complex"),
                                       (b"1", "bytes")])
def test_value_of_a_non_number_is_a_type_error_naming_the_type(bad, name):
    with pytest.raises(TypeError, match=name):
        Value(bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_are_rejected_at_the_door(bad):
    with pytest.raises(ValueError, match="finite"):
        Value(bad)
    with pytest.raises(ValueError, match="finite"):
        Value(1.0) * bad


def test_numbers_of_other_types_are_accepted_as_floats():
    from fractions import Fraction

    assert Value(3).data == 3.0 and type(Value(3).data) is float
    assert Value(True).data == 1.0 and Value(Fraction(1, 4)).data == 0.25


@pytest.mark.parametrize("make, pattern", [
    (lambda: Value(0.0).log(), r"log: .*0\.0"),
    (lambda: Value(-1.0).log(), r"log: .*-1\.0"),
    (lambda: Value(-8.0) ** 0.5, r"pow: negative base -8\.0 .* 0\.5"),
    (lambda: Value(-8.0) ** Value(0.5), r"pow: negative base -8\.0"),
    (lambda: Value(0.0) ** -1, r"pow: zero base"),
    (lambda: Value(1.0) / 0, r"div: division by zero \(1\.0 / 0\.0\)"),
    (lambda: 2 / Value(0.0), r"div: division by zero \(2\.0 / 0\.0\)"),
    (lambda: Value(1000.0).exp(), r"exp: .*1000\.0"),
    (lambda: Value(10.0) ** 400, r"pow: .*overflow"),
])
def test_domain_errors_name_the_op_and_operand(make, pattern):
    with pytest.raises(DomainError, match=pattern):
        make()


def test_an_int_too_large_for_a_float_is_a_clear_error():
    with pytest.raises(ValueError, match="too large for a float"):
        Value(10**400)


def test_x_to_the_power_zero_has_derivative_zero_even_at_zero():
    assert grad(lambda x: x**0)(0.0) == 0.0 and grad(lambda x: x**0)(-2.0) == 0.0
    assert grad(grad(lambda x: x**0))(0.0) == 0.0


def test_integer_powers_of_negative_bases_are_fine():
    x = Value(-2.0)
    y = x**3
    y.backward()
    assert (y.data, x.grad) == (-8.0, 12.0)


def test_backward_errors_name_the_op():
    x = Value(0.0)
    with pytest.raises(DomainError, match=r"backward of powc\(0\.0, 0\.5\): the derivative is not a finite number"):
        (x**0.5).backward()
    with pytest.raises(DomainError, match=r"backward of pow\(-2\.0, 2\.0\).*log: operand must be > 0"):
        (Value(-2.0) ** Value(2.0)).backward()


@pytest.mark.parametrize("make", [lambda: Value(0.0) ** 0.5, lambda: Value(-2.0) ** Value(2.0),
                                  lambda: Value(1e-300).log() * 1e10])
def test_backward_steps_raise_what_backward_raises(make):
    """The walk the pictures' page is built from fails as backward() does: DomainError naming the op."""
    with pytest.raises(DomainError) as by_backward:
        make().backward()
    with pytest.raises(DomainError) as by_steps:
        list(backward_steps(make()))
    op = str(by_backward.value).split(":")[0]
    assert str(by_steps.value).startswith(op) and "not a finite number" in str(by_steps.value)


@given(expressions(max_nodes=8))
def test_backward_steps_give_backwards_gradients_exactly(e):
    root = e.build(*map(Value, e.inputs))
    found = {root: 1.0}
    order = []
    for node, g, contributions in backward_steps(root):
        assert g == found.get(node, 0.0) and contributions == node.contributions(g)
        order.append(node)
        for x, c in zip(node.parents, contributions):
            found[x] = found.get(x, 0.0) + c
    assert order == [v for v in reversed(root.topo()) if v.parents]
    root.backward()
    assert all(x.grad == g for x, g in found.items())


def test_micrograd_style_nodes_are_recorded_and_a_missing_derivative_is_a_clear_error():
    """micrograd's way to add an op (``Value(data, children, name)``, then ``out._backward = closure``): any name
    makes a node; one with no derivative fails in backward, naming the op (tests/test_closure_ops.py has more)."""
    x = Value(0.5)
    custom = Value(2.0, (x,), "custom")
    assert custom.op == "custom" and custom.parents == (x,)
    with pytest.raises(rules.RuleError, match="op 'custom' has no derivative: .* microgd.define_op"):
        custom.backward()
    wide = Value(2.0, (x, x), "tanh")  # a registry name with children its op does not take
    with pytest.raises(rules.RuleError, match=re.escape("microgd's op 'tanh' takes 1 input(s), this node has 2")):
        wide.backward()
    with pytest.raises(rules.RuleError, match=re.escape("_children must be Values (wrap a number: Value(2.0)), got "
                                                        "(Val")):
        Value(2.0, (x, 2.0), "+")
    out = Value(2.0, (x,), "tanh")  # the registry's tanh until a closure is given
    out.backward()
    assert x.grad == 1 - 2.0 * 2.0
    out._backward = lambda: None
    assert out._backward() is None and out.rule.__class__.__name__ == "Closure"


# -- the tutorials' chain rules, held against the engine --

@given(w=weights, x=weights, target=st.floats(0, 1))
def test_tutorial1_one_neuron_chain_rule(w, x, target):
    """error = (sigmoid(w x) - target)^2: grad = g3 * g2 * g1 with g2 taken at the sop (tutorial 1 passes
    `predicted`)."""
    wv = Value(w)
    err = ((wv * x).sigmoid() - target) ** 2
    err.backward()
    sop = w * x
    predicted = sigmoid(sop)
    g1 = 2 * (predicted - target)
    g2 = sigmoid(sop) * (1 - sigmoid(sop))
    g3 = x
    assert math.isclose(wv.grad, g3 * g2 * g1, rel_tol=1e-9, abs_tol=1e-12)


@given(st.lists(weights, min_size=13, max_size=13), st.lists(st.floats(0, 1), min_size=3, max_size=3))
def test_tutorial2_output_and_hidden_deltas(params, data):
    """2-3-1 sigmoid network, L = (y - z)^2 / 2: delta_o = y(1-y)(y-z), delta_h = a(1-a) w_o delta_o."""
    x, z = data[:2], data[2]
    hidden_w = [[Value(params[3 * j]), Value(params[3 * j + 1])] for j in range(3)]
    hidden_b = [Value(params[3 * j + 2]) for j in range(3)]
    out_w, out_b = [Value(p) for p in params[9:12]], Value(params[12])
    a = [Value.weighted_sum(hidden_w[j], x, hidden_b[j]).sigmoid() for j in range(3)]
    y = Value.weighted_sum(out_w, a, out_b).sigmoid()
    loss = (y - z) ** 2 / 2
    loss.backward()

    yd, ad = y.data, [v.data for v in a]
    delta_o = yd * (1 - yd) * (yd - z)
    assert math.isclose(out_b.grad, delta_o, rel_tol=1e-9, abs_tol=1e-15)
    for j in range(3):
        assert math.isclose(out_w[j].grad, delta_o * ad[j], rel_tol=1e-9, abs_tol=1e-15)
        delta_h = ad[j] * (1 - ad[j]) * out_w[j].data * delta_o
        assert math.isclose(hidden_b[j].grad, delta_h, rel_tol=1e-9, abs_tol=1e-15)
        for i in range(2):
            assert math.isclose(hidden_w[j][i].grad, delta_h * x[i], rel_tol=1e-9, abs_tol=1e-15)
