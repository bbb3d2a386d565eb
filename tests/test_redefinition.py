"""An op defined again (a notebook cell run again) never mixes two rules: a graph keeps the op it was made with
in every view (backward, gradients, explain, the step-through page, the pictures, a tape traced before), and a
new graph uses the new op everywhere. A rule breaking the registry's contract is the same RuleError in every view."""

import html
import json
import re
from types import SimpleNamespace

import pytest

import microgd.stepper
from microgd import RuleError, Value, define_op, explain, gradients
from microgd.rules import OPS
from microgd.stepper import backprop_page
from microgd.tape import trace
from microgd.viz import draw_graph

X, W = 1.5, 0.5


def old_rule(g, out, x):
    return (g * 2.0 * x,)  # d(x·x)/dx


def new_rule(g, out, x):
    return (g * 3.0 * x * x,)  # deliberately another derivative, so that a mix shows


def define(vjp, symbol):
    """Both definitions come from this one line, as when a notebook cell runs again."""
    return define_op("twice_test", forward=lambda x: x * x, vjp=vjp, symbol=symbol)


def build(op):
    """f = op(x) · w, labelled: x, y = op(x), w, f."""
    x, w = Value(X, label="x"), Value(W, label="w")
    y = op(x)
    y.label = "y"
    f = y * w
    f.label = "f"
    return SimpleNamespace(x=x, y=y, w=w, f=f)


# each graph's rule in every form a view shows it: the op's symbol, dy/dx as text and as a function,
# the closed form of df/dx, and d²y/dx²
EXPECTED = {
    "old": SimpleNamespace(symbol="sq", local="2x", derivative=lambda x: 2.0 * x, closed="w * 2.0 * x", d2y=2.0),
    "new": SimpleNamespace(symbol="sq3", local="3x·x", derivative=lambda x: 3.0 * x * x, closed="w * 3.0 * x * x",
                           d2y=6.0 * X),
}
OTHER = {"old": "new", "new": "old"}


def half_of_the_op(v):
    """What a notebook traces: the op the registry holds under its name when the function runs, halved."""
    return OPS["twice_test"](v) * 0.5


@pytest.fixture
def graphs(forget_defined_ops):
    """The old graph and a tape traced with the old op, then the op defined again, then a new graph and tape."""
    old = build(define(old_rule, "sq"))
    old.tape = trace(half_of_the_op, X)
    define(new_rule, "sq3")
    new = build(OPS["twice_test"])
    new.tape = trace(half_of_the_op, X)
    assert old.y.rule is not new.y.rule and old.y.op == new.y.op == "twice_test"
    return {"old": old, "new": new}


@pytest.mark.parametrize("which", ["old", "new"])
def test_backward_and_gradients_use_the_graphs_own_rule(graphs, which):
    g, want = graphs[which], EXPECTED[which]
    dy_dx = want.derivative(X)
    assert gradients(g.f, [g.x, g.w]) == [dy_dx * W, X * X]
    (dy,) = gradients(g.y, [g.x], create_graph=True)
    assert dy.data == dy_dx and gradients(dy, [g.x]) == [want.d2y]  # the rule run on Values
    g.f.backward()
    assert (g.x.grad, g.w.grad, g.y.grad) == (dy_dx * W, X * X, W)
    assert g.y.local_grads() == (dy_dx,)


@pytest.mark.parametrize("which", ["old", "new"])
def test_explain_writes_and_computes_the_graphs_own_rule(graphs, which):
    g, want, other = graphs[which], EXPECTED[which], EXPECTED[OTHER[which]]
    dy_dx = want.derivative(X)
    d = explain(g.f, wrt=g.x)
    assert d.text() == f"∂f/∂x = ∂f/∂y · ∂y/∂x = w · {want.local} = 0.5000 · {dy_dx:.4f} = {dy_dx * W:.4f}"
    assert other.local not in d.text()
    factor = d.local(g.y, g.x)
    assert (factor.text, factor.value) == (want.local, dy_dx)
    assert d.formula(g.x) == want.closed
    assert d.equations[0].value == dy_dx * W


@pytest.mark.parametrize("which", ["old", "new"])
def test_the_step_through_page_shows_the_graphs_own_rule(graphs, which, monkeypatch):
    g, want, other = graphs[which], EXPECTED[which], EXPECTED[OTHER[which]]
    dy_dx = want.derivative(X)
    monkeypatch.setattr(microgd.stepper, "run_renderer", lambda source, format, timeout: b"<svg></svg>")
    page = backprop_page(g.f)
    data = json.loads(re.search(r"const DATA = (.*);\n", page.html).group(1))
    (step,) = [words for words in (html.unescape(s["words"]) for s in data["steps"]) if ">y</span> has" in words]
    assert f"(local = ∂y/∂x = {want.local} = {dy_dx:.4f})" in step
    assert f"x.grad += {dy_dx:.4f} × {W:.4f} = {dy_dx * W:.4f}" in step
    assert other.local not in step
    nodes = g.f.topo()
    finals = {s["target"]: s["after"] for s in data["steps"]}
    assert finals[f"v{nodes.index(g.x)}"] == dy_dx * W


@pytest.mark.parametrize("which", ["old", "new"])
@pytest.mark.parametrize("after_backward", [False, True])
def test_the_picture_labels_the_graphs_own_op_and_rule(graphs, which, after_backward):
    g, want = graphs[which], EXPECTED[which]
    dy_dx = want.derivative(X)
    if after_backward:
        g.f.backward()
    source = draw_graph(g.f).source
    i = g.f.topo().index(g.y)
    (op_node,) = [line for line in source.splitlines() if re.search(rf"\bid=v{i}op\b", line)]
    (edge,) = [line for line in source.splitlines() if re.search(rf"\bid=e{i}_0\b", line)]
    assert re.search(rf'label="?{want.symbol}"?[ \]]', op_node)
    shown = f"{dy_dx:.4f}<br/>× {W:.4f} = {dy_dx * W:.4f}" if after_backward else f"{dy_dx:.4f}"
    assert re.search(rf'label=<?"?{re.escape(shown)}"?>?[ \]]', edge), edge


@pytest.mark.parametrize("which", ["old", "new"])
def test_a_tape_replays_the_rule_of_the_op_it_was_traced_with(graphs, which):
    """The old tape was traced before the op was defined again: it keeps the old rule."""
    tape, want = graphs[which].tape, EXPECTED[which]
    for x in (X, 2 * X):
        assert tape.value_and_grad(x) == (0.5 * x * x, [0.5 * want.derivative(x)])


# -- a broken rule: the same RuleError, naming the op, from every view ---------------------------------

BROKEN = {
    "two entries for one input": (lambda g, out, x: (g, g), "returned 2 entries for 1 inputs"),
    "a string entry": (lambda g, out, x: ("2x",), "returned a str as entry 1, not a number"),
    "no tuple": (lambda g, out, x: g * 2.0 * x, "not a tuple"),
}


def views(f, monkeypatch):
    """Every view that applies f's rules, each a call that should raise."""
    monkeypatch.setattr(microgd.stepper, "run_renderer", lambda source, format, timeout: b"<svg></svg>")

    def picture_with_grads():
        for v in f.topo():
            v.grad = 1.0  # as after a backward: the edges show × upstream = contribution
        draw_graph(f)

    return {"backward": f.backward, "gradients": lambda: gradients(f, f.topo()),
            "explain": lambda: explain(f), "explain, inline=0": lambda: explain(f, inline=0),
            "page": lambda: backprop_page(f), "picture": lambda: draw_graph(f), "picture, grads": picture_with_grads}


@pytest.mark.parametrize("broken", BROKEN, ids=list(BROKEN))
def test_a_rule_breaking_the_contract_is_the_same_rule_error_in_every_view(broken, forget_defined_ops, monkeypatch):
    vjp, says = BROKEN[broken]
    op = define_op("broken_test", forward=lambda x: x * x, vjp=vjp)
    x = Value(X, label="x")
    f = op(x) * W
    messages = {}
    for view, call in views(f, monkeypatch).items():
        with pytest.raises(RuleError) as raised:
            call()
        messages[view] = str(raised.value)
    assert all("the vjp rule of op 'broken_test'" in m and says in m for m in messages.values()), messages
    assert len(set(messages.values())) == 1, messages
