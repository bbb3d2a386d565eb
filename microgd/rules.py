"""The one table of derivative rules.

Each op is one entry ``RULES[name] = Rule(forward, vjp)``:

* ``forward(*inputs) -> float`` computes the op on plain floats and raises
  :class:`DomainError` (naming the op and the operand) outside the op's domain;
* ``vjp(g, out, *inputs) -> tuple`` returns one contribution per input: the
  upstream gradient ``g`` times the local derivative. It is written with plain
  arithmetic, so the same rule runs on floats (fast first-order backward) and on
  ``Value`` objects (a differentiable graph, for higher-order derivatives).
  Where the derivative is cheaper from the result, the rule reuses ``out``.

Example::

    >>> RULES["tanh"].vjp(1.0, 0.0, 0.0)
    (1.0,)
"""

import math
from operator import mul
from typing import Callable, NamedTuple


class DomainError(ArithmeticError, ValueError):
    """An op was applied outside its domain, e.g. ``log(-1)`` or ``x / 0``."""


class Rule(NamedTuple):
    forward: Callable[..., float]
    vjp: Callable[..., tuple]


def _float(x) -> float:
    """The number inside ``x`` (a float, or a Value's data): for piecewise-constant factors."""
    return x if type(x) is float else x.data


def _log(x):
    """log on floats and Values alike (the vjp of ``pow`` needs it on both)."""
    return math.log(x) if type(x) is float else x.log()


def _div(x: float, y: float) -> float:
    if y == 0.0:
        raise DomainError(f"div: division by zero ({x!r} / {y!r})")
    return x / y


def _log_forward(x: float) -> float:
    if x <= 0.0:
        raise DomainError(f"log: operand must be > 0, got {x!r}")
    return math.log(x)


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        raise DomainError(f"exp: result overflows a float for operand {x!r}") from None


def _pow(x: float, p: float) -> float:
    if x < 0.0 and p != int(p):
        raise DomainError(f"pow: negative base {x!r} to the non-integer power {p!r}")
    if x == 0.0 and p < 0.0:
        raise DomainError(f"pow: zero base to the negative power {p!r}")
    try:
        return x**p
    except OverflowError:
        raise DomainError(f"pow: result overflows a float for {x!r} ** {p!r}") from None


def _pow_vjp(g, out, x, p):
    """d/dx x**p = p x**(p-1); d/dp x**p = x**p log x (defined for x > 0, and 0 at x == 0 < p)."""
    if _float(x) > 0.0:
        dp = g * out * _log(x)
    elif _float(x) == 0.0 and _float(p) > 0.0:
        dp = 0.0 * g
    else:
        raise DomainError(f"pow: derivative with respect to the exponent needs a base > 0, got {_float(x)!r}")
    return (g * p * x ** (p - 1), dp)


def _powc_vjp(g, out, x, p):
    if p == 0.0:  # x ** 0 is constant, even at x = 0
        return (0.0 * g, 0.0)
    if _float(x) == 0.0 and p < 1.0:
        raise DomainError(f"pow: derivative of x ** {p!r} is infinite at x = 0")
    return (g * p * x ** (p - 1), 0.0)


def _sigmoid(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)  # x < 0: exp(x) cannot overflow
    return e / (1.0 + e)


def _dot(*inputs: float) -> float:
    n = len(inputs) // 2
    return sum(map(mul, inputs[:n], inputs[n:-1])) + inputs[-1]


def _dot_vjp(g, out, *inputs):
    """inputs are w_1..w_n, x_1..x_n, b: d/dw_i = x_i, d/dx_i = w_i, d/db = 1."""
    n = len(inputs) // 2
    return (*[g * x for x in inputs[n : 2 * n]], *[g * w for w in inputs[:n]], g)


RULES: dict[str, Rule] = {
    "+": Rule(lambda x, y: x + y, lambda g, out, x, y: (g, g)),
    "-": Rule(lambda x, y: x - y, lambda g, out, x, y: (g, -g)),
    "*": Rule(lambda x, y: x * y, lambda g, out, x, y: (g * y, g * x)),
    "/": Rule(_div, lambda g, out, x, y: (g / y, -g * out / y)),
    "neg": Rule(lambda x: -x, lambda g, out, x: (-g,)),
    "pow": Rule(_pow, _pow_vjp),  # Value exponent
    "powc": Rule(_pow, _powc_vjp),  # constant exponent
    "exp": Rule(_exp, lambda g, out, x: (g * out,)),
    "log": Rule(_log_forward, lambda g, out, x: (g / x,)),
    "tanh": Rule(math.tanh, lambda g, out, x: (g * (1.0 - out * out),)),
    "sigmoid": Rule(_sigmoid, lambda g, out, x: (g * out * (1.0 - out),)),
    "relu": Rule(lambda x: x if x > 0.0 else 0.0, lambda g, out, x: (g * float(_float(x) > 0.0),)),
    "abs": Rule(abs, lambda g, out, x: (g * float((_float(x) > 0.0) - (_float(x) < 0.0)),)),
    "dot": Rule(_dot, _dot_vjp),  # sum_i w_i x_i + b, one node for a neuron's weighted sum
}
