"""explain at the edges: LaTeX that KaTeX and mathtext both accept, labels that cannot break out of it, text
that a careful reader reads back as the expression it is, and work and output that stay in proportion."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from matplotlib.mathtext import MathTextParser

from microgd import DomainError, Value, explain
from microgd.rules import OPS, xlogy
from microgd.symbolic import Symbol, evaluate, printed
from microgd.testing import expressions

HERE = Path(__file__).resolve().parent
KATEX = HERE.parent / ".katex" / "node_modules" / "katex"  # npm install --prefix .katex katex (.ci/run does)

HOSTILE = ["a_b", "50%", "x^2", "$x$", "#1", "a&b", "}", "{", "\\", "~", "<b>", "line\nbreak", "}\\text{",
           "$$ <img src=x onerror=alert(1)> $$", "\\end{aligned}", "`code`", "'\"", "@@0@@", "日本", "é 🙂", "--"]


# -- the renderers ------------------------------------------------------------------------------------

class KaTeX:
    """One node process rendering many formulas (tests/katex_render.js): a list of formulas in, their errors out."""

    def __init__(self, node: str):
        self.process = subprocess.Popen([node, str(HERE / "katex_render.js"), str(KATEX)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, encoding="utf-8")

    def errors(self, formulas: list[str]) -> list[str | None]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(formulas) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def katex():
    node = shutil.which("node")
    if (node is None or not KATEX.is_dir()) and not os.environ.get("CI"):
        pytest.skip("KaTeX is not installed (node, then: npm install --prefix .katex katex)")
    renderer = KaTeX(node or "node")
    yield renderer
    renderer.close()


_mathtext = MathTextParser("path")


def rows(latex):
    """The rows of an aligned block, without the alignment marks (mathtext has no ``aligned``)."""
    assert latex.startswith("\\begin{aligned}\n") and latex.endswith("\n\\end{aligned}")
    body = latex.removeprefix("\\begin{aligned}\n").removesuffix("\n\\end{aligned}")
    return [re.sub(r"(?<!\\)&", "", row) for row in body.split(" \\\\\n")]


def assert_renders(d, katex):
    """KaTeX renders the whole block, mathtext parses each row, and nothing in Jupyter's forms can leave the math
    (no ``$$`` inside, no HTML tag, no blank line)."""
    latex = d.latex()
    assert katex.errors([latex]) == [None], latex
    for row in rows(latex):
        _mathtext.parse(f"${row}$")
    for shown in (d._repr_latex_(), d._repr_markdown_()):
        inside = shown.removeprefix("$$").removesuffix("$$")
        assert "$$" not in inside and "<" not in inside and "\n\n" not in inside, shown


def labelled_nodes(data, out, labels):
    """Label a drawn few of ``out``'s nodes (leaves and intermediates) with drawn labels."""
    nodes = [v for v in out.topo() if not v.is_constant]
    for k, label in data.draw(st.lists(st.tuples(st.integers(0, len(nodes) - 1), labels), max_size=4), label="labels"):
        nodes[k].label = label


# -- 11. LaTeX that renders -------------------------------------------------------------------------------

def test_a_base_that_carries_a_superscript_is_put_in_parentheses(katex):
    u, v, x = Value(0.5, label="u"), Value(1.2, label="v"), Value(0.3, label="x")
    for root, definition in [(u.exp() ** v, r"(e^{u})^{v}"), (u.exp() ** 2, r"(e^{u})^{2}"),
                             (1e-5 ** x, r"(1 \times 10^{-5})^{x}")]:
        d = explain(root)
        assert d.latex().endswith(rf"\text{{where}}\quad f &= {definition}" + "\n\\end{aligned}")
        assert_renders(d, katex)
    assert explain(u.exp() ** v).text().endswith("where f = exp(u)^v")


def test_a_number_in_scientific_notation_renders_everywhere(katex):
    x = Value(2e-7, label="x")
    d = explain((x * 3e-6 + 1e-5) ** 2, max_equations=None)
    assert r"\times 10^{" in d.latex()
    assert_renders(d, katex)


hostile_labels = st.one_of(st.sampled_from(HOSTILE), st.text(st.sampled_from("ax_%^$#&}{\\<>~\n'\"σ日 -"),
                                                              min_size=1, max_size=6))


@settings(max_examples=max(1, settings().max_examples // 2))  # mathtext is slow
@given(st.data())
def test_random_derivations_render_in_katex_and_mathtext(katex, data):
    e = data.draw(expressions(max_depth=3, n_vars=2, max_nodes=6), label="expression")
    leaves = [Value(x, label=f"x_{i}") for i, x in enumerate(e.inputs)]
    out = e.build(*leaves)
    labelled_nodes(data, out, hostile_labels)
    d = explain(out, inline=data.draw(st.integers(0, 16), label="inline"),
                max_equations=data.draw(st.one_of(st.none(), st.integers(1, 3)), label="max_equations"))
    assert_renders(d, katex)


# -- 12. labels -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("label", HOSTILE)
def test_a_hostile_label_is_escaped_in_latex_markdown_and_html(katex, label):
    w, x = Value(0.5, label=label), Value(2.0, label="x")
    h = (w * x).tanh()
    h.label = label + "!"
    d = explain(h * w)
    assert_renders(d, katex)
    assert f"(labelled {label + '!'!r})" in d.text()
    assert (f"(labelled {label!r})" in d.text()) == (d.name(w) != label)


def test_the_characters_latex_reads_as_markup_are_escaped():
    w = Value(0.5, label="a_b%$#&{}^~\\<>")
    (row,) = [row for row in explain(w * w).latex().splitlines() if "labelled" in row]
    assert row.endswith(r"\text{(labelled 'a\_b\%\$\#\&\{\}\textasciicircum{}\textasciitilde{}\textbackslash{}"
                        r"\textbackslash{}\textless{}\textgreater{}')} \\")


def test_a_name_is_never_a_function_the_text_calls():
    s = Value(0.5, label="s")
    y = s.sigmoid()
    y.label = "σ"  # σ(1 − σ) would read as the sigmoid of 1 − σ
    assert explain(y).text() == "∂σ_2/∂s = σ_2(1 − σ_2) = 0.2350\nwhere σ_2 = σ(s)  (labelled 'σ')"


# -- 13. text that reads as it means ---------------------------------------------------------------------

@pytest.mark.parametrize("build, text, latex", [
    (lambda x: 3 * 2 ** x, "3·2^x", r"3 \cdot 2^{x}"),  # not 32^x
    (lambda x: 2 * x.abs(), "2·|x|", r"2\left|x\right|"),  # |2|x|| would not read
    (lambda x: (x / 3.0) * (x - 1), "x/3·(x − 1)", r"\frac{x}{3}(x - 1)"),  # not x/(3(x − 1))
    (lambda x: x ** Value(1.5, label="y") * (x - 1), "x^y·(x − 1)", r"x^{y}(x - 1)"),  # not x^(y(x − 1))
    (lambda x: xlogy(x, Value(1.5, label="y")) ** 2, "(x·log(y))²", r"\left(x \log\left(y\right)\right)^{2}"),
])
def test_a_product_is_written_out_where_juxtaposition_would_misread(build, text, latex):
    d = explain(build(Value(0.5, label="x")))
    assert d.text().splitlines()[-1] == f"where f = {text}"
    assert d.latex().splitlines()[-2] == rf"\text{{where}}\quad f &= {latex}"


def test_a_number_is_not_glued_to_a_name_that_continues_it():
    e5 = Value(0.5, label="e5")
    assert explain(2 * e5).text().splitlines()[-1] == "where f = 2·e5"  # 2e5 is 200000
    e = Value(0.5, label="e")
    assert explain(2 * e).text().splitlines()[-1] == "where f = 2e"


def test_the_direct_partial_has_a_symbol_of_its_own():
    a = Value(0.5, label="a")
    s = a * a
    s.label = "s"
    f = s * a
    f.label = "f"
    d = explain(f)
    assert d.text() == "∂f/∂a = ∂̄f/∂a + ∂f/∂s · ∂s/∂a = s + a · 2a = 0.2500 + 0.5000 · 1.0000 = 0.7500"
    assert rows(d.latex())[0].startswith(r"\frac{\partial f}{\partial a} = \frac{\bar{\partial} f}{\partial a} + "
                                         r"\frac{\partial f}{\partial s} \cdot \frac{\partial s}{\partial a} = ")
    assert d.local(f, a).symbol == "∂̄f/∂a" and d.local(f, s).symbol == "∂f/∂s"
    c = f.tanh()
    c.label = "c"
    d = explain(c)  # the bar on a node that is not the root: c = tanh(f), f = s·a
    assert d.text().splitlines()[:2] == ["δ_f = ∂c/∂f = 1 − c·c = 0.9845", "∂c/∂a = δ_f · ∂̄f/∂a + δ_f · ∂f/∂s · ∂s/∂a"]


# a careful reader of the text form: juxtaposition binds tighter than · and /, which bind left to right; a name
# followed by "(" is a call only when it is a function's name; "|" after an operand closes a bar

SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
TOKEN = re.compile(rf"\s*(?:(?P<number>\d+(?:\.\d+)?(?:e[+−]?\d+)?)|(?P<name>[^\W\d{SUPERSCRIPTS}][^\W{SUPERSCRIPTS}]*)"
                   rf"|(?P<power>[{SUPERSCRIPTS}]+)|(?P<sign>\S))")


def read(text, values):
    """The number ``text`` (microgd's Unicode math) stands for, each name having its value in ``values``."""
    tokens = [(m.lastgroup, m[m.lastgroup]) for m in TOKEN.finditer(text)]
    assert "".join(t for _, t in tokens) == text.replace(" ", ""), text
    functions = {op.symbol: op.apply_to_numbers for op in OPS.values() if op.function}
    at = 0

    def peek(*wanted):  # kinds of token, or signs
        return at < len(tokens) and (tokens[at][0] in wanted or (tokens[at][0] == "sign" and tokens[at][1] in wanted))

    def take(sign=None):
        nonlocal at
        token = tokens[at][1]
        assert sign is None or token == sign, (text, at, sign)
        at += 1
        return token

    def total():
        value = product()
        while peek("+", "−"):
            value = value + product() if take() == "+" else value - product()
        return value

    def product():
        value = unary()
        while peek("·", "/"):
            value = value * unary() if take() == "·" else value / unary()
        return value

    def unary():
        if peek("−"):
            take()
            return -unary()
        value = power()
        while peek("number", "name", "(", "["):  # juxtaposition
            value *= power()
        return value

    def power():
        base = atom()
        if peek("^"):
            take()
            return math.pow(base, atom())
        if peek("power"):
            return math.pow(base, int(take().translate(str.maketrans(SUPERSCRIPTS, "0123456789"))))
        return base

    def atom():
        kind, token = tokens[at]
        take()
        if kind == "number":
            return float(token.replace("−", "-"))
        if kind == "name" and token in functions and peek("("):
            take("(")
            args = [total()]
            while peek(","):
                take()
                args.append(total())
            take(")")
            return functions[token](*args)
        if kind == "name":
            return values[token]
        closing = {"(": ")", "|": "|", "[": ">"}[token]
        value = total()
        take(closing)
        if token == "|":
            return abs(value)
        if token == "[":
            take("0")
            take("]")
            return 1.0 if value > 0 else 0.0
        return value

    value = total()
    assert at == len(tokens), (text, tokens[at:])
    return value


def named_nodes(d):
    """The nodes that have a name in derivation ``d``."""
    for v in d.root.topo():
        try:
            d.name(v)
        except ValueError:
            continue
        yield v


def named_values(d):
    """Each name of the derivation and δ_name with its number: the node's value, the engine's gradient."""
    values = {d.name(v): v.data for v in named_nodes(d)}
    values.update((equation.lhs, equation.value) for equation in d.equations if equation.lhs.startswith("δ_"))
    return values


def equation_blocks(text):
    """The printed derivation cut into equations (each its stages, the left-hand side first) and where lines."""
    equations, where = [], []
    for line in text.splitlines():
        if not line or line.startswith("…"):
            continue
        if line.lstrip().startswith("= "):
            equations[-1] += line.split(" = ")[1:]
        elif line.startswith(("where ", " ")):
            where.append(line.removeprefix("where ").strip())
        else:
            equations.append(line.split(" = "))
    return equations, where


POINT = {"x": 0.7, "y": 1.3, "e5": 0.4, "σ_2": 0.2}
trees = st.recursive(
    st.sampled_from([*map(Symbol.variable, POINT), 2.0, 3.0, 0.5, 1e-05, 1.5e-7, -2.0]),
    lambda operands: st.sampled_from(list(OPS.values())).flatmap(
        lambda op: st.tuples(st.just(op), st.tuples(*[operands] * len(op.domain)))),
    max_leaves=8)


def grown(tree):
    """A drawn tree of (op, operands) as an expression: the ops applied to symbols and numbers."""
    if not isinstance(tree, tuple):
        return tree
    op, operands = tree
    return op(*map(grown, operands))


@settings(max_examples=10 * settings().max_examples)  # cheap, and the misreadings are a few shapes among many
@given(trees)
def test_every_printed_expression_reads_back_as_itself(tree):
    try:
        expr = grown(tree)
        expected = evaluate(expr, POINT)
    except (ArithmeticError, ValueError):
        reject()  # outside an op's domain at the point
    if any(node.op is xlogy and evaluate(node.args[0], POINT) == 0.0 for node in getattr(expr, "walk", list)()):
        reject()  # xlogy(0, y) is 0 for every y, as 0·log(y) is only by convention
    text = printed(expr, "text").text
    try:
        value = read(text, POINT)
    except DomainError as error:  # log(exp(a) + exp(b)) overflows where logsumexp, computing it shifted, does not
        if not str(error).startswith("exp: result overflows"):
            raise
        reject()
    assert math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12), text


readable_labels = st.one_of(st.sampled_from(["e5", "E2", "e", "σ", "log", "exp", "x", "é", "a_1", "2", "_", "tanh"]),
                            st.text(st.sampled_from("ex5σ_ "), min_size=1, max_size=3))


@given(st.data())
def test_the_text_reads_back_as_the_expression_it_is(data):
    e = data.draw(expressions(max_depth=3, n_vars=2, max_nodes=6), label="expression")
    leaves = [Value(x, label=f"x{i}") for i, x in enumerate(e.inputs)]
    out = e.build(*leaves)
    labelled_nodes(data, out, readable_labels)
    d = explain(out, inline=data.draw(st.integers(0, 16), label="inline"), digits=17, max_equations=None)
    values = named_values(d)
    equations, where = equation_blocks(d.text())
    assert len(equations) == len(d.equations)
    for stages, equation in zip(equations, d.equations):
        size = sum(math.prod(abs(f.value) for f in term) for term in equation.terms)
        for stage in stages[1:]:
            if "∂" not in stage:
                assert math.isclose(read(stage, values), equation.value, rel_tol=1e-9, abs_tol=1e-9 * (1 + size)), \
                    (stage, equation.value, d.text())
    by_name = {d.name(v): v for v in named_nodes(d) if v.parents}
    for line in where:
        name, _, definition = line.partition(" = ")
        if name in by_name:  # a leaf's value is rounded
            definition = re.sub(r"  \(labelled .*\)$", "", definition)
            assert math.isclose(read(definition, values), by_name[name].data, rel_tol=1e-9, abs_tol=1e-12), line


# -- 14. work and output in proportion to the graph ---------------------------------------------------

def lines_run(call):
    """How many lines of explain's own modules (explain, symbolic) ``call()`` runs: work counted, not timed, so
    that the count cannot flake."""
    count = 0
    mine = {sys.modules[name].__file__ for name in ("microgd.explain", "microgd.symbolic")}

    def count_lines(frame, event, arg):
        nonlocal count
        count += 1
        return count_lines

    def trace(frame, event, arg):
        return count_lines if frame.f_code.co_filename in mine else None

    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(None)
    return count


def weighted_sum_of(n, label):
    x = Value(0.3, label="x")
    out = Value(0.1, label=label(0)) * x
    for i in range(1, n):
        out = out + Value(0.1, label=label(i)) * x
    return out


@pytest.mark.parametrize("label", [lambda i: f"w{i}", lambda i: "w"], ids=["labels", "one label"])
def test_the_work_grows_in_proportion_to_the_leaves(label):
    def printed_both_ways(root):
        d = explain(root)
        return d.text(), d.latex()

    def work(n):
        root = weighted_sum_of(n, label)
        return lines_run(lambda: printed_both_ways(root))

    small, large = work(150), work(600)
    assert large < 4 * small, (small, large)  # 4 times the leaves: 4 times the work at most (printing is bounded)


def test_the_printed_output_is_bounded_by_max_equations():
    x = Value(0.3, label="x")
    y = x
    for _ in range(1000):
        y = y.tanh()  # a chain of 1000 ops: 67 names (v1 ... v66, f), one product of 67 factors
    d = explain(y, max_equations=8)
    lines = d.text().splitlines()
    assert len(lines) == 4 + 8 + 1 and lines[4].startswith("where ")
    assert lines[-1] == ("… 59 more definitions and 59 more factors of long products not shown "
                         "(explain(root, wrt=leaf) for one leaf, max_equations=None for all)")
    assert lines[0] == "∂f/∂x = ∂f/∂v66 · ∂v66/∂v65 · ∂v65/∂v64 · ∂v64/∂v63 · … · ∂v4/∂v3 · ∂v3/∂v2 · ∂v2/∂v1 · ∂v1/∂x"
    assert lines[2] == "      = 0.9853 · 0.9777 · 0.9774 · 0.9771 · … · 0.7213 · 0.6579 · 0.5579 · 0.3784"
    assert r"\cdots" in d.latex() and r"\ldots\ \text{59 more definitions" in d.latex()
    assert len(explain(y, max_equations=None).text().splitlines()) == 4 + 67
