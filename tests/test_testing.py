"""The hypothesis strategies: what they draw, that it evaluates the same on floats, and that it stays in domain."""

import math
from collections import Counter

import pytest
from hypothesis import Phase, find, given, settings

from microgd import Value, gradients
from microgd.check import numeric_gradient
from microgd.rules import OPS
from microgd.testing import Expression, expressions, mlps, values

FIRST_FOUND = settings(database=None, phases=[Phase.generate])  # for find(): the first match, unshrunk


def depth(e):
    """Most drawn ops on a path from an input to the last node."""
    depths = [0] * len(e.inputs)
    for _, operands, _ in e.nodes:
        depths.append(1 + max(depths[i] for i in operands))
    return max(depths)


def reused(e):
    """Some input or node is an operand more than once (twice in one node, or in two nodes)."""
    return any(n > 1 for n in Counter(i for _, operands, _ in e.nodes for i in operands).values())


# -- values ----------------------------------------------------------------------------------------

@given(values(), values(0.5, 2.0))
def test_values_are_leaves_in_range(a, b):
    assert isinstance(a, Value) and a.op == "" and a.parents == ()
    assert -3.0 <= a.data <= 3.0 and 0.5 <= b.data <= 2.0


@pytest.mark.parametrize("lo, hi", [(2.0, 1.0), (0.0, math.inf), (math.nan, 1.0)])
def test_values_rejects_a_bad_range(lo, hi):
    with pytest.raises(ValueError, match=r"values: need finite min_value <= max_value"):
        values(lo, hi)


# -- expressions -----------------------------------------------------------------------------------

@given(expressions(max_depth=3, n_vars=3))
def test_an_expression_builds_and_evaluates_the_same_number(e):
    out = e.build(*map(Value, e.inputs))
    assert isinstance(out, Value)
    assert math.isclose(out.data, e.evaluate(*e.inputs), rel_tol=1e-12, abs_tol=1e-12)
    assert 1 <= len(e.nodes) <= 6 and depth(e) <= 3
    assert len(e.inputs) == 3 and all(-3.0 <= x <= 3.0 for x in e.inputs)
    assert {op for op, _, _ in e.nodes} <= set(OPS)
    lines = e.text.splitlines()
    assert len(lines) == len(e.nodes) + 1 and lines[-1].startswith(f"out = n{len(e.nodes) - 1}")
    assert repr(e.inputs) in repr(e)


@given(expressions(ops=("log", "/", "pow", "powc", "relu", "abs", "exp"), max_depth=4))
def test_expressions_stay_inside_the_ops_domains(e):
    out = e.build(*map(Value, e.inputs))
    out.backward()  # neither the forward nor the backward pass leaves a domain
    for node in out.topo():
        if node.parents:
            op = OPS[node.op]
            for (lo, hi), parent in zip(op.domain, node.parents):
                assert lo <= parent.data <= hi  # the interval the registry gives for the input
                # away from the kinks, where finite differences are exact enough
                assert all(abs(parent.data - kink) >= 1e-4 for kink in op.kinks)
        assert math.isfinite(node.grad)


@given(expressions(ops=("tanh", "*"), n_vars=1, max_nodes=3))
def test_expressions_use_only_the_chosen_ops(e):
    assert {op for op, _, _ in e.nodes} <= {"tanh", "*"}
    assert {v.op for v in e.build(Value(e.inputs[0])).topo()} <= {"", "tanh", "*", "+"}  # + joins unused nodes


def test_expressions_reuse_nodes_and_reach_the_requested_depth():
    shared = find(expressions(n_vars=2), lambda e: reused(e) and len(e.nodes) >= 2, settings=FIRST_FOUND)
    out = shared.build(*map(Value, shared.inputs))
    consumers = Counter(id(p) for node in out.topo() for p in node.parents)
    assert max(consumers.values()) >= 2  # a node feeds more than one place in the built graph
    deep = find(expressions(ops=("tanh", "+"), max_depth=4, max_nodes=6), lambda e: depth(e) == 4,
                settings=FIRST_FOUND)
    assert depth(deep) == 4 and len(deep.nodes) >= 4


def unused(e):
    """Drawn nodes, other than the last, that no later node takes as an operand."""
    n, used = len(e.inputs), {i for _, operands, _ in e.nodes for i in operands}
    return [k for k in range(n, n + len(e.nodes) - 1) if k not in used]


def test_every_node_reaches_the_output():
    e = find(expressions(ops=("sigmoid",), max_nodes=4), lambda e: len(e.nodes) == 4 and len(unused(e)) >= 2,
             settings=FIRST_FOUND)
    out = e.build(*map(Value, e.inputs))
    assert sum(v.op == "sigmoid" for v in out.topo()) == 4  # unused nodes are added into the output
    assert out.op == "+" and len(e.text.splitlines()[-1].split(" + ")) == 1 + len(unused(e))


@pytest.mark.parametrize("kwargs, pattern", [
    ({"ops": ("no_such_op", "+")}, r"unknown ops \['no_such_op'\]"),
    ({"ops": ()}, r"no ops given \(choose from \+, -"),
    ({"max_depth": 0}, r"expressions: max_depth must be a whole number >= 1, got 0"),
    ({"min_value": 1.0, "max_value": -1.0}, r"expressions: need finite min_value <= max_value"),
])
def test_expressions_reject_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        expressions(**kwargs)


def test_an_expression_called_with_the_wrong_number_of_arguments():
    e = Expression(nodes=(("tanh", (1,), ()),), inputs=(0.5, 1.0))
    assert e.text == "n0 = tanh(x1)\nout = n0" and e.evaluate(0.5, 1.0) == math.tanh(1.0)
    with pytest.raises(TypeError, match=r"takes 2 arguments, got 1"):
        e.build(Value(1.0))


# -- mlps ------------------------------------------------------------------------------------------

@settings(max_examples=30)
@given(mlps())
def test_a_random_mlp_matches_its_float_twin(net):
    model = net.model
    assert 3 <= len(net.sizes) <= 5 and list(model.sizes) == list(net.sizes)
    assert len(net.x) == net.sizes[0] and len(net.target) == net.sizes[-1]
    for layer, activation in zip(model.layers, net.activations):
        assert activation in ("sigmoid", "tanh")
        assert all(neuron.activation == activation for neuron in layer.neurons)
    params = net.params()
    assert len(params) == sum((a + 1) * b for a, b in zip(net.sizes, net.sizes[1:]))
    loss = net.loss()
    assert math.isclose(loss.data, net.float_loss(params), rel_tol=1e-12, abs_tol=1e-15)
    engine = gradients(loss, model.parameters())
    numeric = numeric_gradient(lambda *p: net.float_loss(p), *params)
    assert engine == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_mlps_draw_every_allowed_shape():
    assert len(find(mlps(), lambda n: len(n.sizes) == 5, settings=FIRST_FOUND).sizes) == 5
    tanh = find(mlps(hidden_layers=(2, 2), activations=("tanh",)), lambda n: True, settings=FIRST_FOUND)
    assert tanh.activations == ("tanh", "tanh", "tanh") and len(tanh.model.layers) == 3
    two = find(mlps(max_outputs=2), lambda n: n.sizes[-1] == 2, settings=FIRST_FOUND)
    assert isinstance(two.model(list(two.x)), list) and two.loss().data == pytest.approx(two.float_loss(two.params()))


@pytest.mark.parametrize("kwargs, pattern", [
    ({"hidden_layers": (3, 1)}, r"mlps: hidden_layers\[1\] must be a whole number >= 3, got 1"),
    ({"max_width": 0}, r"mlps: max_width must be a whole number >= 1, got 0"),
    ({"activations": ("softmax",)}, r"unknown activations \['softmax'\]"),
    ({"activations": ()}, r"no activations given"),
    ({"weight_range": math.inf}, r"weight_range must be a finite number > 0"),
])
def test_mlps_reject_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        mlps(**kwargs)
