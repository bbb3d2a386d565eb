"""microgd.app.formula: the allow-list, error messages that name token and column, values and gradients."""

import ast
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgd import DomainError, Value, rules
from microgd.app.formula import Formula, FormulaError, compile, functions, parse
from microgd.rules import OPS
from microgd.symbolic import Symbol, evaluate, printed


def grads(out: Value) -> dict:
    out.backward()
    return {v.label: v.grad for v in out.topo() if not v.parents and not v.is_constant}


# -- values and gradients ---------------------------------------------------------------------

def test_neuron_formula_matches_the_engine_by_hand():
    out = parse("sigmoid(w*x + b)", {"w": 0.5, "x": 1.0, "b": 0.0})
    w, x, b = Value(0.5), Value(1.0), Value(0.0)
    ref = (w * x + b).sigmoid()
    ref.backward()
    assert out.data == ref.data
    assert grads(out) == {"w": w.grad, "x": x.grad, "b": b.grad}
    s = 1 / (1 + math.exp(-0.5))  # closed form: d/dw sigmoid(w x + b) = s (1 - s) x, with x = 1
    assert w.grad == pytest.approx(s * (1 - s), rel=1e-15)


def test_each_variable_is_one_leaf_labelled_with_its_name():
    out = parse("x * x + y", {"x": 3.0, "y": 1.0})
    leaves = [v for v in out.topo() if not v.parents and not v.is_constant]
    assert sorted(v.label for v in leaves) == ["x", "y"]
    assert grads(out) == {"x": 6.0, "y": 1.0}  # both uses of x summed


PRECEDENCE = [  # (text, the same with explicit Value arithmetic)
    ("-x**2", lambda x, y, z: -(x ** 2)),
    ("x - y - z", lambda x, y, z: (x - y) - z),
    ("x / y / z", lambda x, y, z: (x / y) / z),
    ("x ** y ** z", lambda x, y, z: x ** (y ** z)),
    ("2*x + 1", lambda x, y, z: 2 * x + 1),
    ("x + y * z", lambda x, y, z: x + (y * z)),
    ("(x + y) * z", lambda x, y, z: (x + y) * z),
    ("+x - -y", lambda x, y, z: x - (-y)),
    ("1 / x", lambda x, y, z: 1 / x),
    ("2 ** x", lambda x, y, z: 2 ** x),
    ("(y - z)**2 / 2", lambda x, y, z: (y - z) ** 2 / 2),
    ("tanh(x) * exp(-y) + log(z) - relu(x - y) + abs(y - z) * sigmoid(z)",
     lambda x, y, z: x.tanh() * (-y).exp() + z.log() - (x - y).relu() + (y - z).abs() * z.sigmoid()),
]


@pytest.mark.parametrize("text, direct", PRECEDENCE, ids=[t for t, _ in PRECEDENCE])
def test_precedence_and_grads_match_value_arithmetic(text, direct):
    point = {"x": 1.5, "y": 0.7, "z": 1.2}
    out = parse(text, point)
    leaves = {name: Value(v, label=name) for name, v in point.items()}
    ref = direct(**leaves)
    ref.backward()
    assert out.data == ref.data
    got = grads(out)
    assert got == {name: leaf.grad for name, leaf in leaves.items() if name in got}


UNARY_FUNCTIONS = [name for name, op in functions().items() if op.arity == 1]


def test_the_functions_are_the_registrys_ops_with_a_name():
    printed_otherwise = {"pow", "powc", "cpow", "neg", "weighted_sum", "linear"}  # an operator, a sum, the input
    assert set(functions()) == {name for name, op in OPS.items() if name.isidentifier()} - printed_otherwise
    assert {"exp", "log", "tanh", "sigmoid", "relu", "abs", "step", "sign"} <= set(functions())


def test_the_identity_prints_as_its_input_and_what_is_printed_parses_back():
    x, y = Symbol.variable("x"), Symbol.variable("y")
    for expr, text in [(rules.linear(x + y) * rules.linear(x), "(x + y) * x"), (-rules.linear(-x), "-(-x)"),
                       (rules.linear(x * y) ** 2.0, "(x * y) ** 2.0"), (rules.linear(rules.tanh(x)), "tanh(x)")]:
        assert printed(expr, "formula").text == text
        point = {"x": 0.75, "y": -2.0}
        assert compile(text)(**point).data == evaluate(expr, point)


@pytest.mark.parametrize("name", UNARY_FUNCTIONS)
def test_each_function_is_the_registry_op(name):
    for x in (-1.3, 0.4, 2.0):
        if name in ("log", "sqrt") and x < 0:  # outside their domain
            continue
        leaf = Value(x)
        ref = OPS[name](leaf)
        ref.backward()
        out = parse(f"{name}(x)", {"x": x})
        assert out.op == name
        assert (out.data, grads(out)["x"]) == (ref.data, leaf.grad)


def test_number_exponent_is_powc_and_variable_exponent_is_pow():
    assert parse("x ** 2", {"x": 3.0}).op == "powc"
    out = parse("x ** y", {"x": 2.0, "y": 3.0})
    assert out.op == "pow" and out.data == 8.0
    assert grads(out) == {"x": 12.0, "y": pytest.approx(8.0 * math.log(2.0))}


def test_constants_are_folded_into_one_const_node():
    out = parse("2 * 3 * x + 2 ** 3", {"x": 1.0})
    consts = sorted(v.data for v in out.topo() if v.is_constant)
    assert consts == [6.0, 8.0]
    assert out.data == 14.0


def test_a_formula_without_variables_is_a_value():
    out = parse("exp(0) + 1", {})
    assert isinstance(out, Value) and out.data == 2.0


def test_compile_infers_names_in_order_and_evaluates_again_and_again():
    f = compile("b + w * x")
    assert isinstance(f, Formula) and f.names == ("b", "w", "x")
    assert f(w=2.0, x=3.0, b=1.0).data == 7.0
    assert f(w=1.0, x=1.0, b=0.0, unused=5.0).data == 1.0  # extra names ignored
    with pytest.raises(TypeError, match="'x'"):
        f(w=1.0, b=0.0)


def test_values_passed_in_are_used_as_they_are():
    w = Value(2.0, label="weight")
    out = compile("w * w")(w=w)
    out.backward()
    assert w.grad == 4.0 and w.label == "weight"


def test_long_formulas_need_no_recursion():
    n = 900
    out = parse(" + ".join(["x"] * n), {"x": 1.0})
    assert out.data == n and grads(out) == {"x": float(n)}


# -- the allow-list: every refusal names the token and its column ---------------------------------

REFUSED = [  # (text, token, column)
    ("w * q", "q", 5),
    ("foo(x)", "foo", 1),
    ("x(2)", "x", 1),
    ("exp", "exp", 1),
    ("exp(x, w)", "exp", 1),
    ("exp()", "exp", 1),
    ("exp(x=1)", "x=", 5),
    ("exp(**x)", "**", 5),
    ("exp(*x)", "*", 5),
    ("x.real", ".real", 2),
    ("x.exp()", ".exp", 2),
    ("x[0]", "[0]", 2),
    ("lambda: 1", "lambda: 1", 1),
    ("'s' + x", "'s'", 1),
    ("b'x'", "b'x'", 1),
    ("x + 1j", "1j", 5),
    ("True * x", "True", 1),
    ("None", "None", 1),
    ("x // 2", "//", 3),
    ("x % 2", "%", 3),
    ("x @ w", "@", 3),
    ("x ^ 2", "^", 3),
    ("(x) == (w)", "==", 5),
    ("x and w", "and", 3),
    ("not x", "not", 1),
    ("~x", "~", 1),
    ("x if w else 1", "x if w else 1", 1),
    ("x, w", "x, w", 1),
    ("[x]", "[x]", 1),
    ("{x: 1}", "{x: 1}", 1),
    ("(w := 2)", "w := 2", 2),
    ("[x for x in w]", "[x for x in w]", 1),
    ("f'{x}'", "f'{x}'", 1),
    ("(x)(w)", "x", 2),
    ("2(x)", "2", 1),
    ("1e999 * x", "1e999", 1),
    ("x # comment", "#", 3),
    ("__import__('os').system('true')", ".system", 17),
    ("__import__('os')", "__import__", 1),
    ("().__class__", ".__class__", 3),
    # names Python's parser would change (NFKC): x and fullwidth x would be one variable
    ("x * ｘ", "ｘ", 5),
    ("ｅｘｐ(x)", "ｅｘｐ", 1),
    ("x + ﬁ", "ﬁ", 5),
    # syntax errors
    ("x +* 2", "*", 4),
    ("x ** ** 2", "**", 6),
    ("x y", "y", 3),
    ("x)", ")", 2),
    ("exp(x", "(", 4),
    ("x = 1", "=", 3),
    ("x $ 2", "$", 3),
    ("2x", "2x", 1),
    ("w*x +", "", 6),
]


@pytest.mark.parametrize("text, token, column", REFUSED, ids=[t for t, _, _ in REFUSED])
def test_refusals_name_the_token_and_its_column(text, token, column):
    with pytest.raises(FormulaError) as caught:
        compile(text, ["x", "w"])
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.token, error.column, error.line) == (token, column, 1)
    assert f"at column {column}" in str(error)
    if token:
        assert repr(token) in str(error)
    assert "\n" not in str(error)


def test_a_name_python_would_read_as_another_says_so():
    with pytest.raises(FormulaError, match=r"name 'ｘ' is read by Python as 'x' \(Unicode NFKC normalisation\) "
                                           r"at column 3 \(type 'x' if you mean it, else another name\)"):
        parse("x*ｘ", {"x": 3.0})


def test_unknown_name_lists_the_variables_and_functions():
    with pytest.raises(FormulaError, match=r"unknown name 'b' at column 13 \(variables: w, x; functions: exp log"):
        parse("sigmoid(w*x+b)", {"w": 1.0, "x": 1.0})


def test_columns_count_characters_after_leading_blanks_and_non_ascii():
    with pytest.raises(FormulaError) as caught:
        compile("   q", ["x"])
    assert caught.value.column == 4
    with pytest.raises(FormulaError) as caught:
        compile("x + é", ["x"])
    assert (caught.value.token, caught.value.column) == ("é", 5)


def test_multiline_formulas_report_line_and_column():
    with pytest.raises(FormulaError, match="unknown name 'q' at line 2, column 3") as caught:
        compile("(x\n+ q)", ["x"])
    assert (caught.value.line, caught.value.column) == (2, 3)


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_formula(text):
    with pytest.raises(FormulaError, match="empty formula"):
        compile(text)


def test_a_flat_sum_or_product_of_any_length_parses():
    """3,000 terms were 'nested too deeply': Python's parser stops near 3,000 levels, a flat chain is not nesting."""
    n = 20_000
    out = parse("+".join(["x"] * n), {"x": 1.5})
    assert out.data == 1.5 * n and grads(out) == {"x": float(n)}
    texts = lambda k: [f"{k % 7}*x", "-y", "(x - y)", "exp(-x)", f"y/{k % 3 + 1}"][k % 5]  # noqa: E731
    x, y = Value(0.3, label="x"), Value(-1.25, label="y")
    values = lambda k: [(k % 7) * x, -y, x - y, (-x).exp(), y / (k % 3 + 1)][k % 5]  # noqa: E731
    expected = x * y - values(0)
    for k in range(1, 3000):
        expected = expected + values(k)
    expected.backward()
    out = parse("x*y - " + " + ".join(texts(k) for k in range(3000)), {"x": 0.3, "y": -1.25})
    assert out.data == expected.data and grads(out) == {"x": x.grad, "y": y.grad}
    product = parse("*".join(["x", "y", "(x - 1)"] * 1000) + "/ y", {"x": 1.0625, "y": 0.5})
    assert product.data == pytest.approx(1.0625 ** 2000 * 0.0625 ** 1000 * 0.5 ** 999, rel=1e-12)


def test_a_long_chain_keeps_error_columns():
    with pytest.raises(FormulaError, match=r"unknown name 'q' at column 6003") as caught:
        compile("+".join(["x"] * 3000) + " + q", ["x"])
    assert caught.value.token == "q"
    with pytest.raises(FormulaError, match=r"'\.real' is not allowed at column 6002"):
        compile("x-" * 3000 + "x.real", ["x"])
    with pytest.raises(FormulaError, match=r"unknown name 'q' at line 2, column 3"):
        compile("(x\n+ q) + " + "+".join(["x"] * 3000), ["x"])


def test_too_deep_for_the_parser_is_a_formula_error():
    with pytest.raises(FormulaError, match=r"nested too deeply to parse \(3001 characters\): brackets, signs, \*\* "):
        compile("-" * 3000 + "x")
    with pytest.raises(FormulaError, match="nested too deeply"):
        compile("x**" * 3000 + "x")
    with pytest.raises(FormulaError, match="too many nested parentheses"):
        compile("(" * 300 + "x" + ")" * 300)


@pytest.mark.parametrize("text, token, column", [
    ("1" * 5000 + " * x", "1" * 5000, 1),  # was "the formula ends too early": Python's 4,300-digit limit
    ("x + " + "2" * 4301, "2" * 4301, 5),
    ("x + " + "3" * 400, "3" * 400, 5),  # within the limit, beyond any float
])
def test_an_integer_of_thousands_of_digits_is_reported_as_such(text, token, column):
    with pytest.raises(FormulaError) as caught:
        compile(text)
    assert caught.value.token.startswith(token[:37]) and caught.value.column == column
    assert f"number '{token[:37]}...'" in str(caught.value) and "is too large for a float" in str(caught.value)
    if len(token) > 4300:
        assert f"({len(token)} digits)" in str(caught.value)


def test_null_byte_is_refused_with_its_column():
    with pytest.raises(FormulaError, match="null byte at column 4"):
        compile("x +\x00 1")


@pytest.mark.parametrize("names, bad", [({"exp": 1.0}, "exp"), ({"1x": 1.0}, "1x"), ({"a b": 1.0}, "a b"),
                                        ({"x": 3.0, "ｘ": 100.0}, "ｘ")])
def test_bad_variable_names(names, bad):
    with pytest.raises(FormulaError, match=repr(bad)):
        parse("1", names)


def test_text_must_be_a_string():
    with pytest.raises(TypeError, match="text"):
        compile(3)


@pytest.mark.parametrize("text, segment, column", [
    ("log(x - 2)", "log(x - 2)", 1), ("x + 1/0", "1/0", 5), ("w * exp(1000)", "exp(1000)", 5),
    ("x / (x - 1)", "x / (x - 1)", 1),
])
def test_domain_errors_say_where(text, segment, column):
    with pytest.raises(DomainError) as caught:
        parse(text, {"x": 1.0, "w": 1.0})
    assert f"(in {segment!r} at column {column})" in str(caught.value)


# -- random formulas: the parsed graph is the graph written with Value arithmetic -------------------

NAMES = ("x", "y", "z")
_OPS = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div, "**": ast.Pow}
numbers = st.one_of(st.integers(0, 5), st.floats(0.0, 4.0, allow_nan=False).map(lambda f: round(f, 3)))


def _extend(children):
    op = st.sampled_from(list(_OPS))
    return st.one_of(
        st.tuples(st.just("neg"), children),
        st.tuples(st.just("call"), st.sampled_from(UNARY_FUNCTIONS), children),
        st.tuples(st.just("bin"), op, children, children),
        st.tuples(st.just("bin"), op, children, numbers),  # a number never meets a number: no folding here
        st.tuples(st.just("bin"), op, numbers, children),
    )


trees = st.recursive(st.sampled_from(NAMES), _extend, max_leaves=10)


def _to_ast(tree) -> ast.expr:
    if isinstance(tree, str):
        return ast.Name(tree, ast.Load())
    if not isinstance(tree, tuple):
        return ast.Constant(tree)
    if tree[0] == "neg":
        return ast.UnaryOp(ast.USub(), _to_ast(tree[1]))
    if tree[0] == "call":
        return ast.Call(ast.Name(tree[1], ast.Load()), [_to_ast(tree[2])], [])
    return ast.BinOp(_to_ast(tree[2]), _OPS[tree[1]](), _to_ast(tree[3]))


def _direct(tree, leaves):
    """The tree computed with Value (and number) arithmetic, as a user would type it in Python."""
    if isinstance(tree, str):
        return leaves[tree]
    if not isinstance(tree, tuple):
        return tree
    if tree[0] == "neg":
        return -_direct(tree[1], leaves)
    if tree[0] == "call":
        return OPS[tree[1]](_direct(tree[2], leaves))
    a, b = _direct(tree[2], leaves), _direct(tree[3], leaves)
    return {"+": a.__add__, "-": a.__sub__, "*": a.__mul__, "/": a.__truediv__, "**": a.__pow__}[tree[1]](b) \
        if isinstance(a, Value) else {"+": b.__radd__, "-": b.__rsub__, "*": b.__rmul__, "/": b.__rtruediv__,
                                      "**": b.__rpow__}[tree[1]](a)


def _run(build):
    """(data, grads) of the graph, or the type of the error the engine raised."""
    try:
        out, leaves = build()
        out.backward()
    except DomainError:
        return DomainError
    return out.data, {name: leaf.grad for name, leaf in leaves.items()}


@given(trees, st.tuples(*[st.floats(-2.0, 2.0, allow_nan=False)] * 3))
def test_parse_equals_value_arithmetic(tree, point):
    text = ast.unparse(_to_ast(tree))  # minimal parentheses: exercises precedence
    values = dict(zip(NAMES, point))

    def parsed():
        out = parse(text, values)
        return out, {v.label: v for v in out.topo() if not v.parents and not v.is_constant}

    def direct():
        leaves = {name: Value(x, label=name) for name, x in values.items()}
        out = _direct(tree, leaves)
        return out, {name: leaf for name, leaf in leaves.items() if any(v is leaf for v in out.topo())}

    assert _run(parsed) == _run(direct), text


def test_calling_an_unknown_name_is_an_unknown_function_when_names_are_inferred():
    with pytest.raises(FormulaError, match="unknown function 'foo' at column 1"):
        compile("foo(x)")
    with pytest.raises(FormulaError, match="'foo' is a variable, not a function at column 1"):
        compile("foo(x)", ["foo", "x"])
