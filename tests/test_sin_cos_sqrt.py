"""sin, cos and sqrt: registry ops like the others, from Python, formulas and the command line, PyTorch's rules,
and sqrt's derivative at 0 a DomainError naming sqrt, never inf or nan."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgd import DomainError, Value, explain, grad, gradients, rules
from microgd.app.formula import compile as compile_formula
from microgd.app.formula import functions, parse
from microgd.check import check_formula, gradcheck
from microgd.compiled import reading_backward
from microgd.nn import MLP, activation_names
from microgd.tape import trace

try:
    import torch
except ImportError:  # the torch extra is not installed: the tests marked requires_torch skip, saying so
    torch = None

OPS = {"sin": math.sin, "cos": math.cos, "sqrt": math.sqrt}
POINTS = {"sin": st.floats(-1e3, 1e3), "cos": st.floats(-1e3, 1e3), "sqrt": st.floats(0.0, 1e6, exclude_min=True)}


def ulps(a, b):
    """How many floats apart a and b are."""
    return abs(a - b) / math.ulp(max(abs(a), abs(b)))


# -- everywhere an op is -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", OPS)
def test_a_value_method_a_registry_op_a_formula_function_and_an_activation(name):
    op = rules.OPS[name]
    assert getattr(rules, name) is op and op.arity == 1 and op.function and not op.kinks
    assert name in functions() and name in activation_names()
    y = getattr(Value(0.7), name)()
    assert (y.op, y.data, op(0.7), type(op(0.7))) == (name, OPS[name](0.7), OPS[name](0.7), float)
    assert parse(f"{name}(x)", {"x": 0.7}).data == y.data


@pytest.mark.parametrize("name", OPS)
def test_the_forward_is_pythons_math_bit_for_bit(name):
    @given(POINTS[name])
    def check(x):
        assert getattr(Value(x), name)().data == OPS[name](x)

    check()


DERIVATIVES = {"sin": math.cos, "cos": lambda x: -math.sin(x), "sqrt": lambda x: 1 / (2 * math.sqrt(x))}


@pytest.mark.parametrize("name", OPS)
def test_the_derivative_and_second_derivative(name):
    second = {"sin": lambda x: -math.sin(x), "cos": lambda x: -math.cos(x), "sqrt": lambda x: -0.25 * x ** -1.5}

    @given(st.floats(0.05, 20.0) if name == "sqrt" else st.floats(-20.0, 20.0))
    def check(x):
        f = lambda v: getattr(v, name)()  # noqa: E731
        assert grad(f)(x) == pytest.approx(DERIVATIVES[name](x), rel=1e-14, abs=1e-15)
        assert grad(grad(f))(x) == pytest.approx(second[name](x), rel=1e-12, abs=1e-15)
        assert gradcheck(f, x, order=2)

    check()


@pytest.mark.requires_torch
def test_the_rules_are_pytorchs():
    """derivatives.yaml: sin ``grad * self.cos()``, cos ``grad * -self.sin()``, sqrt ``grad / (2 * result)``. Where
    PyTorch's own sin, cos and sqrt give the float Python's math gives, the gradients are the same float; PyTorch's
    are not libm's (SLEEF, MKL: sqrt too is off by 1 ulp at some points), so elsewhere they agree within 2 ulps."""
    same_forward = 0
    for x in np.linspace(0.01, 30.0, 997).tolist():
        for name in OPS:
            leaf = Value(x)
            getattr(leaf, name)().backward()
            t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            out = getattr(torch, name)(t)
            out.backward()
            assert ulps(out.item(), OPS[name](x)) <= 1
            assert ulps(leaf.grad, t.grad.item()) <= 2
            inner = {"sin": torch.cos, "cos": torch.sin, "sqrt": torch.sqrt}[name](t.detach()).item()
            if inner == {"sin": math.cos, "cos": math.sin, "sqrt": math.sqrt}[name](x):
                same_forward += 1
                assert leaf.grad == t.grad.item(), (name, x)
    assert same_forward > 2500


@pytest.mark.requires_torch
@pytest.mark.parametrize("name", OPS)
def test_the_array_forms_on_numpy_and_torch(name):
    xs = np.linspace(0.0 if name == "sqrt" else -50.0, 50.0, 10001)
    expected = [OPS[name](x) for x in xs.tolist()]
    on_numpy = rules.OPS[name].array(np, xs)
    on_torch = rules.OPS[name].array(torch, torch.tensor(xs, dtype=torch.float64))
    assert on_numpy.dtype == np.float64 and on_torch.dtype == torch.float64
    assert max(ulps(a, b) for a, b in zip(on_numpy.tolist(), expected) if b) <= 1
    assert max(ulps(a, b) for a, b in zip(on_torch.tolist(), expected) if b) <= 1
    if name == "sqrt":  # correctly rounded in IEEE 754: numpy's is Python's, to the bit
        assert on_numpy.tolist() == expected


@pytest.mark.requires_torch
@pytest.mark.parametrize("name", OPS)
def test_an_mlp_with_the_activation_goes_to_torch_and_back(name):
    weights = [[[0.5, -0.25, 0.75], [-0.25, 0.5, 0.25]], [[0.5, 1.5, 0.25]]]
    model = MLP(2, [2, 1], activations=[name, "linear"], weights=weights)
    module = model.to_torch()
    assert repr(module[1]) == f"RegistryActivation({name!r})"
    x = [0.5, 0.125]
    out = module(torch.tensor(x, dtype=torch.float64)).item()
    assert ulps(out, model(x).data) <= 4
    assert MLP.from_torch(module).state_dict() == model.state_dict()


# -- sqrt at 0 and below, sin and cos of inf ---------------------------------------------------------------------------

def test_sqrt_of_0_is_0_but_its_derivative_there_is_a_domain_error_naming_sqrt():
    assert rules.sqrt(0.0) == 0.0 and math.copysign(1.0, rules.sqrt(-0.0)) == -1.0  # IEEE 754, as PyTorch
    message = r"backward of sqrt\((-)?0\.0\): the derivative is not a finite number"
    for zero in (0.0, -0.0):
        for backward in (Value.backward, reading_backward):  # the compiled backward and the engine's own
            with pytest.raises(DomainError, match=message):
                backward(Value(zero).sqrt())
        leaf = Value(zero)
        with pytest.raises(DomainError, match=message):
            gradients(leaf.sqrt() * 2.0, [leaf], create_graph=True)
        with pytest.raises(DomainError, match=message):
            grad(lambda v: v.sqrt())(zero)
    tape = trace(lambda v: v.sqrt() * 3.0, 4.0)
    assert tape.value_and_grad(4.0) == (6.0, [0.75])
    with pytest.raises(DomainError, match=message):
        tape.value_and_grad(0.0)
    with pytest.raises(DomainError, match=r"sample 1: " + message):
        tape.batch(np.asarray([1.0, 0.0, 4.0]))


@pytest.mark.requires_torch
def test_sqrt_of_0_in_a_batch_on_torch_is_the_same_domain_error():
    tape = trace(lambda v: v.sqrt() * 3.0, 4.0)
    with pytest.raises(DomainError, match=r"sample 1: backward of sqrt\(0\.0\): the derivative is not a finite number"):
        tape.batch(torch.tensor([1.0, 0.0, 4.0], dtype=torch.float64))


def test_sqrt_of_a_negative_number_is_a_domain_error_naming_sqrt():
    with pytest.raises(DomainError, match=r"^sqrt: operand must be >= 0, got -1.0$"):
        Value(-1.0).sqrt()
    with pytest.raises(DomainError, match=r"sqrt: operand must be >= 0, got -1e-300"):
        parse("sqrt(x)", {"x": -1e-300})
    with pytest.raises(DomainError, match=r"sample 1: sqrt: operand must be >= 0, got -1.0"):
        trace(lambda v: v.sqrt(), 4.0).batch(np.asarray([1.0, -1.0]))


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_sin_and_cos_of_an_infinity_are_domain_errors_naming_them(name):
    with pytest.raises(DomainError, match=rf"^{name}: operand must be finite, got inf$"):
        rules.OPS[name](math.inf)
    assert getattr(Value(1e308), name)().data == OPS[name](1e308)  # a huge finite operand is fine


# -- how they print ----------------------------------------------------------------------------------------------------

def test_latex_text_and_formula():
    x = Value(4.0, label="x")
    y = x.sqrt() * x.sin() + x.cos()
    d = explain(y, wrt=x)
    closed = d.formula(x)
    assert closed == "-sin(x) + sqrt(x) * cos(x) + sin(x) / (2.0 * sqrt(x))"
    assert compile_formula(closed)(x=4.0).data == pytest.approx(gradients(y, [x])[0], rel=1e-15)
    assert d.text().splitlines() == ["∂f/∂x = −sin(x) + sqrt(x)·cos(x) + sin(x)/(2sqrt(x)) = −0.7397",
                                     "where f = sqrt(x)·sin(x) + cos(x)"]
    assert d.latex().splitlines()[1] == (r"\frac{\partial f}{\partial x} &= -\sin\left(x\right) + \sqrt{x} \cdot "
                                         r"\cos\left(x\right) + \frac{\sin\left(x\right)}{2\sqrt{x}} = -0.7397 \\")


def test_the_local_derivative_of_sqrt_reuses_its_result():
    x = Value(9.0, label="x")
    text = explain(x.sqrt(), wrt=x).text()
    assert text.startswith("∂f/∂x = 1/(2f) = 0.1667")


# -- formulas and the command line ---------------------------------------------------------------------------------

def test_check_formula_on_sqrt_skips_0_where_the_derivative_is_not_defined():
    report = check_formula(compile_formula("sqrt(x)"), lambda x: 0.5 / math.sqrt(x), wrt="x", domain={"x": (0.0, 1.0)})
    assert report.examples == 200 and report.drawn_from["x"][0][0] > 0.0


def run_cli(*args):
    env = {name: value for name, value in os.environ.items() if not name.startswith("HYPOTHESIS")}
    return subprocess.run([sys.executable, "-m", "microgd", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_the_command_line_checks_and_explains_them(tmp_path):
    ok = run_cli("check", "sin(x) * sqrt(x)", "--formula", "cos(x)*sqrt(x) + sin(x)/(2*sqrt(x))")
    assert ok.returncode == 0, ok.stderr
    assert "agrees with the engine at 200 points" in ok.stdout
    wrong = run_cli("check", "cos(x)", "--formula", "sin(x)")
    assert wrong.returncode == 1 and "closed form: -sin(x)" in wrong.stdout
    explained = run_cli("explain", "sqrt(x)", "--var", "x=4", "--latex")
    assert explained.returncode == 0 and r"\frac{1}{2f}" in explained.stdout and r"\sqrt{x}" in explained.stdout
    at_zero = run_cli("explain", "sqrt(x)", "--var", "x=0")
    assert at_zero.returncode == 2
    assert at_zero.stderr.strip() == ("microgd: error: backward of sqrt(0.0): the derivative is not a finite number "
                                      "(float division by zero)")
