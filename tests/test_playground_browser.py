"""The playground's page in a real browser (headless Chromium, as test_stepper.py drives its page): served live
by uvicorn in a thread, it trains, pauses, steps, selects, changes its learning rate and shows a bad value; a
recorded replay opens from disk and its slider moves through the steps."""

import os
import shutil
import tempfile
import threading
import time

import pytest

if not os.environ.get("CI"):  # under CI the playground extra is installed: a missing one fails there
    pytest.importorskip("uvicorn", reason='the playground extra is not installed (pip install -e ".[playground]")')

from microgd.app.cli import main

BROWSER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if None in BROWSER and not os.environ.get("CI"):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="microgd-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = BROWSER[0] or "chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(BROWSER[1] or "/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    """The playground's app served by uvicorn in a thread on a free loopback port: its address."""
    import uvicorn

    from microgd.playground.server import allowed_hosts, bind, create_app, url_of

    sock = bind("127.0.0.1", 0)
    app = create_app({"dataset": "moons", "hidden": [6, 6]}, allowed_hosts=allowed_hosts("127.0.0.1"))
    running = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield url_of(sock, "127.0.0.1")
    running.should_exit = True
    thread.join(10)


def wait(driver, condition, seconds=10.0, what="the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda d: condition(), message=what)


def text(driver, element_id):
    return driver.execute_script("return document.getElementById(arguments[0]).textContent", element_id)


def step_shown(driver):
    return int(text(driver, "step"))


def loss_shown(driver):
    return float(text(driver, "loss"))


def boundary_pixels(driver):
    return driver.execute_script("return document.getElementById('boundary').toDataURL()")


def settled_step(driver):
    """The step shown once it stops changing (a paused run's last frame drawn)."""
    before = step_shown(driver)
    while True:
        time.sleep(0.3)
        now = step_shown(driver)
        if now == before:
            return now
        before = now


def type_into(driver, element_id, value):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value, Keys.TAB)  # leaving the field: its change event


def test_the_live_page_trains_steps_selects_and_refuses_a_bad_value(browser, server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(server)
    wait(browser, lambda: text(browser, "step") == "0" and text(browser, "loss") != "–", what="the first frame")
    assert "its own run" in text(browser, "note")
    lines = browser.execute_script("return document.querySelectorAll('#network line.weight').length")
    assert lines == 6 * 3 + 6 * 7 + 7  # every weight and bias of 2-6-6-1
    assert browser.execute_script("return document.querySelectorAll('#graph svg g.node').length") > 10
    first_loss, first_pixels = loss_shown(browser), boundary_pixels(browser)

    browser.find_element(By.ID, "play").click()  # trains: the step goes up, the loss down, the boundary moves
    wait(browser, lambda: step_shown(browser) >= 300 and loss_shown(browser) < 0.8 * first_loss, 20,
         "the step to pass 300 and the loss to fall")
    assert boundary_pixels(browser) != first_pixels

    browser.find_element(By.ID, "pause").click()  # stops
    paused = settled_step(browser)
    time.sleep(0.4)
    assert step_shown(browser) == paused

    browser.find_element(By.ID, "step-once").click()  # one step, exactly
    wait(browser, lambda: step_shown(browser) != paused, what="Step")
    time.sleep(0.3)
    assert step_shown(browser) == paused + 1

    graph_before = text(browser, "graph")  # a sample clicked: its graph
    canvas = browser.find_element(By.ID, "boundary")
    x, y = browser.execute_script("return window.microgdPlayground.samplePosition(7)")
    ActionChains(browser).move_to_element_with_offset(canvas, x - canvas.size["width"] / 2,
                                                      y - canvas.size["height"] / 2).click().perform()
    wait(browser, lambda: text(browser, "sample-name").startswith("7 ("), what="sample 7 selected")
    wait(browser, lambda: text(browser, "graph") != graph_before, what="sample 7's graph")

    browser.execute_script("document.querySelectorAll('#network line.hit')[6]"
                           ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")  # a weight clicked
    wait(browser, lambda: text(browser, "w-name") == "w_h1_3_1", what="weight w_h1_3_1 selected")
    assert "∂L/∂w_h1_3_1" in text(browser, "derivation") and text(browser, "w-grad") != "–"

    type_into(browser, "lr", "0.05")  # a new learning rate: the run goes on
    time.sleep(0.3)
    assert step_shown(browser) == paused + 1 and text(browser, "alert") == ""
    browser.find_element(By.ID, "step-once").click()
    wait(browser, lambda: step_shown(browser) == paused + 2, what="a step at the new learning rate")

    type_into(browser, "lr", "-1")  # a bad value: said, and the run untouched
    wait(browser, lambda: "lr" in text(browser, "alert"), what="the alert")
    assert browser.find_element(By.ID, "alert").get_attribute("role") == "alert"
    assert step_shown(browser) == paused + 2
    type_into(browser, "hidden", "8,x")
    wait(browser, lambda: "hidden" in text(browser, "alert"), what="the alert for hidden")
    assert step_shown(browser) == paused + 2

    type_into(browser, "lr", "0.05")
    type_into(browser, "hidden", "3")  # a new architecture: a new run at step 0
    wait(browser, lambda: step_shown(browser) == 0 and browser.execute_script(
        "return document.querySelectorAll('#network line.weight').length") == 3 * 3 + 4, what="a new run")
    assert text(browser, "alert") == ""

    csv = tmp_path / "corners.csv"  # a CSV file chosen: a new run on its rows
    csv.write_text("a,b,label\n0,0,0\n1,1,0\n0,1,1\n1,0,1\n", encoding="utf-8")
    browser.find_element(By.ID, "csv").send_keys(str(csv))
    wait(browser, lambda: text(browser, "sample-name").endswith("label = 0)"), what="the CSV's run")
    assert browser.execute_script("return document.getElementById('dataset').value") == "csv"
    assert step_shown(browser) == 0 and text(browser, "alert") == ""
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []


def test_a_recorded_replay_opens_from_disk_and_its_slider_moves_through_the_steps(browser, tmp_path):
    from selenium.webdriver.common.by import By

    path = tmp_path / "run.html"
    assert main(["playground", "--record", str(path), "--steps", "40", "--every", "10", "--hidden", "4"]) == 0
    browser.get(path.resolve().as_uri())
    assert step_shown(browser) == 40 and text(browser, "loss") != "–"
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0  # no fetches
    last_pixels = boundary_pixels(browser)
    browser.execute_script("const s = document.getElementById('slider'); s.value = '0';"
                           "s.dispatchEvent(new Event('input'))")
    assert step_shown(browser) == 0 and boundary_pixels(browser) != last_pixels
    browser.execute_script("const s = document.getElementById('slider'); s.value = '2';"
                           "s.dispatchEvent(new Event('input'))")
    assert step_shown(browser) == 20
    browser.find_element(By.ID, "step-once").click()
    assert step_shown(browser) == 30
    assert browser.execute_script("return document.querySelectorAll('#graph svg g.node').length") > 10
    assert browser.get_log("browser") == []
