"""gradcheck and check_formula: every op against finite differences, broken rules caught, tutorial formulas checked."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgd import DomainError, Value, check, gradients, rules
from microgd.app.formula import compile as compile_formula
from microgd.check import (
    FormulaMismatch,
    GradcheckError,
    ToleranceError,
    check_formula,
    gradcheck,
    numeric_gradient,
)
from microgd.testing import expressions


def sig(s):
    return 1 / (1 + math.exp(-s))


def away_from_zero(lo, hi):
    return st.floats(lo, hi).filter(lambda x: abs(x) > 1e-3)


# -- gradcheck ---------------------------------------------------------------------------------

def one_op(op):
    """A function applying ``op`` to Values drawn from its registry domain, constants at their places."""
    def f(*xs):
        it = iter(xs)
        return op(*[2.0 if i in op.constants else next(it) for i in range(len(op.domain))])
    return f


def draw_inputs(op):
    """One strategy per drawn input: its registry interval, clipped to [-3, 3], away from the kinks."""
    strategies = []
    for i, (lo, hi) in enumerate(op.domain):
        if i not in op.constants:
            lo, hi = max(lo, -3.0), min(hi, 3.0 if hi > 0.5 else hi)
            strategies.append(st.floats(lo, hi).filter(lambda x: all(abs(x - k) > 1e-3 for k in op.kinks)))
    return strategies


@pytest.mark.parametrize("name", list(rules.OPS))
def test_gradcheck_passes_on_every_op_first_and_second_order(name):
    op = rules.OPS[name]
    f = one_op(op)

    @settings(max_examples=25)
    @given(st.tuples(*draw_inputs(op)))
    def check(point):
        assert gradcheck(f, *point) is True
        assert gradcheck(f, *point, order=2) is True

    check()


@given(expressions(max_depth=4, n_vars=3, max_nodes=8))
def test_gradcheck_passes_on_random_expressions(e):
    assert gradcheck(e.build, *e.inputs, order=2) is True


def wrong_tanh(g, out, x):
    return (g * (1.0 - out),)  # forgot to square


def test_a_broken_rule_fails_with_a_readable_table(monkeypatch):
    f = lambda w, x: (w * x).tanh() + w  # noqa: E731
    with monkeypatch.context() as patch:
        patch.setattr(rules.tanh, "vjp", wrong_tanh)
        with pytest.raises(GradcheckError) as caught:
            gradcheck(f, 0.5, -1.5)
    assert gradcheck(f, 0.5, -1.5, order=2)  # the real rule is back

    message = str(caught.value)
    head, *table = message.splitlines()
    assert head.startswith("gradcheck of f at w=0.5, x=-1.5: 2 of 2 derivatives disagree")
    header = table[0].split()
    assert header == ["derivative", "engine", "numeric", "difference"]
    columns = [table[0].index(word) for word in header]
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == {"d/dw", "d/dx"}
    for line in rows.values():  # aligned: every number starts under its heading
        assert all(line[c - 1] == " " and line[c] != " " for c in columns[1:])
        assert line.endswith("<- wrong")
    t = math.tanh(-0.75)
    engine, numeric, difference = map(float, rows["d/dw"].split()[1:4])
    assert engine == pytest.approx(-1.5 * (1 - t) + 1, rel=1e-9)  # what the broken rule gives
    assert numeric == pytest.approx(-1.5 * (1 - t * t) + 1, rel=1e-6)  # the truth
    assert difference == pytest.approx(abs(engine - numeric), rel=1e-2)


def test_order_two_catches_a_rule_whose_first_derivative_is_right(monkeypatch):
    """A tanh rule that reads out's number: right on floats, but on Values it treats tanh' as a constant."""
    number = lambda v: v.data if isinstance(v, Value) else v  # noqa: E731
    monkeypatch.setattr(rules.tanh, "vjp", lambda g, out, x: (g * (1.0 - number(out) ** 2),))
    assert gradcheck(lambda x: x.tanh(), 0.7)
    with pytest.raises(GradcheckError, match=r"1 of 2 derivatives") as caught:
        gradcheck(lambda x: x.tanh(), 0.7, order=2)
    rows = {line.split()[0]: line for line in str(caught.value).splitlines()[2:]}
    assert not rows["d/dx"].endswith("<- wrong") and rows["d2/dx2"].endswith("<- wrong")
    t = math.tanh(0.7)
    assert float(rows["d2/dx2"].split()[1]) == 0.0
    assert float(rows["d2/dx2"].split()[2]) == pytest.approx(-2 * t * (1 - t * t), rel=1e-6)


def test_gradcheck_order_two_lists_every_mixed_partial(monkeypatch):
    f = lambda a, b, c: a * b * c  # noqa: E731
    assert gradcheck(f, 1.0, 2.0, 3.0, order=2)
    monkeypatch.setattr(check, "_close", lambda *args: False)  # every row fails
    with pytest.raises(GradcheckError) as caught:
        gradcheck(f, 1.0, 2.0, 3.0, order=2)
    labels = [line.split()[0] for line in str(caught.value).splitlines()[2:]]
    assert labels == ["d/da", "d/db", "d/dc", "d2/da2", "d2/da", "d2/da", "d2/db", "d2/db2", "d2/db",
                      "d2/dc", "d2/dc", "d2/dc2"]
    assert "d2/da db" in str(caught.value) and "d2/dc db" in str(caught.value)


def test_unnamed_inputs_are_called_x0_x1(monkeypatch):
    monkeypatch.setattr(check, "_close", lambda *args: False)
    with pytest.raises(GradcheckError, match=r"at x0=1.0, x1=2.0") as caught:
        gradcheck(lambda *v: v[0] * v[1], 1.0, 2.0)
    assert "d/dx1" in str(caught.value)


def test_f_returning_a_float_is_a_clear_type_error():
    with pytest.raises(TypeError, match=r"f must return a Value .* got float .*math"):
        gradcheck(lambda x: math.tanh(x.data), 0.5)


def test_domain_errors_propagate_with_their_message():
    with pytest.raises(DomainError, match=r"log: operand must be > 0, got -"):
        gradcheck(lambda x: x.log(), 0.0)
    with pytest.raises(DomainError, match=r"backward of powc\(0\.0, 0\.5\)"):
        gradcheck(lambda x: (x * x) ** 0.5, 0.0)


RTOL = (r"rtol must be a finite number in \[0, 0\.5\) \(from 0\.5 up it accepts twice the value: rtol=r accepts "
        r"anything within a factor 1/\(1 - r\) of it\)")


@pytest.mark.parametrize("inputs, kwargs, error, pattern", [
    (("a",), {}, TypeError, r"gradcheck: input 0 must be a finite number, got 'a'"),
    ((True,), {}, TypeError, r"gradcheck: input 0 must be a finite number, got True"),
    ((1.0, float("nan")), {}, ValueError, r"gradcheck: input 1 must be a finite number, got nan"),
    ((), {}, TypeError, r"at least one input"),
    ((1.0,), {"order": 3}, ValueError, r"order must be 1 or 2, got 3"),
    ((1.0,), {"eps": 0.0}, ValueError, r"gradcheck: eps must be a finite number > 0, got 0.0"),
    ((1.0,), {"eps": -1e-6}, ValueError, r"gradcheck: eps must be a finite number > 0, got -1e-06"),
    ((1.0,), {"eps": math.nan}, ValueError, r"gradcheck: eps must be a finite number > 0, got nan"),
    ((1.0,), {"eps": math.inf}, ValueError, r"gradcheck: eps must be a finite number > 0, got inf"),
    ((1e300,), {"eps": 1e-300}, ValueError, r"eps=1e-300 is too small to move input 0 \(1e\+300\)"),
    ((1.0,), {"atol": -1.0}, ValueError, r"gradcheck: atol must be a finite number >= 0, got -1.0"),
    ((1.0,), {"rtol": 1.0}, ValueError, r"gradcheck: " + RTOL + ", got 1.0"),
    ((1.0,), {"rtol": 0.5}, ValueError, r"gradcheck: " + RTOL + ", got 0.5"),
    ((1.0,), {"rtol": math.nan}, ValueError, r"gradcheck: " + RTOL + ", got nan"),
])
def test_gradcheck_rejects_bad_arguments(inputs, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        gradcheck(lambda x: x, *inputs, **kwargs)


def test_gradcheck_takes_values_and_ints_as_inputs():
    assert gradcheck(lambda x, y: x * y.exp(), Value(2.0), 1)


def test_numeric_gradient_of_a_float_function():
    assert numeric_gradient(lambda x, y: x * x * y, 3.0, 2.0) == pytest.approx([12.0, 9.0], rel=1e-8)
    # the step scales with |x|: a fixed 1e-6 would vanish next to 1e12 (its spacing is 1.2e-4)
    assert numeric_gradient(lambda x: x * x, 1e12) == pytest.approx([2e12], rel=1e-8)


# -- check_formula -----------------------------------------------------------------------------

def error(w, x, t):
    """Tutorial 1: one sigmoid neuron, squared error."""
    return ((w * x).sigmoid() - t) ** 2


def tutorial1_formula(w, x, t):
    """Tutorial 1's code: g2 = activation_sop_deriv(predicted), the sigmoid's slope at the wrong place."""
    p = sig(w * x)
    return x * sig(p) * (1 - sig(p)) * 2 * (p - t)


def corrected_tutorial1_formula(w, x, t):
    p = sig(w * x)
    return x * p * (1 - p) * 2 * (p - t)


def squared(p, t):
    return (p - t) ** 2


PT = {"p": (-3.0, 3.0), "t": (0.0, 1.0)}


def two_outputs(w, x, v1, v2, t1, t2):
    """One hidden sigmoid neuron feeding two sigmoid outputs, loss summed over both."""
    h = (w * x).sigmoid()
    return ((v1 * h).sigmoid() - t1) ** 2 / 2 + ((v2 * h).sigmoid() - t2) ** 2 / 2


def hidden_delta_one_output(w, x, v1, v2, t1, t2):
    """delta_h = h(1-h) w_j delta_j for a single j: the next layer's deltas are not summed."""
    h, y1 = sig(w * x), sig(v1 * sig(w * x))
    return h * (1 - h) * v1 * (y1 - t1) * y1 * (1 - y1) * x


def hidden_delta_summed(w, x, v1, v2, t1, t2):
    h = sig(w * x)
    deltas = [(y - t) * y * (1 - y) * v for v, t in ((v1, t1), (v2, t2)) for y in [sig(v * h)]]
    return h * (1 - h) * sum(deltas) * x


NET = {"w": (-3.0, 3.0), "x": (-3.0, 3.0), "v1": (-3.0, 3.0), "v2": (-3.0, 3.0), "t1": (0.0, 1.0), "t2": (0.0, 1.0)}


def recompute(f, formula, wrt, point):
    leaves = {k: Value(v) for k, v in point.items()}
    return gradients(f(**leaves), [leaves[wrt]])[0], formula(**point)


@pytest.mark.parametrize("f, wrong, right, wrt, domain, simplest", [
    (error, tutorial1_formula, corrected_tutorial1_formula, "w", None, {"w": 0.0, "x": 1.0, "t": 0.0}),
    (squared, lambda p, t: p - t, lambda p, t: 2 * (p - t), "p", PT, {"p": 0.0, "t": 1.0}),
    (two_outputs, hidden_delta_one_output, hidden_delta_summed, "w", NET, {"v1": 0.0, "t1": 0.0, "v2": 1.0}),
], ids=["tutorial1-sigmoid-slope", "dropped-factor-2", "missing-sum-over-deltas"])
def test_check_formula_catches_the_wrong_formula_with_a_shrunk_counterexample(f, wrong, right, wrt, domain,
                                                                             simplest):
    with pytest.raises(FormulaMismatch) as caught:
        check_formula(f, wrong, wrt=wrt, domain=domain)
    found = caught.value
    message = str(found)
    assert message.startswith(f"check_formula: formula for d {f.__name__}/d {wrt} disagrees with the engine")
    assert "shrunk by hypothesis" in message
    for name, value in simplest.items():  # what does not matter, or matters least, shrinks to 0 or 1
        assert found.point[name] == value
        assert f"{name} = {value!r}\n" in message
    assert all(v in (-1.0, 0.0, 1.0) for v in found.point.values()), found.point
    engine, formula = recompute(f, wrong, wrt, found.point)  # the reported point really fails
    assert (engine, formula) == (found.engine_value, found.formula_value)
    assert abs(engine - formula) > 1e-3
    assert f"engine:      {engine!r}\n" in message and f"formula:     {formula!r}\n" in message
    assert "the engine's derivation there (microgd.explain)" in message  # beside the user's, factor by factor
    closed = re.search(r"closed form: (.*)$", message, re.M).group(1)  # the engine's formula, evaluated alone
    assert compile_formula(closed)(**found.point).data == pytest.approx(engine, rel=1e-12, abs=1e-15)

    report = check_formula(f, right, wrt=wrt, domain=domain)
    assert report.examples == 200 and report.skipped == 0
    assert report.max_abs_diff < 1e-12
    assert str(report).startswith(f"formula for d {f.__name__}/d {wrt} agrees with the engine at 200 points")


def test_check_formula_is_deterministic_whatever_the_profile():
    def message():
        with pytest.raises(FormulaMismatch) as caught:
            check_formula(two_outputs, hidden_delta_one_output, domain=NET, max_examples=50)
        return str(caught.value)

    first = message()
    settings.register_profile("chaotic", derandomize=False, max_examples=2, database=None)
    previous = settings.default
    settings.load_profile("chaotic")
    try:
        assert message() == first
    finally:
        settings.load_profile("ci" if previous.derandomize else "default")
    assert settings.default.derandomize == previous.derandomize


def test_points_outside_f_domain_are_skipped_and_counted():
    report = check_formula(lambda w, x: w.log() * x, lambda w, x: x / w, domain={"w": (-1.0, 2.0), "x": (-2.0, 2.0)},
                           max_examples=50)
    assert report.skipped > 0 and report.examples == 50 and report.asked == 50
    assert f"{report.skipped} points drawn where f or its derivative is not defined were skipped" in str(report)
    assert report.drawn_from["w"] == ((5e-324, 2.0),)  # d/dw = x/w: 1/w overflows below the smallest float
    assert report.drawn_from["x"] == ((-2.0, 2.0),)


def test_a_domain_where_f_is_nowhere_defined_is_a_clear_error():
    with pytest.raises(ValueError, match=r"f or its derivative by w is not defined \(DomainError\) at any point "
                                         r"tried in the domain w in \[-2, 0\]; narrow the domain"):
        check_formula(lambda w: w.log(), lambda w: 1 / w, domain={"w": (-2.0, 0.0)}, max_examples=20)


# where f is defined: the search draws there, and compares as many distinct points as asked

def counting(formula):
    """``formula``, recording every point it is called at."""
    calls = []

    def counted(**point):
        calls.append(tuple(point.values()))
        return formula(**point)
    return counted, calls


SMALL_DOMAINS = [  # (text of f, its derivative by x, the domain, where f and its derivative are defined)
    ("log(x - 2.99)", "1/(x - 2.99)", {"x": (-3, 3)}, {"x": [(2.99, 3)]}),
    ("log(x - 2.999999)", "1/(x - 2.999999)", {"x": (-3, 3)}, {"x": [(2.999999, 3)]}),
    ("log(x*x - 8.9)", "2*x/(x*x - 8.9)", {"x": (-3, 3)}, {"x": [(-3, -8.9**0.5), (8.9**0.5, 3)]}),
    ("log(2.5 - x*x) + log(x - 1.5)", "-2*x/(2.5 - x*x) + 1/(x - 1.5)", {"x": (-3, 3)}, {"x": [(1.5, 2.5**0.5)]}),
    ("sqrt(x - 2.9)", "0.5/sqrt(x - 2.9)", {"x": (-3, 3)}, {"x": [(2.9, 3)]}),
    ("log(sin(x))", "cos(x)/sin(x)", {"x": (-10, 10)},
     {"x": [(-10, -3 * math.pi), (-2 * math.pi, -math.pi), (0, math.pi), (2 * math.pi, 3 * math.pi)]}),
    ("log(x - w - 5.9)", "1/(x - w - 5.9)", {"x": (-3, 3), "w": (-3, 3)}, {"x": [(2.9, 3)], "w": [(-3, -2.9)]}),
    ("sqrt(1 - x*x - w*w)", "-x/sqrt(1 - x*x - w*w)", {"x": (-30, 30), "w": (-30, 30)},
     {"x": [(-1, 1)], "w": [(-1, 1)]}),
    ("log(x - w + y - z - 11.5)", "1/(x - w + y - z - 11.5)",
     {"x": (-3, 3), "w": (-3, 3), "y": (-3, 3), "z": (-3, 3)},
     {"x": [(2.5, 3)], "w": [(-3, -2.5)], "y": [(2.5, 3)], "z": [(-3, -2.5)]}),
]


@pytest.mark.parametrize("text, derivative, domain, defined", SMALL_DOMAINS, ids=[row[0] for row in SMALL_DOMAINS])
def test_the_search_draws_where_f_is_defined_and_compares_the_points_asked(text, derivative, domain, defined):
    """log(x) --formula 1/abs(x) compared points where f is defined and skipped the rest: on a small part of the
    domain (log(x - 2.99) on [-3, 3]) hypothesis gave up after 2 points. The domain is now found first."""
    f, by_hand = compile_formula(text), compile_formula(derivative)
    formula, calls = counting(lambda **p: by_hand(**p).data)
    report = check_formula(f, formula, wrt="x", domain=domain)
    assert report.examples == report.asked == 200 and str(report).startswith(
        "formula for d f/d x agrees with the engine at 200 points; drawn mostly where f and its derivative are "
        "defined: ")
    assert len(calls) == len(set(calls)) == 200  # distinct points, every one compared
    assert report.skipped < (200 if len(domain) < 4 else 2000)  # most drawn where f is defined (in 4-d: 1 in 24)
    for name, intervals in defined.items():
        found = report.drawn_from[name]
        assert len(found) == len(intervals), found
        for (lo, hi), (want_lo, want_hi) in zip(found, intervals):
            assert want_lo - 1e-9 <= lo <= want_lo + 0.01 and want_hi - 0.01 <= hi <= want_hi + 1e-9, found


def test_a_domain_found_exactly_in_one_variable():
    report = check_formula(compile_formula("log(x - 2.99)"), lambda x: 1 / (x - 2.99), wrt="x", domain={"x": (-3, 3)})
    ((lo, hi),) = report.drawn_from["x"]
    assert hi == 3.0 and lo - 2.99 > 0 and math.nextafter(lo, 0) - 2.99 <= 0  # the first float where log is defined
    assert "x in [2.99, 3]" in str(report)


def test_where_f_is_defined_everywhere_the_whole_domain_is_searched():
    report = check_formula(error, corrected_tutorial1_formula)
    assert report.drawn_from == {} and report.skipped == 0 and report.examples == 200
    assert str(report).startswith("formula for d error/d w agrees with the engine at 200 points; largest difference")


def test_a_domain_of_a_few_points_is_reported_as_such_never_as_the_count_asked():
    f = compile_formula("log(x - 2.9999999999999996)")  # defined at x = 3.0 alone
    formula, calls = counting(lambda x: 1 / (x - 2.9999999999999996))
    report = check_formula(f, formula, wrt="x", domain={"x": (-3, 3)})
    assert (report.examples, report.asked, calls) == (1, 200, [(3.0,)])
    text = str(report)
    assert text.startswith("formula for d f/d x agrees with the engine at 1 point, fewer than the 200 asked: f and "
                           "its derivative were found defined only in x in [3, 3], which holds 1 point; ")
    assert "200 points" not in text

    single = check_formula(lambda x: x * x, lambda x: 2 * x, wrt="x", domain={"x": (1.0, 1.0)})
    assert single.examples == 1 and str(single).startswith(
        "formula for d f/d x agrees with the engine at 1 point, fewer than the 200 asked: the domain (x in [1, 1]) "
        "holds only 1 point; largest difference 0")
    few = check_formula(lambda x: x * x, lambda x: 2 * x, wrt="x", domain={"x": (1.0, 1.0000000000000009)})
    assert few.examples == 5 and "the domain (x in [1, 1.000000000000001]) holds only 5 points" in str(few)


def test_a_wrong_formula_is_still_caught_where_f_is_defined_and_shrunk_there():
    f = compile_formula("log(x - 2.99)")
    with pytest.raises(FormulaMismatch) as caught:
        check_formula(f, lambda x: 1 / x, wrt="x", domain={"x": (-3, 3)})
    assert 2.99 < caught.value.point["x"] <= 3.0
    assert caught.value.engine_value == pytest.approx(1 / (caught.value.point["x"] - 2.99))


# nothing on disk: hypothesis' example database and caches stay out of the user's folder

def test_check_formula_writes_nothing_where_hypothesis_would_store(monkeypatch, tmp_path):
    from hypothesis import configuration

    home = tmp_path / "home" / ".hypothesis"
    monkeypatch.setattr(configuration, "__hypothesis_home_directory", home, raising=False)
    during = []

    def formula(x):
        during.append(configuration.storage_directory("constants", intent_to_write=False).path)
        return 1 / (x - 2.99)

    check_formula(compile_formula("log(x - 2.99)"), formula, wrt="x", domain={"x": (-3, 3)}, max_examples=20)
    with pytest.raises(FormulaMismatch):
        check_formula(compile_formula("log(x - 2.99)"), lambda x: 1 / x, wrt="x", domain={"x": (-3, 3)})
    assert list(tmp_path.iterdir()) == []  # hypothesis' home never made
    folder = during[0].parent
    assert home not in during[0].parents and not folder.exists()  # a temporary folder, removed after
    assert configuration.storage_directory("x", intent_to_write=False).path == home / "x"  # hypothesis' own, back


@pytest.mark.parametrize("formula, status", [("1/abs(x)", 0), ("1/x + 1", 1)])
def test_the_check_command_leaves_no_hypothesis_folder(tmp_path, formula, status):
    env = {name: value for name, value in os.environ.items() if not name.startswith("HYPOTHESIS")}
    run = subprocess.run([sys.executable, "-m", "microgd", "check", "log(x)", "--formula", formula],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == status, run.stderr
    assert list(tmp_path.iterdir()) == []
    if status == 0:
        assert "agrees with the engine at 200 points; drawn mostly where f and its derivative are defined: " \
               "x in [5.56268e-309, 3]" in run.stdout


def test_without_the_redirection_hypothesis_would_write_a_folder_here(tmp_path):
    """What the test above guards against: a plain @given run, in a fresh process, writes ./.hypothesis even with
    database=None (the constants it reads from local source files). If this ever stops, the redirection in
    check_formula can go."""
    script = ("from hypothesis import given, settings, strategies as st\n"
              "import microgd\n"
              "@settings(database=None, max_examples=50)\n"
              "@given(st.floats(0, 1))\n"
              "def run(x):\n"
              "    pass\n"
              "run()\n")
    (tmp_path / "src").mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("HYPOTHESIS")}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "src", env=env, check=True, timeout=120)
    written = (tmp_path / "src" / ".hypothesis").exists()
    if not written:
        pytest.skip("this hypothesis version writes no cache folder for a run with database=None")


def test_a_formula_that_raises_is_reported_at_its_shrunk_point():
    with pytest.raises(FormulaMismatch) as caught:
        check_formula(error, lambda w, x, t: 1 / x, max_examples=50)
    message = str(caught.value)
    assert message.startswith("check_formula: formula for d error/d w raised ZeroDivisionError")
    assert "  x = 0.0\n" in message and "engine:" in message
    assert caught.value.formula_value is None and isinstance(caught.value.__cause__, ZeroDivisionError)


def test_infinite_values_are_reported_not_passed():
    with pytest.raises(FormulaMismatch, match=r"engine: +[0-9.e+]+\n  formula: +inf\n.*not finite"):
        check_formula(lambda w, x: (w * x).log(), lambda w, x: 1e308 / w * 10,
                      domain={"w": (0.0, 1.0), "x": (0.0, 1.0)})


def test_points_where_the_engines_gradient_overflows_are_skipped_as_outside_the_domain():
    report = check_formula(lambda w, x: (w * x).log(), lambda w, x: 1 / w, domain={"w": (0.0, 1.0), "x": (0.0, 1.0)})
    assert report.examples > 0


@pytest.mark.parametrize("kwargs, pattern", [
    ({"domain": {"w": (-3, 3), "x": (-3, 3)}}, r"no interval for 't', an argument of f"),
    ({"wrt": "b"}, r"wrt='b' is not in the domain \(domain names: w, x, t\)"),
    ({"domain": {"w": (-3, 3), "x": (-3, 3), "t": (0, 1), "z": (0, 1)}}, r"f takes no argument 'z'"),
    ({"domain": {"w": (3, -3), "x": (-3, 3), "t": (0, 1)}}, r"domain\['w'\] = \(3, -3\) has low > high"),
    ({"domain": {"w": ("a", 3), "x": (-3, 3), "t": (0, 1)}}, r"domain\['w'\] must be a \(low, high\) pair"),
    ({"domain": {"w": (-3, 3), "x": (-3, math.inf), "t": (0, 1)}}, r"domain\['x'\] must be a \(low, high\) pair"),
    ({"max_examples": 0}, r"check_formula: max_examples must be a whole number >= 1, got 0"),
    ({"max_examples": True}, r"check_formula: max_examples must be a whole number >= 1, got True"),
    ({"rtol": -1.0}, r"check_formula: " + RTOL + ", got -1.0"),
    ({"rtol": 1.0}, r"check_formula: " + RTOL + ", got 1.0"),
    ({"rtol": 0.99}, r"check_formula: " + RTOL + ", got 0.99"),
    ({"rtol": 0.5}, r"check_formula: " + RTOL + ", got 0.5"),
    ({"atol": -1e-9}, r"check_formula: atol must be a finite number >= 0, got -1e-09"),
    ({"atol": math.inf}, r"check_formula: atol must be a finite number >= 0, got inf"),
    ({"rtol": math.nan}, r"check_formula: " + RTOL + ", got nan"),
])
def test_check_formula_rejects_bad_arguments_by_name(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_formula(error, corrected_tutorial1_formula, **kwargs)


def test_a_tolerance_that_would_pass_the_formula_0_everywhere_is_an_error_not_a_pass():
    """--atol 1e300 passed a wrong formula: a pass must mean the check could have failed."""
    wrong = lambda w, x, t: 2 * corrected_tutorial1_formula(w, x, t)  # noqa: E731
    with pytest.raises(ToleranceError, match=r"atol=1e\+300 \(with rtol=1e-07\) would accept the formula 0 at every "
                                             r"point compared, where \|d error/d w\| is at most 0\.\d+") as caught:
        check_formula(error, wrong, atol=1e300, max_examples=50)
    assert 0 < caught.value.limit < caught.value.largest < 1  # |2 (p - t) p (1 - p) x| stays below 1.5 / 4
    assert check_formula(error, corrected_tutorial1_formula, atol=0.5 * caught.value.limit, max_examples=50)
    flat = check_formula(lambda w: w * 0.0, lambda w: 0.0, domain={"w": (0, 1)}, atol=1.0, max_examples=10)
    assert flat.examples == 10  # a derivative 0 everywhere gives no scale: any atol is allowed


def test_a_relative_tolerance_must_tell_a_formula_from_twice_its_value():
    """--rtol 0.99 passed a formula 100 times the derivative: |a - b| <= rtol * max(|a|, |b|) holds for any b
    within a factor 1/(1 - rtol) of a, so from rtol 0.5 up twice the derivative passes. Below it, it fails."""
    for factor in (2.0, 0.5):
        scaled = lambda w, x, t, k=factor: k * corrected_tutorial1_formula(w, x, t)  # noqa: E731
        with pytest.raises(FormulaMismatch):
            check_formula(error, scaled, rtol=0.49, max_examples=20)
    assert check_formula(error, corrected_tutorial1_formula, rtol=0.49, max_examples=20).examples == 20

def test_the_formula_must_take_every_domain_name():
    with pytest.raises(ValueError, match=r"no interval for 'b', an argument of formula"):
        check_formula(error, lambda w, x, t, b: 0.0)
    with pytest.raises(ValueError, match=r"formula takes no argument 't'"):
        check_formula(error, lambda w, x: 0.0)
    assert check_formula(error, lambda **p: corrected_tutorial1_formula(**p), max_examples=20).examples == 20


def test_check_formula_needs_f_to_return_a_value():
    with pytest.raises(TypeError, match=r"check_formula: f must return a Value"):
        check_formula(lambda w: w.data * 2, lambda w: 2.0, domain={"w": (0, 1)}, max_examples=5)


# -- documentation and the demo ----------------------------------------------------------------


def test_the_demo_catches_tutorial1_and_passes_the_correction():
    demo = Path(__file__).parent.parent / "demos" / "check_tutorial1_formula.py"
    env = {**os.environ, "MICROGD_DEMO_FAST": "1"}
    run = subprocess.run([sys.executable, str(demo)], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "w = 0.0\n  x = 1.0\n  t = 0.0\n  engine:      0.25\n" in run.stdout
    assert "agrees with the engine at 20 points" in run.stdout
