"""micrograd's users meet us first: micrograd's own test programs and the lecture's idioms run unchanged on
microgd's Value (only the import changed) and give micrograd's numbers."""

import math

import pytest
from micrograd.engine import Value as MicrogradValue

from microgd import Value


def sanity_check(Value):
    """micrograd's test/test_engine.py::test_sanity_check, its micrograd half."""
    x = Value(-4.0)
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    return y.data, x.grad


def more_ops(Value):
    """micrograd's test/test_engine.py::test_more_ops, its micrograd half."""
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    g.backward()
    return g.data, a.grad, b.grad


def test_micrograds_own_tests_give_micrograds_numbers():
    assert sanity_check(Value) == sanity_check(MicrogradValue) == (-20.0, 46.0)  # y and dy/dx by hand
    ours, theirs = more_ops(Value), more_ops(MicrogradValue)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=0.0)
    assert ours == pytest.approx((24.70408163265306, 138.83381924198252, 645.5772594752186), rel=1e-12)


def lecture_neuron(Value):
    """The lecture's neuron, every intermediate labelled as in the lecture."""
    x1 = Value(2.0, label="x1")
    x2 = Value(0.0, label="x2")
    w1 = Value(-3.0, label="w1")
    w2 = Value(1.0, label="w2")
    b = Value(6.8813735870195432, label="b")
    x1w1 = x1 * w1; x1w1.label = "x1*w1"  # noqa: E702
    x2w2 = x2 * w2; x2w2.label = "x2*w2"  # noqa: E702
    x1w1x2w2 = x1w1 + x2w2; x1w1x2w2.label = "x1*w1 + x2*w2"  # noqa: E702
    n = x1w1x2w2 + b; n.label = "n"  # noqa: E702
    e = (2 * n).exp(); e.label = "e"  # noqa: E702
    o = (e - 1) / (e + 1); o.label = "o"  # noqa: E702
    return o, (x1, x2, w1, w2, b)


def test_the_lectures_manual_backprop_cells_and_its_topological_sort():
    o, (x1, x2, w1, w2, b) = lecture_neuron(Value)
    topo, visited = [], set()

    def build_topo(v):  # the lecture's own code, using _prev
        if v not in visited:
            visited.add(v)
            for child in v._prev:
                build_topo(child)
            topo.append(v)

    build_topo(o)
    o.grad = 1.0
    for node in reversed(topo):
        node._backward()  # one node's local step at a time, as in the lecture's cells
    by_hand = [x1.grad, x2.grad, w1.grad, w2.grad, b.grad]
    assert by_hand == pytest.approx([-1.5, 0.5, 1.0, 0.0, 0.5], abs=1e-9)  # the lecture's numbers
    o2, leaves = lecture_neuron(Value)
    o2.backward()
    assert [leaf.grad for leaf in leaves] == by_hand
    assert o.data == pytest.approx(math.sqrt(0.5), abs=1e-9)


def test_what_code_reading_the_graph_sees_is_micrograds():
    v = Value(2.0)
    y = v * 3
    assert repr(v) == "Value(data=2.0, grad=0.0)" and v._prev == set() and v._op == ""
    assert y._op == "*" and v in y._prev
    assert {p._op for p in y._prev} == {""}  # the number 3 is a leaf too: '' as micrograd's
    assert (v**2)._op == "powc" and (v**2).op == "powc"  # the registry's name (micrograd writes '**2')
