"""stepper: the page's step data against the engine, and the page itself driven in headless Chromium."""

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given

import microgd.stepper
from microgd import Value
from microgd.stepper import backprop_html
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
    node in reversed topological order and each non-constant parent, parent.grad += local * upstream."""
    nodes = root.topo()
    grads = {v: 0.0 for v in nodes if not v.is_constant}
    states, edges = [dict(grads)], [None]
    grads[root] = 1.0
    states.append(dict(grads))
    edges.append(None)
    for i in range(len(nodes) - 1, -1, -1):
        node = nodes[i]
        for k, (parent, local) in enumerate(zip(node.parents, node.local_grads())):
            if not parent.is_constant:
                grads[parent] += local * grads[node]
                states.append(dict(grads))
                edges.append((f"v{i}", f"e{i}_{k}", f"v{nodes.index(parent)}"))
    return nodes, states, edges


def by_id(nodes, state):
    return {f"v{nodes.index(v)}": g for v, g in state.items()}


def page_data(path):
    return json.loads(re.search(r"const DATA = (.*);\n", Path(path).read_text(encoding="utf-8")).group(1))


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
def test_the_steps_replay_the_backward_pass_and_end_at_its_gradients(build, tmp_path):
    root = build()
    data = page_data(backprop_html(root, tmp_path / "page.html"))
    nodes, expected, edges = replay(root)
    assert after_each_step(data) == [by_id(nodes, state) for state in expected]
    assert [step["current"][-1] if len(step["current"]) > 1 else None for step in data["steps"]] == \
        [edge[1] if edge else None for edge in edges[1:]]
    assert after_each_step(data)[-1] == backward_grads(root)  # these graphs replay bit for bit


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
def test_any_expression_ends_at_the_engines_gradients(e):
    """The page refuses to be written if its last step is off by more than rounding; this draws
    graphs with every op, reuse and constants to make sure it never has to."""
    root = e.build(*map(Value, e.inputs))
    nodes, expected, _ = replay(root)
    with tempfile.TemporaryDirectory() as folder:
        data = page_data(_page_without_rendering(root, Path(folder) / "page.html"))
    assert after_each_step(data)[-1] == by_id(nodes, expected[-1])


def _page_without_rendering(root, path):
    """backprop_html with the layout step replaced by an empty picture (the layout is not under test here)."""
    run = microgd.stepper.run_renderer
    microgd.stepper.run_renderer = lambda source, format: b"<svg></svg>"
    try:
        return backprop_html(root, path)
    finally:
        microgd.stepper.run_renderer = run


def test_a_replay_that_disagrees_with_the_engine_is_never_written(tmp_path, monkeypatch):
    root = seed_neuron()
    monkeypatch.setattr(microgd.stepper, "run_renderer", lambda source, format: b"<svg></svg>")
    exact = Value.local_grads
    monkeypatch.setattr(Value, "local_grads", lambda v: tuple(1.01 * d for d in exact(v)))
    with pytest.raises(AssertionError, match="replaying the rules gives grad .* but the engine computes"):
        backprop_html(root, tmp_path / "page.html")
    assert not (tmp_path / "page.html").exists()


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="should end in .html"):
        backprop_html(seed_neuron(), tmp_path / "page.svg")
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
