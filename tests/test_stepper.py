"""stepper: the page's steps against backward() (exactly), its template and escaping, and the page itself
driven in headless Chromium, as a file and inline in a notebook's iframe."""

import html
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given

import microgd.stepper
from microgd import DomainError, Value, define_op, rules
from microgd.stepper import BackpropPage, backprop_html, backprop_page
from microgd.testing import expressions
from microgd.viz import find_renderer

needs_renderer = pytest.mark.skipif(find_renderer() is None and not os.environ.get("CI"),
                                    reason="no `dot` and no graphviz-pure (pip install 'microgd[render]')")


def seed_neuron():
    """The first seed: one sigmoid neuron, x = 0.1, target 0.3, squared error (w = 0.5 here)."""
    w = Value(0.5, label="w")
    predicted = (w * Value(0.1)).sigmoid()
    predicted.label = "predicted"
    error = (predicted - 0.3) ** 2
    error.label = "error"
    return error


def neuron_with_reuse():
    """A dot node (w1, w2, x1, x2, b), constants, and a node used three times."""
    w1, w2, b = Value(0.5, label="w1"), Value(-1.0, label="w2"), Value(0.5, label="b")
    h = Value.weighted_sum([w1, w2], [Value(0.7), Value(0.2)], b).sigmoid()
    h.label = "h"
    return (h * h + h.tanh() / 3 - 0.3) ** 2


def replay(root):
    """The backward pass by the book, one state per step: all zeros, then root.grad = 1, then for each
    node in reversed topological order and each input that is not a number, input.grad += what the op's
    rule gives that input (Value.contributions, the call backward makes)."""
    nodes = root.topo()
    grads = {v: 0.0 for v in nodes if not v.is_constant}
    states, edges = [dict(grads)], [None]
    grads[root] = 1.0
    states.append(dict(grads))
    edges.append(None)
    for i in range(len(nodes) - 1, -1, -1):
        node = nodes[i]
        contributions = node.contributions(grads.get(node, 0.0))
        for k, (x, c) in enumerate(zip(node.parents, contributions)):
            if not x.is_constant:
                grads[x] += c
                states.append(dict(grads))
                edges.append((f"v{i}", f"e{i}_{k}", f"v{nodes.index(x)}"))
    return nodes, states, edges


def by_id(nodes, state):
    return {f"v{nodes.index(v)}": g for v, g in state.items()}


def page_data(path_or_page):
    """The page's DATA, read back from the script the way the browser reads it (JSON with \\u escapes)."""
    page = path_or_page.html if isinstance(path_or_page, BackpropPage) else Path(path_or_page).read_text("utf-8")
    return json.loads(re.search(r"const DATA = (.*);\n", page).group(1))


def after_each_step(data):
    """The gradient of every value node after each step, as the page's data says."""
    grads = {node: 0.0 for node in data["values"]}
    states = [dict(grads)]
    for step in data["steps"]:
        assert grads[step["target"]] == step["before"]
        grads[step["target"]] = step["after"]
        states.append(dict(grads))
    return states


def backward_grads(root):
    nodes = root.topo()
    for v in nodes:
        v.grad = 0.0
    root.backward()
    return {f"v{i}": v.grad for i, v in enumerate(nodes) if not v.is_constant}


@needs_renderer
@pytest.mark.parametrize("build", [seed_neuron, neuron_with_reuse])
def test_the_steps_are_backwards_steps_and_end_at_its_gradients(build, tmp_path):
    root = build()
    data = page_data(backprop_html(root, tmp_path / "page.html"))
    nodes, expected, edges = replay(root)
    assert after_each_step(data) == [by_id(nodes, state) for state in expected]
    assert [step["current"][-1] if len(step["current"]) > 1 else None for step in data["steps"]] == \
        [edge[1] if edge else None for edge in edges[1:]]
    assert after_each_step(data)[-1] == backward_grads(root)  # exactly: the same rule calls, the same sums


def test_each_step_shows_local_times_upstream_and_the_rules_contribution():
    """x's sigmoid edge: local × upstream, multiplied again, is off in the last place from what the rule gives
    and backward adds; the page shows the rule's number."""
    m = Value(0.9, label="x") * 1.7
    m.label = "m"
    s = m.sigmoid()
    s.label = "s"
    y = s * s
    local, = s.local_grads()
    upstream = 2 * s.data
    contribution, = s.contributions(upstream)
    assert local * upstream != contribution
    data = page_data(_page_without_rendering(y, number_format=".17g"))
    step = next(step for step in data["steps"] if step["current"][0] == f"v{y.topo().index(s)}")
    assert step["after"] == contribution == backward_grads(y)[step["target"]]
    words = html.unescape(step["words"])
    assert "m.grad += local × upstream = contribution" in words
    assert f"m.grad += {local:.17g} × {upstream:.17g} = {contribution:.17g}" in words
    assert "s</span> has its final grad" in words and "passes it to its input" in words
    assert f"(local = ∂s/∂m = s(1 − s) = {local:.17g})" in words  # the sigmoid rule, run on symbols


def test_each_local_derivative_is_written_as_the_rules_formula_too():
    """The page's formula per edge is the op's vjp rule run on symbols named as the page names the nodes;
    a derivative that is a plain number, or a rule that cannot run on symbols, shows its number alone."""
    w, x = Value(0.5, label="w"), Value(0.1, label="x")
    sop = w * x
    sop.label = "sop"
    predicted = sop.sigmoid()
    predicted.label = "predicted"
    error = (predicted - 0.3) ** 2 + abs(w) + define_op("floaty_test", forward=math.exp,
                                                        vjp=lambda g, out, x: (g * math.exp(x),))(x)
    error.label = "error"
    try:
        words = [html.unescape(step["words"]) for step in page_data(_page_without_rendering(error))["steps"][1:]]
    finally:
        del rules._REGISTRY["floaty_test"]
    local = {re.search(r"local = ∂\S+/∂\S+.*? = -?\d+\.\d{4}\)", w_).group(0) for w_ in words}
    assert "local = ∂predicted/∂sop = predicted(1 − predicted) = 0.2498)" in local
    assert "local = ∂sop/∂w = x = 0.1000)" in local and "local = ∂sop/∂x = w = 0.5000)" in local
    assert any(re.fullmatch(r"local = ∂v\d+/∂w = sign\(w\) = 1.0000\)", entry) for entry in local)  # not the branch
    assert any(re.fullmatch(r"local = ∂v\d+/∂v\d+ = 1.0000\)", entry) for entry in local)  # + : a plain number
    assert any(re.fullmatch(r"local = ∂v\d+/∂x = 1.1052\)", entry) for entry in local)  # math.exp: numbers only


@needs_renderer
def test_the_page_is_one_self_contained_file(tmp_path):
    path = backprop_html(seed_neuron(), tmp_path / "page.html")
    page = path.read_text(encoding="utf-8")
    assert os.listdir(tmp_path) == ["page.html"]
    assert page.count("<svg") == 1 and page.count("<script>") == 1 and page.count("<style>") == 1
    without_namespaces = re.sub(r'xmlns(:\w+)?="[^"]*"|"-//W3C[^"]*"', "", page)
    assert not re.search(r"https?:|src=|@import|url\(|<link rel=\"stylesheet", without_namespaces)
    assert 'id="next"' in page and 'id="prev"' in page and 'id="play"' in page and 'id="slider"' in page


@needs_renderer
def test_the_graph_grads_are_left_alone(tmp_path):
    root = seed_neuron()
    nodes = root.topo()
    for k, v in enumerate(nodes):
        v.grad = float(k) - 2.5
    backprop_html(root, tmp_path / "page.html")
    assert [v.grad for v in nodes] == [float(k) - 2.5 for k in range(len(nodes))]


@needs_renderer
def test_a_single_value_has_one_step(tmp_path):
    data = page_data(backprop_html(Value(2.0, label="a"), tmp_path / "a.html"))
    assert data["values"] == ["v0"]
    assert [(s["target"], s["before"], s["after"]) for s in data["steps"]] == [("v0", 0.0, 1.0)]


@given(expressions(max_nodes=6))
def test_any_expression_ends_at_the_engines_gradients_exactly(e):
    """Graphs with every op, reuse and constants: every step as by the book, the last one == backward()."""
    root = e.build(*map(Value, e.inputs))
    nodes, expected, _ = replay(root)
    states = after_each_step(page_data(_page_without_rendering(root)))
    assert states == [by_id(nodes, state) for state in expected]
    assert states[-1] == backward_grads(root)


def _page_without_rendering(root, **options):
    """backprop_page with the layout step replaced by an empty picture (the layout is not under test here)."""
    run = microgd.stepper.run_renderer
    microgd.stepper.run_renderer = lambda source, format, timeout: b"<svg></svg>"
    try:
        return backprop_page(root, **options)
    finally:
        microgd.stepper.run_renderer = run


def test_jupyter_shows_the_page_inline_as_an_iframe():
    from IPython.core.formatters import DisplayFormatter

    page = _page_without_rendering(Value(2.0, label="a") * 3)
    shown, _ = DisplayFormatter().format(page)
    assert shown["text/html"] == page._repr_html_() and shown["text/html"].startswith("<iframe srcdoc=")
    assert shown["text/plain"].startswith("<microgd BackpropPage:")


def test_a_gradient_that_is_not_finite_is_refused_as_backward_refuses_it(tmp_path):
    root = Value(1e-300, label="x").log() * 1e10  # d/dx = 1e10 / 1e-300: past the largest float
    with pytest.raises(DomainError) as backward_error:
        root.backward()
    with pytest.raises(DomainError, match=r"backward of log\(1e-300\).*not a finite number") as page_error:
        backprop_html(root, tmp_path / "page.html")
    assert "\n" not in str(page_error.value) and "log(1e-300)" in str(backward_error.value)
    with pytest.raises(DomainError, match=r"backward of powc\(0.0, 0.5\)"):
        backprop_page(Value(0.0) ** 0.5)
    assert os.listdir(tmp_path) == []


def test_the_template_is_a_real_html_file_shipped_with_the_package():
    from importlib import resources

    template = resources.files("microgd").joinpath("stepper.html").read_text(encoding="utf-8")
    assert template.startswith("<!DOCTYPE html>") and template.rstrip().endswith("</html>")
    assert re.findall(r"\{\{(\w+)\}\}", template) == ["title", "title", "svg", "data"]
    rest = re.sub(r"\{\{(title|svg|data)\}\}", "", template)
    assert "{{" not in rest and "}}" not in rest  # CSS and JS braces as written, no format-string doubling


def test_labels_and_titles_cannot_inject_markup():
    label = '<img src=x onerror="window.hacked = 1">'
    a = Value(2.0, label=label)
    root = a * a
    root.label = "</script><script>window.hacked = 2</script>"
    page = _page_without_rendering(root, title="</title><script>window.hacked = 3</script>")
    assert page.html.count("<script>") == 1 and page.html.count("</script>") == 1
    assert "<title>&lt;/title&gt;&lt;script&gt;window.hacked = 3&lt;/script&gt;</title>" in page.html
    script = page.html[page.html.index("<script>"):page.html.index("</script>")]
    assert not re.search(r"[<>&]", script.split("const DATA = ", 1)[1].split(";\n", 1)[0])
    words = " ".join(step["words"] for step in page_data(page)["steps"])
    assert html.escape(label) in words and "<img" not in words and "<script" not in words
    default = _page_without_rendering(root)
    assert f"<h1>Backward pass of {html.escape(root.label)}</h1>" in default.html


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="backprop_html: .* should end in .html"):
        backprop_html(seed_neuron(), tmp_path / "page.svg")
    with pytest.raises(ValueError, match="BackpropPage.save: .* should end in .html"):
        BackpropPage("<!DOCTYPE html>").save(tmp_path / "page.svg")
    with pytest.raises(TypeError, match="backprop_page: expected a microgd Value"):
        backprop_page(1.0)
    with pytest.raises(ValueError, match="backprop_page: rankdir must be one of"):
        backprop_page(seed_neuron(), rankdir="up")
    with pytest.raises(TypeError, match="expected a microgd Value"):
        backprop_html([1.0], tmp_path / "page.html")
    with pytest.raises(ValueError, match="more than max_nodes=5.*max_nodes=8"):
        backprop_html(seed_neuron(), tmp_path / "page.html", max_nodes=5)


# -- the page in a real browser --

BROWSER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if None in BROWSER and not os.environ.get("CI"):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="microgd-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = BROWSER[0] or "chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(BROWSER[1] or "/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def dom_grads(driver):
    pairs = driver.execute_script(
        "return Array.from(document.querySelectorAll('g.value')).map(g => [g.id, g.getAttribute('data-grad')])")
    return {node: float(grad) for node, grad in pairs}


def classes(driver, element_id):
    return driver.execute_script("return document.getElementById(arguments[0]).getAttribute('class')", element_id)


@needs_renderer
@pytest.mark.parametrize("build", [seed_neuron, neuron_with_reuse])
def test_clicking_next_shows_the_engines_gradients_step_by_step(browser, build, tmp_path):
    from selenium.webdriver.common.by import By

    root = build()
    nodes, expected, edges = replay(root)
    browser.get(backprop_html(root, tmp_path / "page.html").resolve().as_uri())
    assert browser.get_log("browser") == []  # no console errors (nor anything else)
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0  # no fetches
    assert dom_grads(browser) == by_id(nodes, expected[0]) and set(expected[0].values()) == {0.0}
    next_button = browser.find_element(By.ID, "next")
    for n in range(1, len(expected)):
        next_button.click()
        assert dom_grads(browser) == by_id(nodes, expected[n]), f"after {n} clicks"
        if edges[n]:
            node, edge, target = edges[n]
            assert "current" in classes(browser, node) and "current" in classes(browser, edge)
            assert "target" in classes(browser, target)
            words = browser.find_element(By.ID, "explain").text
            assert ".grad += local × upstream" in words and f"= {expected[n][nodes[int(target[1:])]]:.4f}" in words
    assert dom_grads(browser) == backward_grads(root)
    assert not next_button.is_enabled()
    browser.find_element(By.ID, "prev").click()
    assert dom_grads(browser) == by_id(nodes, expected[-2])
    browser.execute_script("const s = document.getElementById('slider'); s.value = '2';"
                           "s.dispatchEvent(new Event('input'))")
    assert dom_grads(browser) == by_id(nodes, expected[2])
    assert browser.find_element(By.ID, "counter").text == f"step 2 / {len(expected) - 1}"
    assert browser.get_log("browser") == []


def step_through(driver, expected, nodes):
    """Click next through every step, checking the grads after each click."""
    from selenium.webdriver.common.by import By

    next_button = driver.find_element(By.ID, "next")
    for n in range(1, len(expected)):
        next_button.click()
        assert dom_grads(driver) == by_id(nodes, expected[n]), f"after {n} clicks"
    assert not next_button.is_enabled()


@needs_renderer
def test_the_page_shows_inline_in_a_notebook_iframe(browser, tmp_path):
    """What Jupyter does with _repr_html_: the page in a sandboxed iframe, its script working inside it."""
    from selenium.webdriver.common.by import By

    root = neuron_with_reuse()
    nodes, expected, _ = replay(root)
    page = backprop_page(root)
    inline = page._repr_html_()
    assert inline.startswith("<iframe srcdoc=\"") and 'sandbox="allow-scripts"' in inline
    assert html.unescape(re.search(r'srcdoc="([^"]*)"', inline).group(1)) == page.html
    notebook = tmp_path / "notebook.html"
    notebook.write_text(f"<!DOCTYPE html><html><body><p id='cell'>out[1]:</p>{inline}</body></html>", "utf-8")
    browser.get(notebook.as_uri())
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    try:
        assert dom_grads(browser) == by_id(nodes, expected[0])
        step_through(browser, expected, nodes)
        assert dom_grads(browser) == backward_grads(root)
    finally:
        browser.switch_to.default_content()
    assert browser.get_log("browser") == []


@needs_renderer
def test_markup_in_labels_stays_text_in_the_browser(browser, tmp_path):
    from selenium.webdriver.common.by import By

    label = '<img src=x onerror="window.hacked = 1"><b>w</b>'
    w = Value(0.5, label=label)
    root = (w * w).tanh()
    root.label = "</script><script>window.hacked = 2</script>"
    nodes, expected, _ = replay(root)
    path = backprop_html(root, tmp_path / "page.html", title='<script>window.hacked = 3</script>')
    browser.get(path.resolve().as_uri())
    step_through(browser, expected, nodes)
    browser.find_element(By.ID, "prev").click()  # the last step into w
    assert label in browser.find_element(By.ID, "explain").text
    assert browser.execute_script("return document.querySelectorAll('#explain img, #explain b b').length") == 0
    assert browser.execute_script("return window.hacked === undefined")
    assert browser.title == "<script>window.hacked = 3</script>"
    assert browser.get_log("browser") == []
