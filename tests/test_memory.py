"""What a graph node costs in memory, measured as benchmarks/bench_engine.py row (e) measures it (tracemalloc over
a 10,000-step ``y = (y * x + x).tanh()`` chain, 30,000 nodes), and the compact way a node holds its parents that
keeps it small: every view of the parents (``parents``, ``_prev``, ``_parents``, backward) sees them as before."""

import gc
import math
import sys
import tracemalloc

import pytest

from microgd import Value, gradients, no_grad
from microgd.compiled import reading_backward

STEPS = 10_000


def bytes_per_node(V):
    """Row (e): the memory a 10,000-step chain of ``V`` takes, per node (three a step), and its last node."""
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        x = V(0.5)
        y = x
        for _ in range(STEPS):
            y = (y * x + x).tanh()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return used / (3 * STEPS), y


def test_a_node_is_its_value_object_its_number_and_its_stamp_and_nothing_else():
    """No tuple of parents, no int: a node of the chain is the Value (its slots), the float of its data and the
    float of its creation stamp. A per-node object added back (a tuple of parents is 48-56 bytes) fails this."""
    per_node, y = bytes_per_node(Value)
    assert per_node <= sys.getsizeof(y) + sys.getsizeof(y.data) + sys.getsizeof(y._stamp) + 1.0
    assert per_node <= 140.0  # 136 bytes on CPython 3.10 to 3.13 (a Value of 7 slots, 88 bytes, and two floats)


def test_a_node_takes_at_most_a_fifth_of_what_micrograds_takes(monkeypatch):
    micrograd = pytest.importorskip("micrograd.engine")

    def tanh(self):  # micrograd 0.1.0 has none: the benchmark's, in micrograd's own closure style
        t = math.tanh(self.data)
        out = micrograd.Value(t, (self,), "tanh")

        def _backward():
            self.grad += (1 - t * t) * out.grad

        out._backward = _backward
        return out

    monkeypatch.setattr(micrograd.Value, "tanh", tanh, raising=False)
    ours, _ = bytes_per_node(Value)
    theirs, _ = bytes_per_node(micrograd.Value)
    assert ours <= 0.20 * theirs


def test_the_parents_read_back_in_order_for_every_number_of_them():
    a, b, c = Value(1.0, label="a"), Value(2.0, label="b"), Value(3.0, label="c")
    one, two, same = a.tanh(), a * b, a + a
    three = Value.weighted_sum([a], [b], c)
    made = Value(6.0, (a, b, c), "f")  # micrograd's way, three children
    made_two, made_one = Value(3.0, [a, b], "+"), Value(0.5, (a,), "tanh")
    assert a.parents == () and a._prev == set() and a.op == "" and a.rule is None
    assert one.parents == (a,) and two.parents == (a, b) and same.parents == (a, a)
    assert three.parents == (a, b, c) and made.parents == (a, b, c)
    assert made_two.parents == (a, b) and made_one.parents == (a,)
    assert (two._op, three._op, made._op) == ("*", "weighted_sum", "f")
    assert same._prev == {a} and made._prev == {a, b, c}
    for node in (one, two, same, three, made, made_two, made_one):
        assert node._parents == node.parents
        node.label = "n"  # a label never touches the parents
        assert node.label == "n" and node.parents == node._parents


def test_a_node_made_without_recording_or_from_no_children_is_a_leaf():
    a = Value(2.0)
    with no_grad():
        y = a * 3 + a.tanh()
        z = Value(1.0, (a,), "tanh")
    for leaf in (y, z, Value(1.0, (), "+")):
        assert leaf.parents == () and leaf.rule is None and leaf.op == ""
    y.backward()
    assert y.grad == 1.0 and a.grad == 0.0


def test_backward_sees_every_shape_of_node():
    """Unary, binary (a parent twice), weighted sums, constants and a micrograd-style closure in one graph: the
    installed backward and the engine's own agree with the gradients read off the sweep."""
    x, w = Value(0.3), Value(-1.2)

    def build():
        s = Value.weighted_sum([w, 0.5], [x, x * x], 0.1)
        t = (s * s).tanh() + x ** 2 - 3 * w
        out = Value(2 * t.data, (t,), "double")
        out._backward = lambda: setattr(t, "grad", t.grad + 2 * out.grad)
        return out

    expected = gradients(build(), [x, w])
    for backward in (Value.backward, reading_backward):
        x.grad = w.grad = 0.0
        backward(build())
        assert [x.grad, w.grad] == expected
