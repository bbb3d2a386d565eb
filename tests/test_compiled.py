"""The backward loop compiled from the registry: the same floats as the rules called on floats, and it follows
every change of a rule (a patched vjp, a redefined op, a rule that cannot be compiled)."""

import math

import pytest
from hypothesis import given

from microgd import DomainError, RuleError, Value, define_op, gradients, rules
from microgd.compiled import HOT, MAX_ARITY, step_source
from microgd.rules import OPS
from microgd.testing import expressions


@pytest.fixture(autouse=True)
def _ops_defined_here_are_removed_afterwards():
    before = set(OPS)
    yield
    for name in set(OPS) - before:
        del rules._REGISTRY[name]


def rules_on_floats(out, leaves):
    """Each node's rule called on floats, added in backward's order: the engine before its loop was compiled."""
    grads = {id(out): 1.0}
    for node in reversed(out.topo()):
        if node.parents:
            upstream = grads.get(id(node), 0.0)
            for parent, c in zip(node.parents, node._rule.vjp(upstream, node.data, *[p.data for p in node.parents])):
                grads[id(parent)] = grads.get(id(parent), 0.0) + c
    return [grads.get(id(v), 0.0) for v in leaves]


@pytest.mark.parametrize("name", [name for name, op in OPS.items() if op.arity is not None])
def test_every_fixed_arity_rule_compiles_but_those_with_constant_inputs(name):
    op = OPS[name]
    source = step_source(op, op.arity)
    assert (source is None) == bool(op.constants)
    if source is not None:
        assert source.count(".grad += ") == op.arity


@given(expressions(max_depth=5, n_vars=3, max_nodes=10))
def test_backward_gives_the_floats_of_the_rules_called_one_by_one(expression):
    leaves = [Value(x) for x in expression.inputs]
    out = expression.build(*leaves)
    out.backward()
    assert [v.grad for v in leaves] == rules_on_floats(out, leaves) == gradients(out, leaves)


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
