"""Generated code contains no user string: every identifier of the tape and of the compiled backward comes from
one naming function, labels only in comments, ops and odd constants through a namespace. Each case here was
silently wrong (or broke the generated source) before."""

import itertools
import keyword
import math
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgd import DomainError, RuleError, Value, define_op, gradients
from microgd.codegen import Namespace, comment
from microgd.tape import trace
from microgd.testing import expressions

HOSTILE = ["lambda", "if", "not", "None", "True", "captured", "_reduce", "µ", "μ", "x²", "x2", "½", "⑴", "", "0",
           "1x", "ｅｘｐ", "exp", "sigmoid", "x", "v0", "d_v0", "d", "nan", "inf", "print", "__import__", "a\nb", "a'b",
           "# x", "𝑥", "ﬁ", "fi", "x" * 10_000, "self", "g", "out", "_", "__class__", "match", "ℌ", "H"]


def eager(build, point, captured):
    leaves = [Value(x) for x in point]
    out = build(*leaves)
    return out.data, gradients(out, [*leaves, *captured])


def replay(tape, point, captured):
    for p in captured:
        p.grad = 0.0
    value, grads = tape.value_and_grad(*point)
    return value, [*grads, *(p.grad for p in captured)]


@given(expressions(max_depth=4, n_vars=3, max_nodes=8), st.lists(st.sampled_from(HOSTILE), min_size=12, max_size=12),
       st.lists(st.floats(-2, 2, allow_nan=False), min_size=3, max_size=3))
def test_random_graphs_with_hostile_labels_replay_on_the_tape_equal_to_eager(e, labels, other):
    captured = [Value(0.75, label=labels[0]), Value(-1.25, label=labels[1])]

    def f(x, y, z):
        out = e.build(x, y, z) * captured[0] + captured[1] * captured[1]
        for v, label in zip(out.topo(), itertools.cycle(labels[2:])):
            v.label = label
        return out

    tape = trace(f, *e.inputs)
    compile(tape.source, "tape", "exec")
    for point in (e.inputs, other):
        try:
            expected = eager(f, point, captured)
        except DomainError:
            with pytest.raises(DomainError):
                tape.value_and_grad(*point)
            continue
        assert replay(tape, point, captured) == (expected[0], expected[1]), tape.source


def test_labels_that_python_reads_as_one_name_stay_two_variables():
    micro, mu = Value(3.0, label="µ"), Value(4.0, label="μ")  # U+00B5 and U+03BC: one identifier after NFKC
    tape = trace(lambda x: micro * x + mu * mu, 1.0)
    assert tape(1.0) == 19.0 == (micro * 1.0 + mu * mu).data
    assert (micro.grad, mu.grad) == (1.0, 8.0)
    assert "'\\xb5'" in tape.source and "'\\u03bc'" in tape.source  # the labels, escaped, in a comment


@pytest.mark.parametrize("name", ["captured", "_reduce", "apply_rule", "run", "node", "p0", "f", "x", "inf"])
def test_ops_named_like_the_generated_codes_own_names(name, forget_defined_ops):
    twice = define_op(name, forward=lambda x: 2.0 * x, vjp=lambda g, out, x: (2.0 * g,))
    w = Value(1.5, label=name)

    def f(x):
        y = twice(x * w)
        y.label = name
        return y * x

    tape = trace(f, 3.0)
    assert tape.value_and_grad(3.0) == (27.0, [18.0]) and w.grad == 18.0
    x = Value(3.0)
    f(x).backward()
    assert x.grad == 18.0


@pytest.mark.parametrize("name", ["not", "lambda", "if", "None", "ｅｘｐ", "ｓｉｇｍｏｉｄ", "x²y", "a-b", "1x", ""])
def test_define_op_refuses_names_python_would_not_read_as_themselves(name, forget_defined_ops):
    with pytest.raises(ValueError, match=r"^define_op: ") as caught:
        define_op(name, forward=lambda x: -x, vjp=lambda g, out, x: (-g,))
    assert "\n" not in str(caught.value)


def test_an_nfkc_twin_of_an_op_defined_elsewhere_is_refused(forget_defined_ops):
    define_op("ﬁt", forward=lambda x: x, vjp=lambda g, out, x: (g,))
    with pytest.raises(ValueError, match=r"as Python reads it, 'fit' is 'ﬁt'"):
        define_op("fit", forward=lambda x: x, vjp=lambda g, out, x: (g,))


@pytest.mark.parametrize("constant", [math.nan, math.inf, -math.inf])
def test_a_non_finite_constant_in_a_rule_is_a_domain_error_everywhere(constant, forget_defined_ops):
    odd = define_op("odd_constant", forward=lambda x: 2.0 * x, vjp=lambda g, out, x: (g * constant,))
    message = r"backward of odd_constant\(1.0\): its contribution to input 1 is (nan|-?inf), not a finite number"
    with pytest.raises(DomainError, match=message):
        odd(Value(1.0)).backward()
    with pytest.raises(DomainError, match=message):
        trace(lambda x: odd(x), 1.0)
    with pytest.raises(DomainError, match=message):
        gradients(odd(Value(1.0)), [])


def test_a_negative_zero_in_a_rule_reaches_the_code_as_a_number(forget_defined_ops):
    """``-0.0 ** 2`` is ``-(0.0 ** 2)`` to Python: -0.0 is never printed."""
    odd = define_op("neg_zero_rule", forward=lambda x: x, vjp=lambda g, out, x: (g + (-0.0) ** 2.0 * x,))
    tape = trace(lambda x: odd(x) * 3.0, 2.0)
    assert "-0.0" not in tape.source
    x = Value(2.0)
    (odd(x) * 3.0).backward()
    assert tape.value_and_grad(2.0) == (6.0, [x.grad])


@pytest.mark.parametrize("returned", [(), ("g", "g")], ids=["no entries", "an extra entry"])
def test_a_rule_of_the_wrong_length_is_a_rule_error_on_the_tape_too(returned, forget_defined_ops):
    odd = define_op("wrong_length", forward=lambda x: x, vjp=lambda g, out, x: tuple(g for _ in returned))
    with pytest.raises(RuleError, match=rf"'wrong_length' returned {len(returned)} entries for 1 inputs"):
        trace(lambda x: odd(x) * 2.0, 1.0)


@given(st.text(max_size=50))
def test_the_naming_function_gives_identifiers_python_reads_as_themselves(wanted):
    names = Namespace(reserved={"captured"})
    given_names = [names.name(wanted, "v") for _ in range(3)]
    assert len(set(given_names)) == 3
    for name in given_names:
        assert name.isidentifier() and unicodedata.normalize("NFKC", name) == name
        assert not keyword.iskeyword(name) and not keyword.issoftkeyword(name) and name != "captured"
        assert name not in dir(__builtins__)


@given(st.text())
def test_a_comment_stays_on_its_line(label):
    shown = comment(label)
    assert "\n" not in shown and "\r" not in shown and shown.isascii()
    assert compile(f"x = 1  # {shown}\n", "c", "exec")
