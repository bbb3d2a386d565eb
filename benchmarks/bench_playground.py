"""The playground's speed as a learner sees it: steps a second and frames drawn a second, in a real browser.

    pip install -e ".[playground,test]"      # the server, and selenium; Chromium and chromedriver from the system
    python benchmarks/bench_playground.py [--seconds 5] [--hidden 16,16] [--hidden 8,8]

Serves the playground with uvicorn on a free loopback port, opens its page in headless Chromium, presses Play
(two moons of 200 points, batch 16, speed "as fast as it goes") and, for ``--seconds``, counts the steps the
page's ``#step`` reports and how often the page redraws it (a frame drawn), for each ``--hidden`` network.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time

FRAMES = """window.framesDrawn = 0;
new MutationObserver(() => { window.framesDrawn += 1; })
  .observe(document.getElementById("step"), {childList: true, characterData: true, subtree: true});"""


def serve(hidden: list[int]):
    """The playground served in a thread: its address, and a function that stops it."""
    import uvicorn

    from microgd.playground.server import allowed_hosts, bind, create_app, url_of

    sock = bind("127.0.0.1", 0)
    app = create_app({"dataset": "moons", "hidden": hidden, "points": 200, "batch": 16},
                     allowed_hosts=allowed_hosts("127.0.0.1"))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return url_of(sock, "127.0.0.1"), stop


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='microgd-bench-')}"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or "chromium"
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)


def measure(driver, hidden: list[int], seconds: float) -> tuple[float, float]:
    """Steps a second and frames drawn a second while the page plays."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, stop = serve(hidden)
    try:
        driver.get(url)
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "step").text.strip() == "0")
        speed = driver.find_element(By.ID, "speed") if driver.find_elements(By.ID, "speed") else None
        if speed is not None:  # "as fast as it goes": the slider at its end
            driver.execute_script("arguments[0].value = arguments[0].max; arguments[0].dispatchEvent("
                                  "new Event('input')); arguments[0].dispatchEvent(new Event('change'));", speed)
        driver.execute_script(FRAMES)
        driver.find_element(By.XPATH, "//button[normalize-space()='Play']").click()
        time.sleep(1.0)  # warm up
        first, drawn = int(driver.find_element(By.ID, "step").text), driver.execute_script("return framesDrawn")
        start = time.perf_counter()
        time.sleep(seconds)
        last, frames = int(driver.find_element(By.ID, "step").text), driver.execute_script("return framesDrawn")
        elapsed = time.perf_counter() - start
        driver.find_element(By.XPATH, "//button[normalize-space()='Pause']").click()
    finally:
        stop()
    return (last - first) / elapsed, (frames - drawn) / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to measure each network")
    parser.add_argument("--hidden", action="append", metavar="SIZES",
                        help="hidden layer sizes, e.g. 16,16 (default: 8,8 and 16,16)")
    args = parser.parse_args(argv)
    driver = browser()
    try:
        for sizes in args.hidden or ["8,8", "16,16"]:
            hidden = [int(n) for n in sizes.split(",")]
            steps, frames = measure(driver, hidden, args.seconds)
            print(f"2-{'-'.join(map(str, hidden))}-1 on 200 points: {steps:,.0f} steps a second, "
                  f"{frames:.1f} frames drawn a second")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
