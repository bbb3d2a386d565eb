"""explain: derivations from the registry's rules run on symbols, held against the engine and a LaTeX parser."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.mathtext import MathTextParser

from microgd import DomainError, RuleError, Value, define_op, explain, gradients, rules
from microgd.check import check_formula
from microgd.explain import MAX_FORMULA_OPS
from microgd.rules import OPS, exp
from microgd.testing import expressions

try:  # the formula parser is moving into microgd.app
    from microgd.app.formula import compile as compile_formula
except ImportError:
    from microgd.formula import compile as compile_formula


def _smooth_max(a, b):
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


@pytest.fixture(autouse=True, scope="module")
def smooth_max():
    """An op of two inputs whose rule reuses ``out``, defined here and gone after this module."""
    op = define_op("smooth_max_explain", forward=_smooth_max,
                   vjp=lambda g, out, a, b: (g * exp(a - out), g * exp(b - out)))
    yield op
    del rules._REGISTRY[op.name]


def tutorial1():
    w, x, t = Value(0.5, label="w"), Value(0.1, label="x"), Value(0.3, label="t")
    sop = w * x
    sop.label = "sop"
    predicted = sop.sigmoid()
    predicted.label = "predicted"
    error = (predicted - t) ** 2
    error.label = "error"
    return error, (w, x, t)


def tutorial2():
    """The second tutorial's 2-3-1 sigmoid network with its weights, on input (1, 1) with target 1."""
    x = [Value(1.0, label="x_1"), Value(1.0, label="x_2")]
    a = []
    for j, (w1, w2, b) in enumerate([[-0.5, -1.0, 0.5], [-0.5, 0.5, 0.5], [1.0, 0.0, 0.5]], 1):
        s = Value.weighted_sum([Value(w1, label=f"w_{j}1"), Value(w2, label=f"w_{j}2")], x, Value(b, label=f"b_{j}"))
        s.label = f"s_h{j}"
        a.append(s.sigmoid())
        a[-1].label = f"a_h{j}"
    w_o = [Value(w, label=f"w_o{j}") for j, w in enumerate([0.5, -1.0, 0.0], 1)]
    s_o = Value.weighted_sum(w_o, a, Value(0.5, label="b_o"))
    s_o.label = "s_o"
    y = s_o.sigmoid()
    y.label = "y"
    z = Value(1.0, label="z")
    loss = 0.5 * (y - z) ** 2
    loss.label = "L"
    return loss


TUTORIAL1 = """\
∂error/∂w = ∂error/∂predicted · ∂predicted/∂sop · ∂sop/∂w
          = 2(predicted − t) · predicted(1 − predicted) · x
          = 0.4250 · 0.2498 · 0.1000
          = 0.0106"""

TUTORIAL1_ALL = TUTORIAL1 + """

∂error/∂x = ∂error/∂predicted · ∂predicted/∂sop · ∂sop/∂x
          = 2(predicted − t) · predicted(1 − predicted) · w
          = 0.4250 · 0.2498 · 0.5000
          = 0.0531

∂error/∂t = −2(predicted − t) = −0.4250"""

TUTORIAL2 = """\
∂L/∂z = −(y − z) = 0.4970

δ_s_o = ∂L/∂y · ∂y/∂s_o = (y − z) · y(1 − y) = −0.4970 · 0.2500 = −0.1242
∂L/∂w_o1 = δ_s_o · ∂s_o/∂w_o1 = δ_s_o · a_h1 = −0.1242 · 0.2689 = −0.0334
∂L/∂w_o2 = δ_s_o · ∂s_o/∂w_o2 = δ_s_o · a_h2 = −0.1242 · 0.6225 = −0.0773
∂L/∂w_o3 = δ_s_o · ∂s_o/∂w_o3 = δ_s_o · a_h3 = −0.1242 · 0.8176 = −0.1016
∂L/∂b_o = δ_s_o · ∂s_o/∂b_o = δ_s_o = −0.1242

δ_s_h3 = δ_s_o · ∂s_o/∂a_h3 · ∂a_h3/∂s_h3
       = δ_s_o · w_o3 · a_h3(1 − a_h3)
       = −0.1242 · 0.0000 · 0.1491
       = 0.0000
∂L/∂w_31 = δ_s_h3 · ∂s_h3/∂w_31 = δ_s_h3 · x_1 = 0.0000 · 1.0000 = 0.0000
∂L/∂w_32 = δ_s_h3 · ∂s_h3/∂w_32 = δ_s_h3 · x_2 = 0.0000 · 1.0000 = 0.0000
∂L/∂b_3 = δ_s_h3 · ∂s_h3/∂b_3 = δ_s_h3 = 0.0000

δ_s_h2 = δ_s_o · ∂s_o/∂a_h2 · ∂a_h2/∂s_h2
       = δ_s_o · w_o2 · a_h2(1 − a_h2)
       = −0.1242 · (−1.0000) · 0.2350
       = 0.0292
∂L/∂w_21 = δ_s_h2 · ∂s_h2/∂w_21 = δ_s_h2 · x_1 = 0.0292 · 1.0000 = 0.0292
∂L/∂w_22 = δ_s_h2 · ∂s_h2/∂w_22 = δ_s_h2 · x_2 = 0.0292 · 1.0000 = 0.0292
∂L/∂b_2 = δ_s_h2 · ∂s_h2/∂b_2 = δ_s_h2 = 0.0292

δ_s_h1 = δ_s_o · ∂s_o/∂a_h1 · ∂a_h1/∂s_h1
       = δ_s_o · w_o1 · a_h1(1 − a_h1)
       = −0.1242 · 0.5000 · 0.1966
       = −0.0122
∂L/∂x_1 = δ_s_h3 · ∂s_h3/∂x_1 + δ_s_h2 · ∂s_h2/∂x_1 + δ_s_h1 · ∂s_h1/∂x_1
        = δ_s_h3 · w_31 + δ_s_h2 · w_21 + δ_s_h1 · w_11
        = 0.0000 · 1.0000 + 0.0292 · (−0.5000) − 0.0122 · (−0.5000)
        = −0.0085
∂L/∂x_2 = δ_s_h3 · ∂s_h3/∂x_2 + δ_s_h2 · ∂s_h2/∂x_2 + δ_s_h1 · ∂s_h1/∂x_2
        = δ_s_h3 · w_32 + δ_s_h2 · w_22 + δ_s_h1 · w_12
        = 0.0000 · 0.0000 + 0.0292 · 0.5000 − 0.0122 · (−1.0000)
        = 0.0268
∂L/∂w_11 = δ_s_h1 · ∂s_h1/∂w_11 = δ_s_h1 · x_1 = −0.0122 · 1.0000 = −0.0122
∂L/∂w_12 = δ_s_h1 · ∂s_h1/∂w_12 = δ_s_h1 · x_2 = −0.0122 · 1.0000 = −0.0122
∂L/∂b_1 = δ_s_h1 · ∂s_h1/∂b_1 = δ_s_h1 = −0.0122"""


# -- helpers ----------------------------------------------------------------------------------------

_mathtext = MathTextParser("path")


def latex_rows(d):
    """The rows of the aligned block, without the alignment marks (mathtext has no ``aligned``)."""
    block = d.latex()
    assert block.startswith("\\begin{aligned}\n") and block.endswith("\n\\end{aligned}")
    body = block.removeprefix("\\begin{aligned}\n").removesuffix("\n\\end{aligned}")
    return [row.replace("&", "") for row in body.split(" \\\\\n")]


def assert_latex_parses(d):
    for row in latex_rows(d):
        _mathtext.parse(f"${row}$")  # raises ValueError naming the column on a parse error


def leaf_equation(d, leaf):
    (found,) = [e for e in d.equations if e.lhs == f"∂{d.name(d.root)}/∂{d.name(leaf)}"]
    return found


def sum_of_products(equation):
    """Σ over the terms of the product of their factors' values."""
    return sum(math.prod(f.value for f in term) for term in equation.terms)


def magnitude(root, node):
    """Σ over the paths from root to node of |Π local derivatives|: what the rounding errors of any order of
    multiplying and adding up the chain rule's products are relative to (exact cancellation included)."""
    size = {root: 1.0}
    for v in reversed(root.topo()):
        for p, c in zip(v.parents, v.contributions(size.get(v, 0.0))):
            size[p] = size.get(p, 0.0) + abs(c)
    return size[node]


# -- the tutorials, golden -------------------------------------------------------------------------

def test_tutorial1_is_one_chain_with_the_engines_numbers():
    error, (w, _x, _t) = tutorial1()
    d = explain(error, wrt=[w])
    assert d.form == "chain" and str(d) == d.text() == TUTORIAL1
    assert explain(error, wrt=w).text() == TUTORIAL1
    assert explain(error).text() == TUTORIAL1_ALL
    (g1, g2, g3), = leaf_equation(d, w).terms  # the tutorial's g1, g2, g3
    assert [g.symbol for g in (g1, g2, g3)] == ["∂error/∂predicted", "∂predicted/∂sop", "∂sop/∂w"]
    p = error.parents[0].parents[0].data
    assert (g1.value, g2.value, g3.value) == (2 * (p - 0.3), p * (1 - p), 0.1)
    assert math.isclose(g1.value * g2.value * g3.value, gradients(error, [w])[0], rel_tol=1e-15)


def test_tutorial2_reads_as_the_textbooks_deltas():
    loss = tutorial2()
    d = explain(loss)
    assert d.form == "delta" and d.text() == TUTORIAL2
    loss.backward()
    nodes = {v.label: v for v in loss.topo()}
    deltas = {e.lhs: e.value for e in d.equations if e.lhs.startswith("δ")}
    assert deltas == {f"δ_{name}": nodes[name].grad for name in ("s_o", "s_h3", "s_h2", "s_h1")}
    for leaf in d.wrt:
        assert leaf_equation(d, leaf).value == leaf.grad


def test_one_leaf_of_the_network_is_a_chain():
    loss = tutorial2()
    w = next(v for v in loss.topo() if v.label == "w_11")
    assert explain(loss, wrt=w).text() == """\
∂L/∂w_11 = ∂L/∂y · ∂y/∂s_o · ∂s_o/∂a_h1 · ∂a_h1/∂s_h1 · ∂s_h1/∂w_11
         = (y − z) · y(1 − y) · w_o1 · a_h1(1 − a_h1) · x_1
         = −0.4970 · 0.2500 · 0.5000 · 0.1966 · 1.0000
         = −0.0122"""


@pytest.mark.parametrize("build", [lambda: tutorial1()[0], tutorial2])
def test_the_numbers_shown_multiply_to_the_engines_gradient_to_the_digits_shown(build):
    root = build()
    d = explain(root)
    labelled = {v.label: v for v in root.topo()}
    for equation in d.equations:  # δ_s_o = ..., ∂L/∂w_o1 = ...
        node = labelled[equation.lhs.removeprefix("δ_").rpartition("/∂")[2]]
        total = sum_of_products(equation)
        assert abs(total - equation.value) <= 1e-12 * magnitude(root, node)
        assert f"{total:.4f}" == f"{equation.value:.4f}"
        assert d.text().count(f" = {equation.value:.4f}".replace("-", "−")) >= 1


def test_the_tutorials_latex_parses_line_by_line():
    error, (w, _x, _t) = tutorial1()
    rows = latex_rows(explain(error, wrt=w))
    assert rows[0] == (r"\frac{\partial \mathrm{error}}{\partial w} = \frac{\partial \mathrm{error}}"
                       r"{\partial \mathrm{predicted}} \cdot \frac{\partial \mathrm{predicted}}{\partial \mathrm{sop}}"
                       r" \cdot \frac{\partial \mathrm{sop}}{\partial w}")
    assert rows[1:] == [r"= 2(\mathrm{predicted} - t) \cdot \mathrm{predicted}(1 - \mathrm{predicted}) \cdot x",
                        r"= 0.4250 \cdot 0.2498 \cdot 0.1000", "= 0.0106"]
    d = explain(tutorial2())
    assert r"\delta_{s_{o}} = \frac{\partial L}{\partial y} \cdot \frac{\partial y}{\partial s_{o}} = (y - z) \cdot " \
           r"y(1 - y) = -0.4970 \cdot 0.2500 = -0.1242" in latex_rows(d)
    for derivation in (explain(error), d):
        assert_latex_parses(derivation)


def test_jupyter_shows_the_latex():
    d = explain(tutorial1()[0])
    assert d._repr_latex_() == f"$${d.latex()}$$"
    assert d._repr_markdown_() == f"$$\n{d.latex()}\n$$"
    assert repr(d) == "<Derivation of error by w, x, t: chain form, 3 equation(s)>"


def test_the_closed_form_is_a_formula_that_check_formula_accepts():
    error, (w, _x, _t) = tutorial1()
    text = explain(error).formula(w)
    assert text == "2.0 * (sigmoid(w * x) - t) * sigmoid(w * x) * (1.0 - sigmoid(w * x)) * x"
    compiled = compile_formula(text)

    def error_of(w, x, t):
        return ((w * x).sigmoid() - t) ** 2

    def engine_formula(w, x, t):
        return compiled(w=w, x=x, t=t).data

    report = check_formula(error_of, engine_formula, wrt="w", max_examples=50)
    assert report.examples == 50


# -- every op, random graphs ------------------------------------------------------------------------

@given(st.data())
def test_the_formula_is_the_engines_gradient_at_any_point_for_every_op(data):
    e = data.draw(expressions(max_depth=3, n_vars=2, max_nodes=6), label="expression")
    leaves = [Value(x, label=f"x{i}") for i, x in enumerate(e.inputs)]
    out = e.build(*leaves)
    graph = set(out.topo())
    used = [v for v in leaves if v in graph]
    d = explain(out, wrt=used)
    formulas = {v.label: compile_formula(d.formula(v)) for v in used}
    engine = gradients(out, used)
    for leaf, g in zip(used, engine):
        equation = leaf_equation(d, leaf)
        assert equation.value == g
        assert abs(sum_of_products(equation) - g) <= 1e-12 * magnitude(out, leaf)
    other = data.draw(st.tuples(*[st.floats(-3.0, 3.0, allow_nan=False)] * len(leaves)), label="other point")
    for point in (e.inputs, other):
        at = [Value(x) for x in point]
        try:
            out_there = e.build(*at)
            engine = gradients(out_there, [at[leaves.index(v)] for v in used])
        except DomainError:
            continue  # the graph overflows there: no gradient to compare with
        values = {f"x{i}": x for i, x in enumerate(point)}
        for leaf, g in zip(used, engine):
            assert math.isclose(formulas[leaf.label](**values).data, g, rel_tol=1e-9, abs_tol=0.0), \
                (e, leaf.label, point)


@settings(max_examples=max(1, settings().max_examples // 4))  # mathtext is slow; every op's template is below
@given(expressions(max_depth=3, n_vars=2, max_nodes=5))
def test_the_latex_of_random_derivations_parses(e):
    leaves = [Value(x, label=f"x_{i}") for i, x in enumerate(e.inputs)]
    out = e.build(*leaves)
    assert_latex_parses(explain(out, wrt=[v for v in leaves if v in set(out.topo())]))


def test_every_ops_latex_parses():
    x, y = Value(0.7, label="x"), Value(1.3, label="y")
    for op in OPS.values():
        inputs = [x, y, Value(0.4, label="z"), Value(0.2, label="u"), Value(-0.6, label="v")][:op.arity or 5]
        inputs = [2.0 if i in op.constants else v for i, v in enumerate(inputs)]  # x ** 2, 2 ** y
        d = explain(op(*inputs), inline=0)
        assert_latex_parses(d)


# -- what is shown ----------------------------------------------------------------------------------

@pytest.mark.parametrize("point", [1.5, -1.5])
def test_piecewise_ops_print_as_such_not_as_the_branch_taken(point):
    s = Value(point, label="s")
    r, a = s.relu(), abs(s)
    r.label, a.label = "r", "a"
    assert explain(r).text().startswith("∂r/∂s = [s > 0] = ")
    assert explain(a).text().startswith("∂a/∂s = sign(s) = ")
    assert explain(r).formula(s) == "step(s)" and explain(a).formula(s) == "sign(s)"


def test_an_op_from_define_op_is_written_by_its_name(smooth_max):
    a, b = Value(0.3, label="a"), Value(-0.2, label="b")
    m = smooth_max(a, b * b)
    m.label = "m"
    d = explain(m)
    assert d.text().splitlines()[0] == "∂m/∂a = exp(a − m) = " + f"{gradients(m, [a])[0]:.4f}"
    assert d.formula(b) == "2.0 * (exp(b * b - smooth_max_explain(a, b * b)) * b)"  # b·b's two uses: x + x is 2x


def test_reuse_gives_deltas_and_generated_names_defined_under_where():
    a, b = Value(0.5, label="a"), Value(-1.0, label="b")
    u = a * b  # unlabelled, used twice: named v1
    out = u.tanh() + u * u
    d = explain(out)
    assert d.form == "chain" and d.name(u) == "v1" and d.name(out) == "f"
    assert d.text().endswith("where v1 = a·b\n      f = tanh(v1) + v1·v1")
    c = Value(2.0, label="c")
    shared = a * c
    out = shared.exp() * c + shared
    d = explain(out, wrt=[a, c])
    assert d.form == "delta"
    assert [e.lhs for e in d.equations] == ["δ_v1", "∂f/∂a", "∂f/∂c"]
    assert d.text().splitlines()[-2:] == ["where v1 = a·c", "      f = exp(v1)·c + v1"]
    assert_latex_parses(d)


def test_inline_decides_what_is_substituted():
    w, x, b = Value(0.5, label="w"), Value(2.0, label="x"), Value(0.1, label="b")
    out = ((w * x + b).sigmoid() - 1.0) ** 2
    assert explain(out, wrt=w).text().splitlines()[-1] == "where f = (σ(w·x + b) − 1)²"
    every = explain(out, wrt=w, inline=0)
    assert every.text().splitlines()[:2] == [
        "∂f/∂w = ∂f/∂v4 · ∂v4/∂v3 · ∂v3/∂v2 · ∂v2/∂v1 · ∂v1/∂w",
        "      = 2v4 · v3(1 − v3) · x"]
    assert every.local(out, out.parents[0]).text == "2v4"
    assert every.name(out.parents[0]) == "v4"


def test_labels_are_made_unique_identifiers_and_said_so():
    w1, w2, odd = Value(1.0, label="w"), Value(2.0, label="w"), Value(3.0, label="x[0]")
    out = w1 * w2 * odd
    out.label = "lambda"
    d = explain(out)
    assert [d.name(v) for v in (w1, w2, odd, out)] == ["w", "w_2", "x_0_", "lambda_2"]
    assert d.text().splitlines()[-3:] == ["where w_2 = 2.0000  (labelled 'w')",
                                          "      x_0_ = 3.0000  (labelled 'x[0]')",
                                          "      lambda_2 = w·w_2·x_0_  (labelled 'lambda')"]
    assert compile_formula(d.formula(w1))(w_2=2.0, x_0_=3.0).data == 6.0
    assert r"\frac{\partial \mathrm{lambda}_{2}}{\partial x\_0\_} &= w \cdot w_{2} = 2.0000" in d.latex()
    assert_latex_parses(d)


def test_big_graphs_print_a_capped_list_and_refuse_a_huge_closed_form():
    x = Value(0.3, label="x")
    leaves = [Value(0.01 * k, label=f"p{k}") for k in range(60)]
    out = Value.weighted_sum(leaves, [x] * 60, Value(0.0, label="zero"))
    d = explain(out)
    assert len(d.equations) == 40 and d.omitted == 22
    assert d.text().splitlines()[-1] == ("… 22 more equations not shown (explain(root, wrt=leaf) for one leaf, "
                                         "max_equations=None for all)")
    assert_latex_parses(d)
    assert len(explain(out, max_equations=None).equations) == 62
    y = x
    for _ in range(30):
        y = y * y  # the closed form doubles with each step
    with pytest.raises(ValueError, match=rf"^Derivation.formula: d f/d x written out has [\d,]+ ops "
                                         rf"\(more than MAX_FORMULA_OPS = {MAX_FORMULA_OPS:,}\)"):
        explain(y).formula(x)


def test_a_deep_graph_needs_no_recursion():
    x = Value(0.3, label="x")
    y = x
    for _ in range(3000):
        y = y.tanh()
    d = explain(y)
    assert d.equations[0].value == gradients(y, [x])[0]
    assert d.text().splitlines()[0].startswith("∂f/∂x = ∂f/∂v")


def test_explain_leaves_every_grad_alone():
    loss = tutorial2()
    explain(loss).text()
    assert all(v.grad == 0.0 for v in loss.topo())


def test_without_labels_every_leaf_is_explained():
    a, b = Value(0.5), Value(-2.0)
    d = explain(a * b + 1.0)
    assert d.text() == "∂f/∂v1 = v2 = −2.0000\n∂f/∂v2 = v1 = 0.5000\nwhere v1 = 0.5000  (a leaf without a label)\n" \
                       "      v2 = −2.0000  (a leaf without a label)\n      f = v1·v2 + 1"
    assert_latex_parses(d)


def test_a_root_that_is_a_leaf():
    w = Value(2.0, label="w")
    assert explain(w).text() == "∂w/∂w = 1 = 1.0000"
    assert explain(w).formula(w) == "1.0"


@pytest.mark.parametrize("call, error, message", [
    (lambda g: explain(2.0), TypeError, "explain: root must be a Value, got float: 2.0"),
    (lambda g: explain(g["out"], wrt="w"), TypeError, "explain: wrt takes Values, not names, got 'w' "),
    (lambda g: explain(g["out"], wrt=[g["w"], 3]), TypeError, "explain: wrt takes Values (leaves of the graph), "
                                                               "got int: 3"),
    (lambda g: explain(g["out"], wrt=g["out"]), ValueError, "explain: wrt Value(data=1.5, grad=0.0, label='out') is "
                                                            "computed by '*', not a leaf"),
    (lambda g: explain(g["out"], wrt=Value(1.0, label="q")), ValueError, "explain: wrt Value(data=1.0, grad=0.0, "
                                                                         "label='q') is not in the graph of the root"),
    (lambda g: explain(g["out"], wrt=g["out"].parents[1]), ValueError, "explain: wrt Value(data=3.0, grad=0.0) is a "
                                                                       "constant (a Python number in an op)"),
    (lambda g: explain(g["out"], wrt=[]), ValueError, "explain: wrt is empty"),
    (lambda g: explain(g["out"], inline=-1), ValueError, "explain: inline must be a whole number >= 0, got -1"),
    (lambda g: explain(g["out"], max_equations=0), ValueError, "explain: max_equations must be a whole number >= 1"),
    (lambda g: explain(g["out"], digits=2.5), ValueError, "explain: digits must be a whole number >= 1, got 2.5"),
    (lambda g: explain(g["out"]).formula(g["out"]), ValueError, "Derivation.formula: Value(data=1.5, grad=0.0, "
                                                                "label='out') is not a leaf of this graph"),
    (lambda g: explain(g["out"]).name(Value(1.0)), ValueError, "explain: Value(data=1.0, grad=0.0) has no name"),
    (lambda g: explain(g["out"]).local(g["out"], Value(1.0)), ValueError, "explain: Value(data=1.0, grad=0.0) is "
                                                                          "not an input of"),
    (lambda g: explain(g["out"]).local(g["w"], g["w"]), ValueError, "explain: Value(data=0.5, grad=0.0, label='w') "
                                                                    "is not an input of"),
])
def test_user_errors_are_one_line_naming_what_was_wrong(call, error, message):
    w = Value(0.5, label="w")
    out = w * 3.0
    out.label = "out"
    with pytest.raises(error) as raised:
        call({"w": w, "out": out})
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_a_rule_that_cannot_run_on_symbols_is_named():
    op = define_op("cos_with_math_explain", forward=math.cos, vjp=lambda g, out, x: (-g * math.sin(x),))
    try:
        with pytest.raises(RuleError, match=r"^the vjp rule of op 'cos_with_math_explain' failed on .*TypeError"):
            explain(op(Value(0.5, label="x")))
    finally:
        del rules._REGISTRY[op.name]
