"""microgd.optim: SGD (with momentum) and Adam updates by hand, all-or-nothing steps, clear errors."""

import copy
import doctest
import math

import pytest

import microgd.optim
from microgd import Value
from microgd.optim import SGD, Adam


def params_with_grads(data, grads):
    ps = [Value(d) for d in data]
    for p, g in zip(ps, grads):
        p.grad = g
    return ps


def test_sgd_step_is_w_minus_lr_grad():
    ps = params_with_grads([1.0, -2.0, 0.5], [0.5, -1.0, 0.0])
    SGD(ps, lr=0.1).step()
    assert [p.data for p in ps] == [1.0 - 0.1 * 0.5, -2.0 + 0.1 * 1.0, 0.5]


def test_sgd_momentum_accumulates_a_velocity():
    (p,) = params_with_grads([1.0], [2.0])
    opt = SGD([p], lr=0.1, momentum=0.9)
    opt.step()  # v = 2
    assert p.data == pytest.approx(1.0 - 0.1 * 2.0, rel=1e-15)
    p.grad = 1.0
    opt.step()  # v = 0.9 * 2 + 1 = 2.8
    assert p.data == pytest.approx(1.0 - 0.2 - 0.1 * 2.8, rel=1e-15)
    assert opt.velocity == pytest.approx([2.8], rel=1e-15)


def test_zero_grad():
    ps = params_with_grads([1.0, 2.0], [3.0, 4.0])
    SGD(ps, lr=0.1).zero_grad()
    assert [p.grad for p in ps] == [0.0, 0.0]


def test_adam_first_steps_by_hand():
    (p,) = params_with_grads([1.0], [0.5])
    opt = Adam([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    opt.step()
    # t = 1: bias-corrected moments are g and g^2, so the step is lr * g / (|g| + eps)
    assert p.data == pytest.approx(1.0 - 0.01 * 0.5 / (0.5 + 1e-8), rel=1e-15)
    p.grad = -1.5
    opt.step()
    m = 0.9 * 0.05 + 0.1 * -1.5
    v = 0.999 * 0.001 * 0.25 + 0.001 * 2.25
    m_hat, v_hat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    assert p.data == pytest.approx(1.0 - 0.01 * 0.5 / (0.5 + 1e-8) - 0.01 * m_hat / (math.sqrt(v_hat) + 1e-8),
                                   rel=1e-14)
    assert opt.t == 2 and opt.m == pytest.approx([m]) and opt.v == pytest.approx([v])


def test_adam_minimises_a_quadratic():
    x, y = Value(3.0), Value(-2.0)
    opt = Adam([x, y], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        ((x - 1.0) ** 2 + 10.0 * (y + 0.5) ** 2).backward()
        opt.step()
    assert x.data == pytest.approx(1.0, abs=1e-3) and y.data == pytest.approx(-0.5, abs=1e-3)


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.5), lambda ps: Adam(ps, lr=0.1)])
def test_a_non_finite_gradient_changes_nothing(make):
    ps = params_with_grads([1.0, 2.0], [1.0, 1.0])
    opt = make(ps)
    opt.step()
    state = [p.data for p in ps], {k: copy.copy(v) for k, v in vars(opt).items() if k != "params"}
    ps[1].grad = math.inf
    ps[1].label = "w2"
    with pytest.raises(FloatingPointError, match=r"parameter 1 \(w2\) has a non-finite gradient inf; nothing"):
        opt.step()
    assert ([p.data for p in ps], {k: v for k, v in vars(opt).items() if k != "params"}) == state


def test_a_step_that_would_overflow_changes_nothing():
    ps = params_with_grads([1.0, 1e308], [1.0, -1e308])
    opt = SGD(ps, lr=10.0)
    with pytest.raises(FloatingPointError, match="would make parameter 1 inf .learning rate too large"):
        opt.step()
    assert [p.data for p in ps] == [1.0, 1e308]


@pytest.mark.parametrize("make, error, message", [
    (lambda: SGD([], lr=0.1), ValueError, "SGD: got an empty parameter list"),
    (lambda: SGD([1.0], lr=0.1), TypeError, "SGD: parameter 0 is a float, not a Value"),
    (lambda: SGD([P, P], lr=0.1), ValueError, "parameter 1 appears twice"),
    (lambda: SGD([P], lr=0.0), ValueError, "SGD lr must be a finite number > 0.0, got 0.0"),
    (lambda: SGD([P], lr=math.nan), ValueError, "SGD lr must be a finite number"),
    (lambda: SGD([P], lr=0.1, momentum=1.0), ValueError,
     r"SGD momentum must be a finite number in \[0.0, 1.0\), got 1.0"),
    (lambda: Adam([P], lr=-1.0), ValueError, "Adam lr must be"),
    (lambda: Adam([P], betas=(0.9,)), ValueError, r"Adam betas must be a pair"),
    (lambda: Adam([P], betas=(0.9, 1.0)), ValueError, r"Adam betas\[1\] must be"),
    (lambda: Adam([P], eps=0.0), ValueError, "Adam eps must be"),
])
def test_bad_arguments_are_clear_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


P = Value(1.0)


def test_a_generator_of_parameters_is_kept():
    ps = [Value(1.0), Value(2.0)]
    opt = SGD((p for p in ps), lr=0.5)
    ps[0].grad = 2.0
    opt.step()
    opt.step()  # the generator was read once into a list, so the second step still sees the parameters
    assert ps[0].data == -1.0


def test_docstring_examples_run():
    result = doctest.testmod(microgd.optim)
    assert result.attempted > 0 and result.failed == 0
