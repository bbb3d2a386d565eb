"""Nothing silently wrong at the edges: array forms keep float64, a constant base is never differentiated,
and an object that is neither a number nor a microgd Value is refused where it is given, naming the op."""

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgd import DomainError, Value, explain, grad, gradients, rules
from microgd.drawing import op_label
from microgd.rules import OPS, Piece, render
from microgd.tape import trace
from microgd.testing import expressions

# -- array forms: float64 in, float64 out, the forward's numbers -------------------------------------------

ARRAY_OPS = [op for op in OPS.values() if op.array is not None and op.defined_at.startswith(rules.__file__)]


def columns(op, size=4):
    """``size`` points of ``op``'s domain (kept within [-30, 30]), as one list per input."""
    return st.tuples(*[st.lists(st.floats(max(lo, -30.0), min(hi, 30.0)), min_size=size, max_size=size)
                       for lo, hi in op.domain])


@pytest.mark.parametrize("module", ["numpy", pytest.param("torch", marks=pytest.mark.requires_torch)])
@pytest.mark.parametrize("op", ARRAY_OPS, ids=[op.name for op in ARRAY_OPS])
def test_every_array_form_gives_float64_equal_to_the_forward(op, module):
    """Also with one input a Python number (a constant, or a captured Value, in the tape's batch)."""
    xp = pytest.importorskip(module)

    @given(columns(op))
    def check(inputs):
        for number in [None, *range(len(inputs))] if len(inputs) > 1 else [None]:
            fixed = [[c[0]] * len(c) if i == number else c for i, c in enumerate(inputs)]
            args = [c[0] if i == number else xp.asarray(c, dtype=xp.float64) for i, c in enumerate(fixed)]
            got = op.array(xp, *args)
            assert got.dtype == xp.float64, f"{op.name} on {module} gives {got.dtype}"
            for point, value in zip(zip(*fixed), got.tolist()):
                assert math.isclose(value, op.forward(*point), rel_tol=1e-14, abs_tol=1e-300), (op.name, point)

    check()


@pytest.mark.requires_torch
def test_xlogy_on_torch_float64_loses_nothing():
    import torch
    a = torch.tensor([0.0, 0.3, 1.7], dtype=torch.float64)
    got = rules.xlogy.array(torch, a, 3.0)
    assert got.dtype == torch.float64 and got.tolist() == [rules.xlogy(x, 3.0) for x in a.tolist()]
    assert rules.step.array(torch, a).dtype == torch.float64


@pytest.mark.requires_torch
def test_a_batched_tape_with_python_numbers_among_the_arrays_stays_float64_on_torch():
    import torch
    w = Value(0.7)
    tape = trace(lambda x: rules.xlogy(x, 3.0) + rules.logsumexp(x, 1.5) + rules.xlogy(w, x) + rules.step(x - 1.0),
                 0.5)
    xs = [0.3, 1.2, 2.5]
    got = tape.batch(torch.tensor(xs, dtype=torch.float64))
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx([tape(x) for x in xs], rel=1e-15)


# -- a constant base: c ** x -----------------------------------------------------------------------------------

def test_zero_to_a_value_has_the_gradient_pytorch_gives(torch_or_skip):
    x = Value(0.5)
    y = 0.0 ** x
    y.backward()
    assert (y.op, y.data, x.grad) == ("cpow", 0.0, 0.0)
    assert grad(lambda v: 0.0 ** v)(0.5) == 0.0
    assert trace(lambda v: 0.0 ** v, 0.5).value_and_grad(0.5) == (0.0, [0.0])
    torch = torch_or_skip()
    t = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    (0.0 ** t).backward()
    assert t.grad.item() == x.grad


def test_a_constant_base_is_never_differentiated_however_pow_is_reached():
    x = Value(0.5)
    constant = (x * 0.0).parents[1]  # the 0.0 of x * 0.0: a constant leaf
    assert constant.is_constant
    for make in (lambda: 0.0 ** x, lambda: constant ** x, lambda: rules.power(0.0, x), lambda: OPS["pow"](0, x)):
        y = make()
        assert y.op == "cpow" and gradients(y, [x]) == [0.0]
    assert rules.power(Value(-1.0), 2.0).op == "powc"  # a constant exponent: pow's log of the base is never taken
    assert grad(lambda v: rules.power(v, 2.0))(-1.0) == -2.0
    with pytest.raises(TypeError, match=r"cpow: input 1 is a constant of the op and must be a number, got a Value"):
        rules.cpow(x, x)


@given(st.floats(0.5, 4.0), st.floats(-2.0, 2.0))
def test_a_constant_base_to_a_value_power_to_second_order(c, x):
    assert math.isclose(grad(lambda v: c ** v)(x), c**x * math.log(c), rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(grad(grad(lambda v: c ** v))(x), c**x * math.log(c) ** 2, rel_tol=1e-12, abs_tol=1e-15)


def test_where_c_to_the_x_has_no_derivative_it_says_so():
    with pytest.raises(DomainError, match=r"backward of cpow\(0.0, 0.0\)"):
        (0.0 ** Value(0.0)).backward()  # 1 at 0, 0 beyond: no derivative
    with pytest.raises(DomainError, match=r"backward of cpow\(-2.0, 3.0\)"):
        ((-2.0) ** Value(3.0)).backward()  # a negative base: no real power near a whole exponent


def test_every_view_shows_a_constant_base(torch_or_skip):
    x = Value(0.5, label="x")
    y = 2.0 ** x
    y.label = "y"
    assert op_label(y) == f"{rules.cpow.symbol} 2"
    assert explain(y, wrt=x).formula(x) == "xlogy(2.0 ** x, 2.0)"
    pieces = [Piece("2.0", is_number=True), Piece("x")]
    assert [render(template, pieces) for template in (y.rule.formula, y.rule.text)] == ["2.0 ** x", "2.0^x"]
    tape = trace(lambda v: 2.0 ** v, 0.5)
    assert tape.value_and_grad(0.5) == (y.data, [gradients(y, [x])[0]])
    for module in (lambda: pytest.importorskip("numpy"), torch_or_skip):
        xp = module()
        assert tape.batch(xp.asarray([0.5, -1.5], dtype=xp.float64)).tolist() == [y.data, 2.0**-1.5]


def test_random_expressions_draw_a_constant_base_inside_its_domain():
    @given(expressions(ops=("cpow", "*"), max_depth=3))
    def check(e):
        out = e.build(*map(Value, e.inputs))
        out.backward()
        for node in out.topo():
            if node.op == "cpow":
                (lo, hi), (c, p) = rules.cpow.domain[0], node.parents
                assert c.is_constant and lo <= c.data <= hi and -2.0 <= p.data <= 2.0

    check()


# -- foreign objects: refused at the call, naming the op -------------------------------------------------------

class Foreign:
    """An object with a ``data`` but none of Python's number methods."""

    data = 2.0

    def __repr__(self):
        return "Foreign()"


def foreign_calls(other):
    x = Value(0.5)
    return [
        ("+", lambda: x + other), ("+", lambda: Value.__radd__(x, other)), ("-", lambda: x - other),
        ("-", lambda: Value.__rsub__(x, other)), ("*", lambda: x * other), ("*", lambda: Value.__rmul__(x, other)),
        ("/", lambda: x / other), ("/", lambda: Value.__rtruediv__(x, other)), ("powc", lambda: x ** other),
        ("cpow", lambda: Value.__rpow__(x, other)),
        ("weighted_sum", lambda: Value.weighted_sum([x], [x], other)),
        ("weighted_sum", lambda: Value.weighted_sum([other], [x], 1.0)),
        ("weighted_sum", lambda: Value.weighted_sum([x, other], [x, x], x)),
        ("xlogy", lambda: rules.xlogy(x, other)), ("logsumexp", lambda: rules.logsumexp(x, other, 1.0)),
        ("pow", lambda: rules.power(x, other)), ("exp", lambda: rules.exp(other)),
        ("*", lambda: rules.multiply(other, 2.0)),
    ]


@pytest.mark.parametrize("kind", ["micrograd", "Foreign"])
def test_an_object_that_is_no_number_is_refused_at_the_call_naming_the_op_and_its_type(kind):
    if kind == "micrograd":
        from micrograd.engine import Value as MicrogradValue
        other, type_name = MicrogradValue(2.0), "micrograd.engine.Value"
    else:
        other, type_name = Foreign(), "test_op_edges.Foreign"
    for name, call in foreign_calls(other):
        with pytest.raises(TypeError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(f"{name}: ") and type_name in message and "\n" not in message, message
        assert re.search(r"real number", message)


def test_numbers_of_other_libraries_are_numbers_to_weighted_sum(torch_or_skip):
    np = pytest.importorskip("numpy")
    x = Value(0.5)
    y = Value.weighted_sum([np.float64(2.0), x], [x, np.float64(3.0)], Value(1.0))
    assert type(y.data) is float and y.data == 2.0 * 0.5 + 0.5 * 3.0 + 1.0
    y.backward()
    assert x.grad == 2.0 + 3.0
    torch = torch_or_skip()
    z = Value.weighted_sum([torch.tensor(2.0, dtype=torch.float64)], [x], Value(1.0))
    assert type(z.data) is float and z.data == 2.0
