"""define_op, the registry's front door: a new op works everywhere with no other change; broken rules are named."""

import math
import re
import sys

import pytest
from hypothesis import given, settings

import microgd
from microgd import DomainError, RuleError, Value, define_op, grad, gradients, rules
from microgd.check import gradcheck
from microgd.rules import OPS
from microgd.testing import expressions


@pytest.fixture(autouse=True, scope="module")
def _ops_defined_here_are_removed_afterwards():
    """Ops defined by these tests leave the registry with them, so other tests' random expressions never meet them."""
    before = set(OPS)
    yield
    for name in set(OPS) - before:
        del rules._REGISTRY[name]


def cosh(x):
    return OPS["cosh"](x)


def sinh(x):
    return OPS["sinh"](x)


@pytest.fixture(autouse=True, scope="module")
def _sinh_and_cosh():
    """Two new ops whose vjps call each other, the first before the second exists (rules are called, not read,
    at definition)."""
    define_op("cosh", forward=math.cosh, vjp=lambda g, out, x: (g * sinh(x),), symbol="cosh")
    define_op("sinh", forward=math.sinh, vjp=lambda g, out, x: (g * cosh(x),), symbol="sinh")


def test_a_new_op_works_on_numbers_values_and_in_backward():
    assert sinh(0.5) == math.sinh(0.5) and isinstance(sinh(0.5), float)
    x = Value(0.5)
    y = sinh(x) * 2
    y.backward()
    assert y.op == "*" and y.parents[0].op == "sinh"
    assert x.grad == pytest.approx(2 * math.cosh(0.5), rel=1e-15)
    assert gradients(y, [x]) == [x.grad]


def test_a_new_op_works_to_any_order():
    assert grad(grad(sinh))(0.5) == pytest.approx(math.sinh(0.5), rel=1e-15)
    assert grad(grad(grad(cosh)))(0.5) == pytest.approx(math.sinh(0.5), rel=1e-15)
    assert gradcheck(lambda x, y: sinh(x * y) + cosh(y), 0.3, -1.2, order=2)


def test_a_new_op_is_drawn_and_stepped_through(tmp_path):
    from microgd.stepper import backprop_html
    from microgd.viz import draw_graph

    x = Value(0.5, label="x")
    y = sinh(x) * 2
    y.backward()
    assert "sinh" in draw_graph(y).source
    page = backprop_html(y, tmp_path / "sinh.html").read_text(encoding="utf-8")
    assert "sinh" in page


def test_random_expressions_can_ask_for_a_new_op():
    @settings(max_examples=30)
    @given(expressions(ops=("sinh", "cosh", "*", "+"), max_depth=3))
    def check(e):
        assert {name for name, _, _ in e.nodes} <= {"sinh", "cosh", "*", "+"}
        assert gradcheck(e.build, *e.inputs, order=2)

    check()


def test_the_op_is_in_the_registry_with_its_arity_and_defaults():
    op = OPS["sinh"]
    assert op.arity == 1 and op.symbol == "sinh" and op.domain == ((-math.inf, math.inf),)
    assert microgd.define_op is define_op


def test_arity_comes_from_the_vjp_and_any_number_of_inputs_is_allowed():
    hypot = define_op("hypot_test", forward=math.hypot, vjp=lambda g, out, x, y: (g * x / out, g * y / out))
    total = define_op("total_test", forward=lambda *xs: sum(xs), vjp=lambda g, out, *xs: tuple(g for _ in xs))
    assert (hypot.arity, total.arity) == (2, None)
    x, y = Value(3.0), Value(4.0)
    out = hypot(x, y) + total(x, y, x)
    out.backward()
    assert (x.grad, y.grad) == (pytest.approx(0.6 + 2), pytest.approx(0.8 + 1))


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"name": "exp"}, ValueError, r"'exp' is already a built-in op"),
    ({"name": "two words"}, ValueError, r"must be a Python identifier"),
    ({"forward": 3.0}, TypeError, r"forward must be a function"),
    ({"vjp": lambda g, out: ()}, TypeError, r"the vjp must take \(g, out, \*inputs\)"),
    ({"vjp": lambda g, out, x, y: (g, g)}, TypeError, r"the vjp takes 2 input\(s\) after \(g, out\), but forward"),
    ({"domain": ((1.0, 0.0),)}, ValueError, r"needs low < high"),
    ({"domain": ((0.0, 1.0), (0.0, 1.0))}, ValueError, r"lists 2 intervals for 1 inputs"),
])
def test_bad_definitions_are_refused_when_defined(kwargs, error, pattern):
    arguments = {"name": "fresh_op", "forward": math.sin, "vjp": lambda g, out, x: (g,), **kwargs}
    with pytest.raises(error, match=pattern):
        define_op(arguments.pop("name"), **arguments)
    assert "fresh_op" not in OPS


def test_defining_a_name_twice_is_an_error_but_rerunning_the_same_line_replaces_it():
    def define():
        return define_op("twice_test", forward=math.sin, vjp=lambda g, out, x: (g * cosh(x),))

    first = define()
    second = define()  # the same line again: a re-run notebook cell
    assert OPS["twice_test"] is second and first is not second
    with pytest.raises(ValueError, match=r"'twice_test' is already an op defined at .*test_define_op.py:\d+"):
        define_op("twice_test", forward=math.sin, vjp=lambda g, out, x: (g,))


def test_a_rule_returning_the_wrong_number_of_entries_is_named():
    short = define_op("short_test", forward=lambda x, y: x * y, vjp=lambda g, out, x, y: (g * y,))
    wrong_type = define_op("float_test", forward=math.sin, vjp=lambda g, out, x: g * math.cos(x))
    long = define_op("long_test", forward=math.sin, vjp=lambda g, out, x: (g, g))
    variadic = define_op("variadic_test", forward=lambda *xs: sum(xs), vjp=lambda g, out, *xs: (g,))
    cases = [
        (short(Value(2.0), Value(3.0)), r"op 'short_test' returned 1 entries for 2 inputs"),
        (wrong_type(Value(2.0)), r"op 'float_test' returned a float, not a tuple of 1 entries"),
        (long(Value(2.0)), r"op 'long_test' returned 2 entries for 1 inputs"),
        (variadic(Value(1.0), Value(2.0), Value(3.0)), r"op 'variadic_test' returned 1 entries for 3 inputs"),
    ]
    for out, pattern in cases:
        with pytest.raises(RuleError, match=pattern):
            out.backward()
        with pytest.raises(RuleError, match=pattern):
            gradients(out, list(out.parents))


def test_a_bug_in_a_rule_is_a_rule_error_naming_the_op_caused_by_the_bug():
    def buggy(g, out, x):
        return ({"a": 1}["b"],)  # a KeyError that has nothing to do with the op's domain

    def raising(g, out, x):
        raise ValueError("a bug in user code")

    for vjp, error in ((buggy, KeyError), (raising, ValueError)):
        op = define_op(f"bug_{error.__name__}", forward=math.sin, vjp=vjp)
        with pytest.raises(RuleError, match=rf"the vjp rule of op 'bug_{error.__name__}' failed on float inputs: "
                                            rf"{error.__name__}") as caught:
            (op(Value(1.0)) * 2).backward()
        assert isinstance(caught.value.__cause__, error)  # the bug itself, its traceback ending where it is
        assert caught.value.__cause__.__traceback__ is not None
        tb = caught.value.__cause__.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        assert tb.tb_frame.f_code.co_name == vjp.__name__


def test_only_the_rules_domain_errors_become_domain_errors():
    inverse = define_op("inverse_test", forward=lambda x: 1.0 / x, vjp=lambda g, out, x: (-g / (x * x),))
    with pytest.raises(DomainError, match=r"backward of inverse_test\(1e-200\): the derivative is not a finite"):
        inverse(Value(1e-200)).backward()  # x * x underflows to 0 and the rule divides by it


def test_a_forward_giving_nan_or_inf_is_a_domain_error_naming_the_op():
    blow_up = define_op("blow_up_test", forward=lambda x: x * 1e308, vjp=lambda g, out, x: (g * 1e308,))
    with pytest.raises(DomainError, match=r"blow_up_test: the result is inf for the operand\(s\) 10.0"):
        blow_up(Value(10.0))
    with pytest.raises(DomainError, match=r"blow_up_test: the result is inf"):
        blow_up(10.0)


def test_a_constant_input_must_be_a_number():
    with pytest.raises(TypeError, match=r"powc: input 2 is a constant of the op and must be a number"):
        OPS["powc"](Value(2.0), Value(3.0))


# -- the array form, checked against the forward ------------------------------------------------------------------

@pytest.mark.parametrize("array, pattern", [
    (lambda xp, x: xp.cos(x), r"define_op\('array_test'\): its array form disagrees with its forward: "
                              r"array_test\([-\d.e]+\) is [-\d.e]+ by the array form, [-\d.e]+ by the forward$"),
    (lambda xp, x: xp.sin(x).astype(xp.float32), r"define_op\('array_test'\): its array form gives float32 numbers "
                                                 r"for float64 arrays"),
    (lambda xp, x: xp.no_such_function(x), r"define_op\('array_test'\): its array form fails on numpy arrays: "
                                           r"AttributeError: .*no_such_function"),
    (lambda xp, x: x > 0, r"its array form gives bool numbers for float64 arrays"),
], ids=["wrong", "float32", "failing", "bool"])
def test_an_array_form_that_disagrees_with_the_forward_is_refused(array, pattern):
    pytest.importorskip("numpy")
    with pytest.raises(ValueError, match=pattern) as caught:
        define_op("array_test", forward=math.sin, vjp=lambda g, out, x: (g,), array=array)
    assert "\n" not in str(caught.value) and "array_test" not in OPS


def test_the_array_check_names_the_point_and_both_values():
    pytest.importorskip("numpy")
    with pytest.raises(ValueError) as caught:
        define_op("shifted_test", forward=lambda a, b: a - b, vjp=lambda g, out, a, b: (g, -g),
                  domain=((0.0, 1.0), (2.0, 3.0)), array=lambda xp, a, b: b - a)
    point = re.search(r"shifted_test\(([^)]*)\)", str(caught.value))[1]
    a, b = map(float, point.split(", "))
    assert str(caught.value).endswith(f"is {b - a!r} by the array form, {a - b!r} by the forward")
    assert 0.0 <= a <= 1.0 and 2.0 <= b <= 3.0  # a point of the op's domain


def test_an_array_form_that_agrees_is_accepted_with_its_constants_as_numbers():
    pytest.importorskip("numpy")
    seen = []

    def scaled(xp, x, c):
        seen.append(type(c))
        return c * x

    op = define_op("scaled_test", forward=lambda x, c: c * x, vjp=lambda g, out, x, c: (g * c, 0.0), constants=(1,),
                   array=scaled)
    assert op.array is scaled and seen == [float]
    outside = define_op("sqrt_test", forward=math.sqrt, vjp=lambda g, out, x: (g / (2 * out),),
                        array=lambda xp, x: xp.sqrt(x))  # the real line: points outside forward's domain are skipped
    assert outside.name in OPS


def test_without_numpy_the_array_form_is_not_checked(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy raises ImportError
    op = define_op("unchecked_test", forward=math.sin, vjp=lambda g, out, x: (g,), array=lambda xp, x: xp.cos(x))
    assert op.name in OPS


def test_every_built_in_array_form_passes_the_check():
    numpy = pytest.importorskip("numpy")
    built_in = [op for op in OPS.values() if op.array is not None and op.defined_at.startswith(rules.__file__)]
    assert len(built_in) >= 12
    for op in built_in:
        assert rules._array_disagreement(op, numpy) is None, op.name
