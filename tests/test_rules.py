"""Every op against its closed form (value, first and second derivative) and against finite differences."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgd import Value, grad, rules
from microgd.check import gradcheck
from microgd.rules import OPS, logsumexp, sign, softplus, step, xlogy


def sig(x):
    return 1 / (1 + math.exp(-x))


# (name, f on Values, value, first derivative, second derivative, domain)
UNARY = [
    ("neg", lambda x: -x, lambda x: -x, lambda x: -1.0, lambda x: 0.0, (-10, 10)),
    ("exp", lambda x: x.exp(), math.exp, math.exp, math.exp, (-10, 10)),
    ("log", lambda x: x.log(), math.log, lambda x: 1 / x, lambda x: -1 / x**2, (0.05, 20)),
    ("tanh", lambda x: x.tanh(), math.tanh, lambda x: 1 - math.tanh(x) ** 2,
     lambda x: -2 * math.tanh(x) * (1 - math.tanh(x) ** 2), (-6, 6)),
    ("sigmoid", lambda x: x.sigmoid(), sig, lambda x: sig(x) * (1 - sig(x)),
     lambda x: sig(x) * (1 - sig(x)) * (1 - 2 * sig(x)), (-8, 8)),
    ("relu", lambda x: x.relu(), lambda x: max(x, 0.0), lambda x: float(x > 0), lambda x: 0.0, (-5, 5)),
    ("abs", lambda x: abs(x), abs, lambda x: math.copysign(1.0, x), lambda x: 0.0, (-5, 5)),
    ("powc", lambda x: x**3, lambda x: x**3, lambda x: 3 * x**2, lambda x: 6 * x, (-4, 4)),
    ("powc", lambda x: x**0.5, math.sqrt, lambda x: 0.5 / math.sqrt(x), lambda x: -0.25 * x**-1.5, (0.1, 9)),
    ("powc", lambda x: x**-2, lambda x: x**-2, lambda x: -2 * x**-3, lambda x: 6 * x**-4, (0.2, 5)),
    ("+", lambda x: x + 2.5, lambda x: x + 2.5, lambda x: 1.0, lambda x: 0.0, (-10, 10)),
    ("+", lambda x: 2.5 + x, lambda x: x + 2.5, lambda x: 1.0, lambda x: 0.0, (-10, 10)),
    ("-", lambda x: x - 2.5, lambda x: x - 2.5, lambda x: 1.0, lambda x: 0.0, (-10, 10)),
    ("-", lambda x: 2.5 - x, lambda x: 2.5 - x, lambda x: -1.0, lambda x: 0.0, (-10, 10)),
    ("*", lambda x: x * x, lambda x: x * x, lambda x: 2 * x, lambda x: 2.0, (-10, 10)),
    ("*", lambda x: 3 * x, lambda x: 3 * x, lambda x: 3.0, lambda x: 0.0, (-10, 10)),
    ("/", lambda x: x / 4, lambda x: x / 4, lambda x: 0.25, lambda x: 0.0, (-10, 10)),
    ("/", lambda x: 1 / x, lambda x: 1 / x, lambda x: -1 / x**2, lambda x: 2 / x**3, (0.2, 10)),
    ("cpow", lambda x: 2**x, lambda x: 2**x, lambda x: 2**x * math.log(2), lambda x: 2**x * math.log(2) ** 2,
     (-5, 5)),
    ("cpow", lambda x: rules.power(0.5, x), lambda x: 0.5**x, lambda x: 0.5**x * math.log(0.5),
     lambda x: 0.5**x * math.log(0.5) ** 2, (-5, 5)),
    ("pow", lambda x: x ** Value(2.5), lambda x: x**2.5, lambda x: 2.5 * x**1.5, lambda x: 3.75 * x**0.5, (0.1, 5)),
    ("pow", lambda x: x**x, lambda x: x**x, lambda x: x**x * (math.log(x) + 1),
     lambda x: x**x * ((math.log(x) + 1) ** 2 + 1 / x), (0.2, 3)),
    ("weighted_sum", lambda x: Value.weighted_sum([x, 2.0], [x, x], 1.0), lambda x: x * x + 2 * x + 1,
     lambda x: 2 * x + 2, lambda x: 2.0, (-5, 5)),
    ("step", lambda x: step(x) * x, lambda x: x * (x > 0), lambda x: float(x > 0), lambda x: 0.0, (-5, 5)),
    ("sign", lambda x: sign(x) * x, abs, lambda x: math.copysign(1.0, x), lambda x: 0.0, (-5, 5)),
    ("softplus", lambda x: softplus(x), lambda x: math.log1p(math.exp(x)), sig, lambda x: sig(x) * (1 - sig(x)),
     (-20, 20)),
    ("logsumexp", lambda x: logsumexp(x, 2 * x, 1.5), lambda x: math.log(math.exp(x) + math.exp(2 * x) + math.exp(1.5)),
     lambda x: (math.exp(x) + 2 * math.exp(2 * x)) / (math.exp(x) + math.exp(2 * x) + math.exp(1.5)),
     lambda x: ((math.exp(x) + 4 * math.exp(2 * x)) * (math.exp(x) + math.exp(2 * x) + math.exp(1.5))
                - (math.exp(x) + 2 * math.exp(2 * x)) ** 2) / (math.exp(x) + math.exp(2 * x) + math.exp(1.5)) ** 2,
     (-5, 5)),
    ("xlogy", lambda x: xlogy(x, x), lambda x: x * math.log(x), lambda x: math.log(x) + 1, lambda x: 1 / x,
     (0.1, 10)),
    ("sin", lambda x: x.sin(), math.sin, math.cos, lambda x: -math.sin(x), (-10, 10)),
    ("cos", lambda x: x.cos(), math.cos, lambda x: -math.sin(x), lambda x: -math.cos(x), (-10, 10)),
    ("sqrt", lambda x: x.sqrt(), math.sqrt, lambda x: 0.5 / math.sqrt(x), lambda x: -0.25 * x**-1.5, (0.05, 20)),
    ("linear", lambda x: rules.linear(x * x), lambda x: x * x, lambda x: 2 * x, lambda x: 2.0, (-5, 5)),
]
IDS = [f"{row[0]}-{i}" for i, row in enumerate(UNARY)]


def close(a, b, tol=1e-9):
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def test_every_built_in_rule_is_covered_by_the_table():
    built_in = {name for name, op in OPS.items() if op.defined_at.startswith(rules.__file__)}
    assert {row[0] for row in UNARY} == built_in


@pytest.mark.parametrize("name, f, value, d1, d2, domain", UNARY, ids=IDS)
def test_value_and_derivatives_match_closed_form(name, f, value, d1, d2, domain):
    @given(st.floats(*domain).filter(lambda x: abs(x) > 1e-3))
    def check(x):
        out = f(Value(x))
        assert name in {out.op, *(p.op for p in out.parents)}
        assert close(out.data, value(x))
        assert close(grad(f)(x), d1(x))
        assert close(grad(grad(f))(x), d2(x), 1e-8)

    check()


@pytest.mark.parametrize("name, f, value, d1, d2, domain", UNARY, ids=IDS)
def test_derivatives_match_central_differences(name, f, value, d1, d2, domain):
    lo, hi = domain

    @given(st.floats(lo + 1e-3, hi - 1e-3).filter(lambda x: abs(x) > 1e-3))
    def check(x):
        assert gradcheck(f, x, order=2)

    check()


BINARY = [
    ("+", lambda x, y: x + y, lambda x, y: (1.0, 1.0)),
    ("-", lambda x, y: x - y, lambda x, y: (1.0, -1.0)),
    ("*", lambda x, y: x * y, lambda x, y: (y, x)),
    ("/", lambda x, y: x / y, lambda x, y: (1 / y, -x / y**2)),
    ("pow", lambda x, y: x**y, lambda x, y: (y * x ** (y - 1), x**y * math.log(x))),
]


@pytest.mark.parametrize("name, f, partials", BINARY, ids=[b[0] for b in BINARY])
@given(x=st.floats(0.1, 4), y=st.floats(-3, 3).filter(lambda y: abs(y) > 0.1))
def test_binary_partials(name, f, partials, x, y):
    dx, dy = grad(f, argnums=(0, 1))(x, y)
    ex, ey = partials(x, y)
    assert close(dx, ex) and close(dy, ey)
    assert gradcheck(f, x, y, order=2)  # the Hessian, mixed partials included


def test_at_their_kink_relu_and_abs_have_the_derivative_micrograd_and_pytorch_give():
    """relu'(0) = 0 (micrograd's (out.data > 0) * out.grad), abs'(0) = sign(0) = 0; just beside the kink, the slopes."""
    from micrograd.engine import Value as MicrogradValue

    theirs = MicrogradValue(0.0)
    theirs.relu().backward()
    for f, at_zero in [(lambda v: v.relu(), theirs.grad), (abs, 0.0), (step, 0.0), (sign, 0.0)]:
        for x, slope in [(0.0, at_zero), (-0.0, at_zero)]:
            assert grad(f)(x) == slope
    assert theirs.grad == 0.0
    assert [grad(lambda v: v.relu())(x) for x in (5e-324, -5e-324)] == [1.0, 0.0]
    assert [grad(abs)(x) for x in (5e-324, -5e-324)] == [1.0, -1.0]
