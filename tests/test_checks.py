"""microgd.checks: each check's good inputs and what it returns, each bad input and the one line it gets."""

import math
import re
from fractions import Fraction

import numpy as np
import pytest

from microgd import checks
from microgd.checks import ArgumentError

# (call, result)
GOOD = [
    (lambda: checks.number(0.5, "x"), 0.5),
    (lambda: checks.number(3, "x"), 3.0),
    (lambda: checks.number(-1e308, "x"), -1e308),
    (lambda: checks.number(Fraction(1, 4), "x"), 0.25),
    (lambda: checks.number(np.float32(1.5), "x"), 1.5),
    (lambda: checks.number(np.int64(2), "x"), 2.0),
    (lambda: checks.number(1e-300, "SGD lr", above=0.0), 1e-300),
    (lambda: checks.number(0, "two_moons: noise", at_least=0), 0.0),
    (lambda: checks.number(0.0, "SGD momentum", at_least=0.0, below=1.0), 0.0),
    (lambda: checks.number(1, "target", at_least=0, at_most=1), 1.0),
    (lambda: checks.number(-5.0, "x", below=0), -5.0),
    (lambda: checks.number(2.0, "x", at_most=2.0), 2.0),
    (lambda: checks.whole(0, "explain: inline", 0), 0),
    (lambda: checks.whole(np.int64(7), "fit: epochs", 0), 7),
    (lambda: checks.whole(-3, "offset"), -3),
    (lambda: checks.whole(10**400, "n", 1), 10**400),
    (lambda: checks.seed(None, "fit: seed"), None),
    (lambda: checks.seed(-1, "fit: seed"), -1),
]

# (call, message): the whole message, one line
BAD = [
    (lambda: checks.number("0.5", "SGD lr"), "SGD lr must be a finite number, got '0.5'"),
    (lambda: checks.number(None, "SGD lr"), "SGD lr must be a finite number, got None"),
    (lambda: checks.number(True, "run_tutorial2: lr", above=0),
     "run_tutorial2: lr must be a finite number > 0, got True"),
    (lambda: checks.number(np.bool_(True), "x"), "x must be a finite number, got np.True_"),
    (lambda: checks.number(1 + 0j, "x"), "x must be a finite number, got (1+0j)"),
    (lambda: checks.number(math.nan, "fit: X[0][0]"), "fit: X[0][0] must be a finite number, got nan"),
    (lambda: checks.number(-math.inf, "x"), "x must be a finite number, got -inf"),
    (lambda: checks.number(10**400, "data_max_[1]"),
     "data_max_[1] must be a finite number, got an integer of 401 digits"),
    (lambda: checks.number(-10**5000, "x"), "x must be a finite number, got a negative integer of 5001 digits"),
    (lambda: checks.number(0.0, "SGD lr", above=0.0), "SGD lr must be a finite number > 0.0, got 0.0"),
    (lambda: checks.number(-0.1, "two_moons: noise", at_least=0),
     "two_moons: noise must be a finite number >= 0, got -0.1"),
    (lambda: checks.number(1.0, "x", below=1), "x must be a finite number < 1, got 1.0"),
    (lambda: checks.number(3, "x", at_most=2), "x must be a finite number <= 2, got 3"),
    (lambda: checks.number(1.0, "SGD momentum", at_least=0.0, below=1.0),
     "SGD momentum must be a finite number in [0.0, 1.0), got 1.0"),
    (lambda: checks.number(0.0, "Adam betas[0]", above=0.0, at_most=1.0),
     "Adam betas[0] must be a finite number in (0.0, 1.0], got 0.0"),
    (lambda: checks.number(1.5, "target", at_least=0, at_most=1), "target must be a finite number in [0, 1], got 1.5"),
    (lambda: checks.number(1.0, "gradcheck: rtol", at_least=0, below=1, note="1 would accept 0 for any value"),
     "gradcheck: rtol must be a finite number in [0, 1) (1 would accept 0 for any value), got 1.0"),
    (lambda: checks.whole(-1, "explain: inline", 0), "explain: inline must be a whole number >= 0, got -1"),
    (lambda: checks.whole(2.0, "fit: epochs", 0), "fit: epochs must be a whole number >= 0, got 2.0"),
    (lambda: checks.whole(True, "MLP nin", 1), "MLP nin must be a whole number >= 1, got True"),
    (lambda: checks.whole("3", "MLP nin", 1), "MLP nin must be a whole number >= 1, got '3'"),
    (lambda: checks.whole(None, "n"), "n must be a whole number, got None"),
    (lambda: checks.whole(-10**400, "n", 0), "n must be a whole number >= 0, got a negative integer of 401 digits"),
    (lambda: checks.seed(1.5, "fit: seed"), "fit: seed must be a whole number or None, got 1.5"),
    (lambda: checks.seed(False, "seed"), "seed must be a whole number or None, got False"),
]


@pytest.mark.parametrize("call, result", GOOD)
def test_a_good_input_comes_back_as_a_plain_float_or_int(call, result):
    got = call()
    assert got == result and type(got) is type(result)


@pytest.mark.parametrize("call, message", BAD)
def test_a_bad_input_is_one_error_naming_the_option_and_the_value(call, message):
    with pytest.raises(ArgumentError, match=f"^{re.escape(message)}$"):
        call()


def test_the_error_is_a_value_error_and_a_type_error():
    """Callers that caught either before the checks were shared still catch it."""
    for kind in (ValueError, TypeError):
        with pytest.raises(kind):
            checks.number("x", "x")


@pytest.mark.parametrize("x, real, whole", [
    (1, True, True), (1.0, True, False), (np.int32(1), True, True), (np.float64(1.0), True, False),
    (Fraction(1, 2), True, False), (True, False, False), (np.bool_(False), False, False), ("1", False, False),
    (None, False, False), (1j, False, False), (np.array(1.0), False, False),
])
def test_is_real_and_is_whole(x, real, whole):
    assert (checks.is_real(x), checks.is_whole(x)) == (real, whole)
