"""Ops added micrograd's way, ``out = Value(data, children, 'name')`` then ``out._backward = closure``, as the
lecture and its exercises teach them: they run unchanged on microgd's Value, through the engine's one sweep
(backward, gradients, grad, the page's steps, the pictures' numbers), and give micrograd's own numbers (the
same extensions patched onto micrograd's Value). Views that need a formula refuse them, naming the op."""

import math
import re
import struct

import pytest
from micrograd.engine import Value as MicrogradValue

from microgd import DomainError, RuleError, Value, explain, grad, gradients, no_grad, trace
from microgd.compiled import reading_backward
from microgd.engine import Closure, backward_steps, local_step
from microgd.viz import draw_dot, draw_graph, find_renderer


def lecture_ops(V):
    """The lecture's and its exercises' extensions, written for the class ``V`` (micrograd's Value or ours)."""

    def __add__(self, other):
        other = other if isinstance(other, V) else V(other)
        out = V(self.data + other.data, (self, other), '+')

        def _backward():
            self.grad += 1.0 * out.grad
            other.grad += 1.0 * out.grad
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, V) else V(other)
        out = V(self.data * other.data, (self, other), '*')

        def _backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def __pow__(self, other):
        assert isinstance(other, (int, float)), "only supporting int/float powers for now"
        out = V(self.data**other, (self,), f'**{other}')

        def _backward():
            self.grad += other * (self.data ** (other - 1)) * out.grad
        out._backward = _backward
        return out

    def exp(self):
        x = self.data
        out = V(math.exp(x), (self,), 'exp')

        def _backward():
            self.grad += out.data * out.grad
        out._backward = _backward
        return out

    def log(self):
        out = V(math.log(self.data), (self,), 'log')

        def _backward():
            self.grad += (1 / self.data) * out.grad
        out._backward = _backward
        return out

    def sin(self):
        out = V(math.sin(self.data), (self,), 'sin')

        def _backward():
            self.grad += math.cos(self.data) * out.grad
        out._backward = _backward
        return out

    def tanh(self):
        x = self.data
        t = (math.exp(2 * x) - 1) / (math.exp(2 * x) + 1)
        out = V(t, (self,), 'tanh')

        def _backward():
            self.grad += (1 - t**2) * out.grad
        out._backward = _backward
        return out

    return {
        "__add__": __add__, "__mul__": __mul__, "__pow__": __pow__, "exp": exp, "log": log, "sin": sin,
        "tanh": tanh,
        "__radd__": lambda self, other: self + other,
        "__rmul__": lambda self, other: self * other,
        "__neg__": lambda self: self * -1,
        "__sub__": lambda self, other: self + (-other),
        "__rsub__": lambda self, other: other + (-self),
        "__truediv__": lambda self, other: self * other**-1,
        "__rtruediv__": lambda self, other: other * self**-1,
    }


ALL = tuple(lecture_ops(Value))
UNARY = ("exp", "log", "sin", "tanh", "__pow__", "__truediv__", "__rtruediv__")


@pytest.fixture
def lecture(monkeypatch):
    """``lecture(V, names)`` patches the lecture's extensions onto ``V`` for this test only (a Value.sin of the
    package comes back afterwards, or none)."""
    def install(V, names=ALL):
        ops = lecture_ops(V)
        for name in names:
            monkeypatch.setattr(V, name, ops[name], raising=False)
    return install


@pytest.fixture
def both(lecture):
    """The lecture's extensions on micrograd's Value and on ours."""
    lecture(MicrogradValue)
    lecture(Value)
    return MicrogradValue, Value


def bits(x):
    return struct.pack("<d", float(x))


def neuron(V):
    """The lecture's neuron, tanh by closure (its numbers: x1.grad -1.5, w1.grad 1.0, ...)."""
    x1, x2, w1, w2 = V(2.0), V(0.0), V(-3.0), V(1.0)
    b = V(6.8813735870195432)
    x1w1, x2w2 = x1 * w1, x2 * w2
    x1w1x2w2 = x1w1 + x2w2
    n = x1w1x2w2 + b
    o = n.tanh()
    return o, [x1, x2, w1, w2, b], [n, x1w1x2w2, x1w1, x2w2]


def neuron_by_exp(V):
    """The lecture's neuron with tanh written out, (e - 1) / (e + 1), e = exp(2n): division by ``** -1``."""
    x1, x2, w1, w2 = V(2.0), V(0.0), V(-3.0), V(1.0)
    b = V(6.8813735870195432)
    n = x1 * w1 + x2 * w2 + b
    e = (2 * n).exp()
    o = (e - 1) / (e + 1)
    return o, [x1, x2, w1, w2, b]


def softmax(logits):
    """The exercise's softmax: exp, a sum, and a division."""
    counts = [logit.exp() for logit in logits]
    denominator = sum(counts)
    return [c / denominator for c in counts]


def softmax_nll(V):
    """The exercise: the negative log likelihood of class 3 under the softmax of four logits."""
    logits = [V(0.0), V(3.0), V(-2.0), V(1.0)]
    loss = -softmax(logits)[3].log()
    return loss, logits


def sin_chain(V):
    x, y = V(0.5), V(-1.25)
    z = (x.sin() * y).sin() * x.exp() + (y ** 3).tanh()
    return z, [x, y]


GRAPHS = [neuron_by_exp, softmax_nll, sin_chain, lambda V: neuron(V)[:2]]
TWO_USES = [neuron_by_exp, sin_chain, lambda V: neuron(V)[:2]]
"""Graphs where no value is used more than twice: micrograd sums a gradient in the order of its topological
sort, which follows a set's order (``_prev``), so with three uses or more its last bit may change from run to
run; a sum of two is the same either way."""


# -- what the lecture writes runs unchanged ------------------------------------------------------------

def test_a_lecture_op_records_its_node_and_its_closure_is_its_rule(lecture):
    lecture(Value, ["sin"])
    x = Value(0.5, label="x")
    y = x.sin()
    assert y.op == y._op == "sin" and y.parents == (x,) and y._prev == {x}
    assert isinstance(y.rule, Closure) and y.rule.name == "sin" and y._backward is y.rule.closure
    y.backward()
    assert x.grad == math.cos(0.5) and y.grad == 1.0
    assert y.local_grads() == (math.cos(0.5),) and y.contributions(2.0) == (2.0 * math.cos(0.5),)
    assert gradients(y, [x]) == [math.cos(0.5)]
    assert grad(lambda v: v.sin())(0.5) == math.cos(0.5)


def uses(out):
    counted = {}
    for v in out.topo():
        for p in v.parents:
            counted[p] = counted.get(p, 0) + 1
    return max(counted.values())


@pytest.mark.parametrize("build", TWO_USES)
def test_the_lectures_ops_give_micrograds_numbers_bit_for_bit(both, build):
    (theirs, their_leaves), (ours, our_leaves) = build(MicrogradValue), build(Value)
    assert uses(ours) <= 2
    theirs.backward()
    ours.backward()
    assert bits(ours.data) == bits(theirs.data)
    assert [bits(v.grad) for v in our_leaves] == [bits(v.grad) for v in their_leaves]
    assert [bits(g) for g in gradients(*build(Value))] == [bits(v.grad) for v in our_leaves]


def test_grad_of_a_function_of_lecture_ops_gives_micrograds_numbers(both):
    def f(x, y):
        return (x.sin() * y).sin() * x.exp() + (y ** 3).tanh()
    theirs, their_leaves = sin_chain(MicrogradValue)
    theirs.backward()
    found = grad(f, argnums=(0, 1))(0.5, -1.25)
    assert [bits(g) for g in found] == [bits(v.grad) for v in their_leaves]
    assert grad(f, argnums=1)(0.5, -1.25) == found[1]  # x comes to f as a Value too, not differentiated


def test_the_exercises_softmax_gives_the_exercises_and_micrograds_numbers(both):
    """The exercise's softmax and negative log likelihood (its denominator is used four times, so micrograd's
    own sum order varies from run to run in the last bits)."""
    loss, logits = softmax_nll(Value)
    loss.backward()
    theirs, their_logits = softmax_nll(MicrogradValue)
    theirs.backward()
    assert loss.data == pytest.approx(2.1755153626167147, abs=1e-12) and bits(loss.data) == bits(theirs.data)
    answers = [0.041772570515350445, 0.8390245074625319, 0.005653302662216329, -0.8864503806400986]
    assert [v.grad for v in logits] == pytest.approx(answers, abs=1e-12)
    assert [v.grad for v in logits] == pytest.approx([v.grad for v in their_logits], rel=1e-15, abs=0.0)


def test_closures_written_as_the_registrys_rules_give_its_bits(monkeypatch):
    """exp, log and tanh by closures doing the registry's arithmetic: the same floats, bit for bit."""
    def unary(forward, local):
        def op(self):
            out = Value(forward(self.data), (self,), forward.__name__)

            def _backward():
                self.grad += local(out.grad, out.data, self.data)
            out._backward = _backward
            return out
        return op

    def gradients_of(build):
        out, leaves = build(Value)[:2]
        out.backward()
        return [bits(v.grad) for v in leaves]

    registry = [gradients_of(build) for build in (neuron, softmax_nll)]
    monkeypatch.setattr(Value, "exp", unary(math.exp, lambda g, out, x: g * out))
    monkeypatch.setattr(Value, "log", unary(math.log, lambda g, out, x: g / x))
    monkeypatch.setattr(Value, "tanh", unary(math.tanh, lambda g, out, x: g * (1.0 - out * out)))
    assert isinstance(softmax_nll(Value)[0].parents[0].rule, Closure)
    assert [gradients_of(build) for build in (neuron, softmax_nll)] == registry


def test_the_lectures_backward_by_hand_node_by_node(both):
    """The lecture's cells: o.grad = 1, then o._backward(), n._backward(), ... each node's closure itself."""
    walks = []
    for V in both:
        o, leaves, (n, x1w1x2w2, x1w1, x2w2) = neuron(V)
        o.grad = 1.0
        for node in (o, n, x1w1x2w2, x1w1, x2w2):
            node._backward()
        for leaf in leaves:
            leaf._backward()  # a leaf's step does nothing, as micrograd's lambda: None
        walks.append([bits(v.grad) for v in [*leaves, n, x1w1x2w2, x1w1, x2w2]])
    assert walks[0] == walks[1]
    o, leaves, _ = neuron(Value)
    o.backward()
    assert [bits(v.grad) for v in leaves] == walks[1][:5]
    assert [v.grad for v in leaves] == pytest.approx([-1.5, 0.5, 1.0, 0.0, 0.5], abs=1e-9)


def test_mixing_closure_nodes_and_registry_nodes_by_hand(lecture):
    lecture(Value, ["tanh"])
    x, w = Value(0.5), Value(-2.0)
    o = (x * w).tanh()
    o.grad = 1.0
    o._backward()  # the user's closure
    o.parents[0]._backward()  # microgd's step for '*'
    expected = 1 - math.tanh(-1.0) ** 2
    assert (x.grad, w.grad) == (expected * -2.0, expected * 0.5)


def test_the_equals_bug_of_the_lecture_shows_as_in_micrograd():
    """The lecture's bug: a closure that sets ``self.grad = ...`` instead of adding. With ``b = a + a`` the second
    assignment overwrites the first: 1.0 where 2.0 is right, as in micrograd."""
    def buggy_add(V):
        def __add__(self, other):
            other = other if isinstance(other, V) else V(other)
            out = V(self.data + other.data, (self, other), '+')

            def _backward():
                self.grad = 1.0 * out.grad
                other.grad = 1.0 * out.grad
            out._backward = _backward
            return out
        return __add__

    found = []
    for V in (MicrogradValue, Value):
        a = V(3.0)
        b = buggy_add(V)(a, a)
        b.backward()
        found.append(a.grad)
    assert found == [1.0, 1.0]


def test_a_closure_that_assigns_is_right_when_each_input_appears_once_in_its_node():
    """microgd runs each closure with its inputs' grads at 0.0 and sums the contributions in the sweep, so a
    closure that assigns (``=``) loses nothing across nodes: the lecture's second example (``a`` used by ``d``
    and ``e``) comes out right here, where micrograd's in-place accumulation lets the later node overwrite."""
    def node(V, data, parents, local):
        out = V(data, parents, 'op')

        def _backward():
            for p, d in zip(parents, local):
                p.grad = d * out.grad
        out._backward = _backward
        return out

    a, b = Value(-2.0), Value(3.0)
    d = node(Value, a.data * b.data, (a, b), (b.data, a.data))
    e = node(Value, a.data + b.data, (a, b), (1.0, 1.0))
    f = node(Value, d.data * e.data, (d, e), (e.data, d.data))
    f.backward()
    assert (a.grad, b.grad) == (-3.0, -8.0)


# -- the rule's application: one call, inside local_step -----------------------------------------------

def test_local_step_runs_the_closure_on_zeroed_grads_and_puts_every_grad_back(lecture):
    lecture(Value, ["__mul__"])
    x, y = Value(2.0), Value(5.0)
    z = x * y
    x.grad, y.grad, z.grad = 7.0, -1.0, 0.25
    assert local_step(z, 3.0) == (15.0, 6.0)
    assert (x.grad, y.grad, z.grad) == (7.0, -1.0, 0.25)
    assert list(backward_steps(z)) == [(z, 1.0, (5.0, 2.0))]
    assert (x.grad, y.grad, z.grad) == (7.0, -1.0, 0.25)


def test_an_input_given_twice_gets_its_total_at_its_first_place(lecture):
    lecture(Value, ["__mul__", "__add__"])
    x = Value(3.0)
    square = x * x
    assert isinstance(square.rule, Closure) and square.parents == (x, x)
    assert square.local_grads() == (6.0, 0.0)
    (square + x).backward()
    assert x.grad == 7.0


def test_a_closure_wins_over_the_registry_op_of_its_name():
    x = Value(0.5)
    y = Value(math.tanh(0.5), (x,), "tanh")  # the registry's tanh, until a closure is assigned
    assert y.rule is not None and not isinstance(y.rule, Closure) and y.local_grads() == (1 - math.tanh(0.5) ** 2,)

    def _backward():
        x.grad += 2.0 * y.grad  # what the user wrote (a wrong derivative) is what runs
    y._backward = _backward
    assert isinstance(y.rule, Closure) and y.op == "tanh" and y._backward is _backward
    y.backward()
    assert x.grad == 2.0


def test_the_installed_backward_equals_the_engines_bit_for_bit_on_closure_graphs(both):
    for build in GRAPHS:
        out = build(Value)[0]
        nodes = out.topo()
        results = []
        for backward in (Value.backward, reading_backward):
            for v in nodes:
                v.grad = 0.125 if not v.parents else 123.0
            backward(out)
            results.append([bits(v.grad) for v in nodes])
        assert results[0] == results[1]


def test_a_closure_that_raises_is_a_rule_error_and_every_grad_is_put_back():
    x = Value(0.5)
    y = Value(1.0, (x,), "sin")

    def _backward():
        x.grad += 1.0
        raise KeyError("oops")
    y._backward = _backward
    x.grad = 4.0
    for backward in (Value.backward, reading_backward):
        with pytest.raises(RuleError, match=r"op 'sin' failed on float inputs: KeyError: 'oops'") as failed:
            backward(y)
        assert isinstance(failed.value.__cause__, KeyError)
        assert x.grad == 4.0
    with pytest.raises(RuleError, match="'sin'"):
        list(backward_steps(y))
    assert x.grad == 4.0


def test_a_closures_contributions_are_checked_as_any_rules():
    x = Value(0.5)
    y = Value(1.0, (x,), "weird")
    y._backward = lambda: setattr(x, "grad", math.inf)
    for backward in (Value.backward, reading_backward):
        with pytest.raises(DomainError, match=r"backward of weird\(0.5\): its contribution to input 1 is inf"):
            backward(y)
    y._backward = lambda: setattr(x, "grad", "0.5")
    with pytest.raises(RuleError, match="op 'weird' returned a str as entry 1"):
        y.backward()
    y._backward = lambda: setattr(x, "grad", x.grad + 1 / (x.data - 0.5))
    with pytest.raises(DomainError, match=r"backward of weird\(0.5\): the derivative is not a finite number"):
        y.backward()


# -- nodes without a derivative, and views that need a formula ---------------------------------------

@pytest.mark.parametrize("name, children", [("ReLU", 1), ("", 1), ("**2", 1), ("tanh", 2), ("+", 3)])
def test_a_node_without_a_derivative_is_an_error_in_backward_never_a_zero(name, children):
    x = Value(0.5)
    y = Value(1.0, (x,) * children, name)
    assert y.op == y._op == name and y.parents == (x,) * children
    expected = f"op {re.escape(repr(name))} has no derivative: .*_backward.*microgd.define_op"
    for run in (Value.backward, reading_backward, lambda v: list(backward_steps(v)), lambda v: gradients(v, [x]),
                lambda v: v._backward()):
        with pytest.raises(RuleError, match=expected):
            run(y)
    assert x.grad == 0.0
    y._backward = lambda: setattr(x, "grad", x.grad + 3.0 * y.grad)  # micrograd's way mends it
    y.backward()
    assert x.grad == 3.0 * children if children == 1 else x.grad == 3.0


def test_value_with_children_still_refuses_what_is_not_a_value():
    with pytest.raises(RuleError, match=r"_children must be Values \(wrap a number"):
        Value(2.0, (Value(1.0), 2.0), "+")
    with pytest.raises(TypeError, match="the op's name must be a string"):
        Value(2.0, (Value(1.0),), None)


def test_assigning_backward_to_what_cannot_take_it():
    x = Value(2.0)
    with pytest.raises(TypeError, match="_backward takes a function of no arguments"):
        (x * 3)._backward = 1.0
    constant = next(p for p in (x * 3).parents if p.is_constant)
    with pytest.raises(AttributeError, match="constant"):
        constant._backward = lambda: None
    x._backward = lambda: None  # micrograd gives every leaf one: kept, and never needed
    assert x.rule is None and x.op == "" and (x * x).backward() is None and x.grad == 4.0


def test_inside_no_grad_a_lecture_op_records_nothing(lecture):
    lecture(Value, ["sin"])
    x = Value(0.5)
    with no_grad():
        y = x.sin()
    assert y.parents == () and y.rule is None and y.data == math.sin(0.5)


def test_formulas_and_second_derivatives_refuse_a_closure_naming_the_op(lecture):
    lecture(Value, ["sin"])
    x = Value(0.5, label="x")
    y = (x.sin() * x).sin()
    formulas = r"op 'sin' is a micrograd-style _backward closure: it has numbers, not a formula, so formulas " \
               r"\(explain, the tape\) cannot use it; define it with microgd.define_op\(...\)"
    with pytest.raises(RuleError, match=formulas):
        explain(y)
    y.label = "y"
    x.sin().label = "s"
    with pytest.raises(RuleError, match=formulas):
        explain(y)
    with pytest.raises(RuleError, match=formulas):
        trace(lambda v: v.sin() * v, 0.5)
    second = r"op 'sin' is a micrograd-style _backward closure: .* so second derivatives \(gradients\(" \
             r"create_graph=True\), grad of grad\) cannot use it; define it with microgd.define_op"
    with pytest.raises(RuleError, match=second):
        gradients(y, [x], create_graph=True)
    with pytest.raises(RuleError, match=second):
        grad(grad(lambda v: v.sin()))(0.5)
    with pytest.raises(RuleError, match=second):
        grad(lambda v: v.sin())(Value(0.5))
    with pytest.raises(RuleError, match="'sin'.*numbers other than the graph's own floats"):
        local_step(y, 1.0, value=lambda v: v.data + 1.0)
    with pytest.raises(RuleError, match="no vjp formula"):
        y.rule.vjp(1.0, y.data, 0.5)


# -- the pictures and the page -------------------------------------------------------------------------

def test_pictures_draw_a_closure_node_with_its_op_name(lecture):
    lecture(Value, ["sin", "__pow__"])
    x = Value(0.5, label="x")
    y = x.sin() ** 2
    z = Value(y.data, (y,), "")
    z._backward = lambda: setattr(y, "grad", y.grad + z.grad)
    z.label = "z"
    assert "v1op [label=sin]" in draw_dot(z).source and 'label="**2"' in draw_dot(z).source
    assert "label=_backward" in draw_dot(z).source
    source = draw_graph(z).source
    assert "v1op [label=sin" in source and f"v0 -> v1op [label={math.cos(0.5):.4f}" in source
    z.backward()
    source = draw_graph(z).source
    upstream = 2 * math.sin(0.5)
    assert f"{math.cos(0.5):.4f}<br/>× {upstream:.4f} = {math.cos(0.5) * upstream:.4f}" in source
    assert "{ z | data" in draw_dot(z).source


def test_the_pictures_of_micrograd_style_nodes_made_before_their_closure():
    """The lecture draws graphs before writing any _backward: draw_dot draws them; draw_graph, which shows
    each edge's derivative, says which op has none."""
    x = Value(0.5, label="x")
    y = Value(0.25, (x,), "ReLU")
    assert "label=ReLU" in draw_dot(y).source
    with pytest.raises(RuleError, match="op 'ReLU' has no derivative"):
        draw_graph(y)


def test_the_pages_steps_are_backwards_for_closure_nodes(both):
    out, leaves = sin_chain(Value)
    found = {out: 1.0}
    for node, g, contributions in backward_steps(out):
        assert g == found[node] and contributions == node.contributions(g)
        for x, c in zip(node.parents, contributions):
            found[x] = found.get(x, 0.0) + c
    out.backward()
    assert [found[v] for v in leaves] == [v.grad for v in leaves]


@pytest.mark.skipif(find_renderer() is None, reason="no Graphviz renderer")
def test_the_page_steps_through_a_closure_graph_with_numbers(lecture):
    from microgd.stepper import backprop_page

    lecture(Value, ["sin"])
    x = Value(0.5, label="x")
    y = x.sin() * x
    y.label = "y"
    page = backprop_page(y).html
    local = f"{math.cos(0.5):.4f}"
    assert f"(local = ∂v1/∂x = {local})" in page  # no formula for the closure's edge: its number
    assert "(local = ∂y/∂v1 = x = 0.5000)" in page  # the registry's '*' still shows its formula
    assert "op 'sin'" not in page


def test_a_closure_named_like_a_registry_op_is_not_taken_for_it():
    """binary_cross_entropy computes from the logit of microgd's own sigmoid; a closure named 'sigmoid' is the
    user's op, used as written."""
    from microgd.losses import binary_cross_entropy

    s = Value(0.5)
    p = Value(1 / (1 + math.exp(-0.5)), (s,), "sigmoid")
    p._backward = lambda: setattr(s, "grad", s.grad + 10.0 * p.grad)  # deliberately not sigmoid's derivative
    loss = binary_cross_entropy(p, 1.0)
    loss.backward()
    assert s.grad == pytest.approx(10.0 * -1 / p.data, rel=1e-12)
