"""The backward installed on top of the engine, its rules compiled from the registry: the engine's own
backward's floats, bit for bit, and it follows every change of a rule (a patched vjp, a redefined op, a rule
that cannot be compiled)."""

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgd import DomainError, RuleError, Value, define_op, rules
from microgd.compiled import HOT, MAX_ARITY, reading_backward, step_source
from microgd.rules import OPS
from microgd.testing import expressions, mlps


@pytest.fixture(autouse=True)
def _ops_defined_here_are_removed_afterwards():
    before = set(OPS)
    yield
    for name in set(OPS) - before:
        del rules._REGISTRY[name]


def rules_on_floats(out, leaves):
    """The engine's own backward, the one a learner reads (the sweep over floats), from zero grads."""
    held = [v.grad for v in leaves]
    for v in leaves:
        v.grad = 0.0
    reading_backward(out)
    found = [v.grad for v in leaves]
    for v, g in zip(leaves, held):
        v.grad = g
    return found


def bits(x):
    return struct.pack("<d", x)


def both_backwards(out, held):
    """Every node's grad after the installed backward and after the engine's own, each from the same start
    (``held``: what each leaf holds before the call), as bytes."""
    nodes = out.topo()
    results = []
    for backward in (Value.backward, reading_backward):
        for v in nodes:
            v.grad = held.get(v, 0.0) if not v.parents else 123.0  # interior grads are overwritten
        backward(out)
        results.append([bits(v.grad) for v in nodes])
    return results


@pytest.mark.parametrize("name", [name for name, op in OPS.items() if op.arity is not None])
def test_every_fixed_arity_rule_compiles_but_those_with_constant_inputs(name):
    op = OPS[name]
    source = step_source(op, op.arity)
    assert (source is None) == bool(op.constants)
    if source is not None:
        assert source.count(".grad += ") == op.arity


@given(expressions(max_depth=5, n_vars=3, max_nodes=10), st.lists(st.sampled_from([0.0, -0.0, 1.5, -1e-300, 7e300]),
                                                                     min_size=3, max_size=3))
def test_the_installed_backward_is_the_engines_bit_for_bit(expression, held):
    leaves = [Value(x) for x in expression.inputs]
    out = expression.build(*leaves)
    try:
        fast, reading = both_backwards(out, dict(zip(leaves, held)))
    except DomainError:  # then both raise the same error
        messages = []
        for backward in (Value.backward, reading_backward):
            with pytest.raises(DomainError) as caught:
                backward(out)
            messages.append(str(caught.value))
        assert messages[0] == messages[1]
        return
    assert fast == reading


@given(mlps())
def test_the_installed_backward_is_the_engines_bit_for_bit_on_networks(network):
    out = network.loss()
    params = [v for v in out.topo() if not v.parents]
    fast, reading = both_backwards(out, {p: 0.25 * k for k, p in enumerate(params)})
    assert fast == reading


def test_a_zero_gradient_is_positive_zero_as_in_micrograd():
    x = Value(-2.0)
    h = (x * 3.0).relu()  # a dead unit: its input's gradient is -1 * 0
    out = h * -1.0
    for backward in (Value.backward, reading_backward):
        backward(out)
        assert [bits(v.grad) for v in (h, x)] == [bits(-1.0), bits(0.0)]
        assert bits(out.parents[0].parents[0].grad) == bits(0.0)  # x * 3, not -0.0


@pytest.mark.parametrize("n", [1, 2, 3, 16, 40])
def test_rules_of_any_number_of_inputs_compile_per_arity(n):
    xs = [Value(0.25 * k - 1.0) for k in range(n)]
    ws = [Value(1.0 / (k + 1)) for k in range(n)]
    out = rules.logsumexp(*xs) * Value.weighted_sum(ws, xs, Value(0.5))
    out.backward()
    assert [v.grad for v in xs + ws] == rules_on_floats(out, xs + ws)


def test_a_node_wider_than_max_arity_runs_its_rule_as_written():
    assert step_source(rules.logsumexp, MAX_ARITY) is not None and step_source(rules.logsumexp, MAX_ARITY + 1) is None
    n = MAX_ARITY // 2 + 1
    ws, xs = [Value(1.0 + k) for k in range(n)], [Value(0.5 * k) for k in range(n)]
    Value.weighted_sum(ws, xs, 0.0).backward()
    assert [w.grad for w in ws] == [x.data for x in xs] and [x.grad for x in xs] == [w.data for w in ws]


def test_a_patched_rule_is_compiled_again(monkeypatch):
    x, y = Value(3.0), Value(5.0)
    (x * y).backward()
    assert (x.grad, y.grad) == (5.0, 3.0)
    monkeypatch.setattr(rules.multiply, "vjp", lambda g, out, a, b: (g * b + 1.0, g * a))  # wrong on purpose
    x.grad = y.grad = 0.0
    (x * y).backward()
    assert (x.grad, y.grad) == (6.0, 3.0)


def scaled_op(scale):
    """The op "scaled", defined from one line each time (as a notebook cell run again replaces its op)."""
    return define_op("scaled", forward=lambda x: scale * x, vjp=lambda g, out, x: (g * scale,))


def test_a_redefined_op_uses_its_new_rule():
    for scale in (2.0, 3.0):
        x = Value(1.5)
        scaled_op(scale)(x).backward()
        assert x.grad == scale


def test_a_rule_that_symbols_cannot_run_runs_as_written():
    wave = define_op("wave", forward=math.sin, vjp=lambda g, out, x: (g * math.cos(x),))
    assert step_source(wave, 1) is None
    x = Value(0.5)
    (wave(x) * 2.0).backward()
    assert x.grad == 2.0 * math.cos(0.5)


@pytest.mark.parametrize("name", ["node", "g", "p0", "compiled", "len", "apply_rule", "rule0"])
def test_a_helper_op_named_like_a_local_of_the_loop_is_not_hidden(name):
    define_op(name, forward=lambda x: 3.0 * x, vjp=lambda g, out, x: (3.0 * g,))
    user = define_op("user", forward=lambda x: 3.0 * x * x, vjp=lambda g, out, x: (g * OPS[name](2.0 * x),))
    x = Value(0.5)
    user(x).backward()
    assert x.grad == 3.0


def test_a_rule_calling_the_registry_helpers_compiles_with_them():
    leaky = define_op("leaky", forward=lambda x: x if x > 0 else 0.1 * x,
                      vjp=lambda g, out, x: (g * (0.1 + 0.9 * rules.step(x)),))
    assert "step(p0.data)" in step_source(leaky, 1)
    xs = [Value(-2.0), Value(3.0)]
    (leaky(xs[0]) + leaky(xs[1])).backward()
    assert [x.grad for x in xs] == [0.1, 0.1 + 0.9]


def test_a_failing_compiled_step_is_a_domain_error_naming_the_op():
    y = Value(0.0) ** Value(0.5)  # fine forward; its rule takes 0.0 ** -0.5
    with pytest.raises(DomainError, match=r"backward of pow\(0.0, 0.5\): the derivative is not a finite number"):
        y.backward()


def test_a_rule_of_the_wrong_length_is_a_rule_error_whichever_path_runs_it(monkeypatch):
    monkeypatch.setattr(rules.tanh, "vjp", lambda g, out, x: (g, g))
    with pytest.raises(RuleError, match="'tanh' returned 2 entries for 1 inputs"):
        Value(0.5).tanh().backward()


def test_the_hot_ops_are_registry_ops():
    assert all(OPS[op.name] is op for op in HOT)


def test_micrograd_style_closure_nodes_run_the_engines_step_bit_for_bit():
    """A node given a ``_backward`` closure runs the engine's own step (local_step) inside the loop: one step for
    every closure node, however many (no compiled step per closure), and the engine's floats."""
    from microgd import compiled

    def sin(v):
        out = Value(math.sin(v.data), (v,), "sin")

        def _backward():
            v.grad += math.cos(v.data) * out.grad
        out._backward = _backward
        return out

    steps = compiled._apply_rules.__globals__["steps"]
    x = Value(0.3)
    out = x
    for _ in range(50):
        out = sin(out) * x + sin(x)
    before = len(steps)
    fast, reading = both_backwards(out, {x: 0.5})
    assert fast == reading
    sin(sin(x)).backward()
    assert len(steps) <= before + 1
    assert step_source(out.parents[1].rule, 1) is None


def test_handing_over_to_the_engine_starts_every_leaf_from_what_it_held():
    """Only the sum of every grad passes the largest float (each grad is finite): the engine's backward runs
    again from the leaves' old grads, and gives its own gradients (not this call's added twice)."""
    a, b = Value(1.0), Value(-1.0)
    y = a * 1e308 + b * 1.5e308
    y.backward()
    assert (a.grad, b.grad) == (1e308, 1.5e308)
    with pytest.raises(DomainError, match=r"the leaf -1.0 is inf: this call's gradient added to the 1.5e\+308"):
        y.backward()  # leaves accumulate: now b's passes the largest float, and the engine names it
    assert (a.grad, b.grad) == (1e308, 1.5e308)  # what they held
