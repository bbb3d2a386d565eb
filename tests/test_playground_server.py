"""The playground's server: the page and its files, the websocket protocol (one run per tab, every value
checked, training live in the background), the replay, the command (its address, Ctrl-C, --record) and the
Jupyter view. The page itself runs in a real browser in test_playground_browser.py."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

if not os.environ.get("CI"):  # under CI the playground extra is installed: a missing one fails there
    pytest.importorskip("starlette", reason='the playground extra is not installed (pip install -e ".[playground]")')

import anyio

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette asks for httpx2 where httpx is installed (Python 3.10 has only httpx)
    from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from microgd.app.cli import main
from microgd.playground import record as record_module
from microgd.playground.run import OPTIONS, Run, validate
from microgd.playground.server import create_app, exposure_warning, is_loopback
from microgd.playground.session import MAX_MESSAGE

SMALL = {"dataset": "xor", "hidden": [3], "lr": 0.5}
REPLAY_DATA = re.compile(r'<script id="replay-data" type="application/json">(.*?)</script>')


def receive(socket_, timeout=10.0):
    """The next message from the server, failing after ``timeout`` seconds instead of waiting forever."""
    async def next_message():
        with anyio.fail_after(timeout):
            return await socket_._send_rx.receive()

    message = socket_.portal.call(next_message)
    socket_._raise_on_close(message)
    return json.loads(message["text"])


def until(socket_, kind, timeout=10.0):
    """Messages up to and including the next one of ``kind``; the last is that one."""
    seen = []
    while not seen or seen[-1]["type"] != kind:
        seen.append(receive(socket_, timeout))
    return seen


@contextlib.contextmanager
def tab(client, path="/ws"):
    """A websocket as a tab opens one: hello, setup and the first frame read, in ``opened``."""
    with client.websocket_connect(path) as socket_:
        socket_.opened = [receive(socket_) for _ in range(3)]
        yield socket_


def step(socket_):
    socket_.send_json({"type": "step"})
    return until(socket_, "frame")[-1]["frame"]


@pytest.fixture
def client():
    return TestClient(create_app(SMALL))


# -- the page -----------------------------------------------------------------------------------------------

def test_the_page_and_its_two_files_are_all_it_needs(client):
    page = client.get("/")
    assert page.status_code == 200 and page.text.startswith("<!DOCTYPE html>")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script, style = client.get("/static/playground.js"), client.get("/static/playground.css")
    assert script.headers["content-type"].startswith("text/javascript") and style.status_code == 200
    assert client.get("/static/run.py").status_code == 404 and client.get("/static/../run.py").status_code == 404
    for text in (page.text, script.text, style.text):  # no CDN, no font or picture from elsewhere
        assert re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text.replace("http://www.w3.org/2000/svg", "")) == []
    for name in ("Play", "Pause", "Step", "Reset", "Download replay"):
        assert re.search(rf"<button [^>]*>{name}</button>", page.text)
    for field, label in [("dataset", "Dataset"), ("lr", "Learning rate"), ("batch", "Batch size"),
                         ("hidden", "Hidden layers"), ("activation", "Activation"), ("loss-function", "Loss"),
                         ("optimizer", "Optimizer"), ("speed", "Speed"), ("csv", "CSV file")]:
        assert re.search(rf'<label for="{field}">{label}\b', page.text), field
    assert 'id="step"' in page.text and 'id="loss"' in page.text and 'role="alert"' in page.text


# -- the protocol -------------------------------------------------------------------------------------------

def test_a_tab_is_greeted_then_sent_its_run(client):
    with tab(client) as socket_:
        hello, setup, frame = socket_.opened
    assert hello["type"] == "hello" and hello["options"] == json.loads(json.dumps(OPTIONS))
    assert isinstance(hello["session"], int) and hello["replay"].startswith("replay?session=")
    assert setup["type"] == "setup" and setup["setup"]["config"] == validate(SMALL)
    assert setup["setup"]["points"] == [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]
    assert setup["setup"]["graph"]["svg"].startswith("<svg")
    assert frame["type"] == "frame" and frame["frame"]["step"] == 0 and frame["playing"] is False


def test_playing_trains_live_a_16_16_network_and_pause_stops_it():
    """2-16-16-1 on 200 points: frames keep coming while it plays, each a later step, the loss falls, Pause stops it
    (how fast is measured in the benchmark of docs/playground.md, not asserted here)."""
    with tab(TestClient(create_app({"hidden": [16, 16], "points": 200}))) as socket_:
        first = socket_.opened[2]["frame"]
        socket_.send_json({"type": "play"})
        frames, started = [], time.perf_counter()
        while time.perf_counter() - started < 1.5:
            message = receive(socket_)
            if message["type"] == "frame":
                frames.append(message["frame"])
                socket_.send_json({"type": "ack"})
        socket_.send_json({"type": "pause"})
        paused = [m for m in until(socket_, "state") + until(socket_, "frame") if m["type"] == "frame"][-1]
        assert paused["playing"] is False
        after = step(socket_)
    steps = [f["step"] for f in frames]
    assert len(frames) >= 2 and steps[-1] > 0
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert frames[-1]["loss"] < first["loss"]
    assert after["step"] == paused["frame"]["step"] + 1  # nothing trained after the pause, and Step is one step
    points = [p for f in frames for p in f["loss_points"]]
    assert points and points == sorted(points) and points[-1][0] == steps[-1]


def test_the_speed_sets_steps_per_second(client):
    with tab(client) as socket_:
        socket_.send_json({"type": "speed", "value": 20})
        socket_.send_json({"type": "play"})
        started = time.perf_counter()
        while time.perf_counter() - started < 1.0:
            message = receive(socket_)
            if message["type"] == "frame":
                socket_.send_json({"type": "ack"})
        socket_.send_json({"type": "pause"})
        seconds = time.perf_counter() - started
        until(socket_, "state")
        stopped = until(socket_, "frame")[-1]["frame"]["step"]
    assert 1 <= stopped <= 1.6 * 20 * seconds + 2  # paced: never faster than asked (a busy machine may be slower)


def test_the_learning_rate_changes_from_the_next_step_without_a_reset(client):
    with tab(client) as socket_:
        for _ in range(3):
            step(socket_)
        socket_.send_json({"type": "lr", "value": 0.05})
        changed = until(socket_, "frame")
        assert [m["type"] for m in changed] == ["frame"] and changed[0]["frame"]["step"] == 3  # no new setup
        frame = step(socket_)
    assert frame["step"] == 4
    assert frame["weight"]["update"] == pytest.approx(-0.05 * frame["weight"]["grad"], rel=1e-9)  # sgd: -lr × grad


def test_selecting_a_sample_and_a_weight_changes_what_the_frames_show(client):
    with tab(client) as socket_:
        before = socket_.opened[2]["frame"]
        socket_.send_json({"type": "sample", "index": 2})
        sample = until(socket_, "frame")[-1]["frame"]
        socket_.send_json({"type": "weight", "name": "b_y"})
        weight = until(socket_, "frame")[-1]["frame"]
    assert sample["sample"]["index"] == 2 and sample["sample"]["x"] == [1.0, -1.0]
    assert sample["graph"].keys() == before["graph"].keys() and sample["graph"] != before["graph"]
    assert sample["activations"][0] == [1.0, -1.0]
    assert weight["weight"]["name"] == "b_y" and weight["derivation"]["weight"] == "b_y"
    assert weight["step"] == 0


BAD = [
    ({"type": "lr", "value": -1}, "lr"),
    ({"type": "lr", "value": "1; import os"}, "lr"),
    ({"type": "configure", "options": {"hidden": "__import__('os')"}}, "hidden"),
    ({"type": "configure", "options": {"dataset": "digits"}}, "dataset"),
    ({"type": "configure", "options": {"hidden": [3], "exec": 1}}, "unknown option"),
    ({"type": "configure", "options": ["moons"]}, "options"),
    ({"type": "sample", "index": 10**6}, "sample"),
    ({"type": "sample", "index": "0"}, "sample"),
    ({"type": "weight", "name": "w_h9_9"}, "weight"),
    ({"type": "speed", "value": -5}, "speed"),
    ({"type": "eval", "code": "1"}, "unknown message type 'eval'"),
    ("{not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    ("x" * (MAX_MESSAGE + 1), "more than the playground takes"),
]


@pytest.mark.parametrize("message, named", BAD, ids=[str(m)[:30] for m, _ in BAD])
def test_a_bad_value_is_answered_in_one_line_and_the_run_goes_on(client, message, named):
    with tab(client) as socket_:
        config = socket_.opened[1]["setup"]["config"]
        step(socket_)
        socket_.send_text(message if isinstance(message, str) else json.dumps(message))
        error = receive(socket_)
        assert error["type"] == "error" and named in error["message"] and "\n" not in error["message"]
        assert len(error["message"]) < 300
        assert step(socket_)["step"] == 2  # the same run, one step further
        socket_.send_json({"type": "reset"})
        assert until(socket_, "setup")[-1]["setup"]["config"] == config


def test_new_options_make_a_new_run_and_reset_goes_back_to_step_0(client):
    with tab(client) as socket_:
        step(socket_)
        socket_.send_json({"type": "configure", "options": {"dataset": "circles", "hidden": [2], "lr": 0.2}})
        setup = until(socket_, "setup")[-1]["setup"]
        assert setup["config"]["dataset"] == "circles" and len(setup["points"]) == 200
        assert receive(socket_)["frame"]["step"] == 0
        step(socket_)
        socket_.send_json({"type": "lr", "value": 0.3})
        until(socket_, "frame")
        socket_.send_json({"type": "reset"})
        again = until(socket_, "setup")[-1]["setup"]
        frame = receive(socket_)["frame"]
    assert frame["step"] == 0 and again["config"] == {**setup["config"], "lr": 0.3}  # reset keeps the learning rate


def test_a_run_that_diverges_stops_and_says_why():
    with tab(TestClient(create_app({"lr": 10, "loss": "squared_error", "activation": "relu"}))) as socket_:
        socket_.send_json({"type": "play"})
        seen = until(socket_, "error", timeout=20)
        error = seen[-1]
        state = until(socket_, "state")[-1]
        frame = until(socket_, "frame")[-1]
    assert "diverged" in error["message"] and "lower the learning rate" in error["message"]
    assert state["playing"] is False and frame["playing"] is False and frame["frame"]["step"] > 0


def test_each_tab_has_its_own_run(client):
    with tab(client) as one, tab(client) as two:
        assert one.opened[0]["session"] != two.opened[0]["session"]
        step(one)
        step(one)
        one.send_json({"type": "configure", "options": {"dataset": "circles", "hidden": [2]}})
        until(one, "frame")
        assert step(two)["step"] == 1
        assert step(one)["step"] == 1
        two.send_json({"type": "reset"})
        assert until(two, "setup")[-1]["setup"]["config"]["dataset"] == "xor"


def test_a_tab_downloads_a_replay_of_its_run(client):
    with tab(client) as socket_:
        link = socket_.opened[0]["replay"]
        for _ in range(3):
            step(socket_)
        page = client.get("/" + link)
    assert page.status_code == 200 and "attachment" in page.headers["content-disposition"]
    data = json.loads(REPLAY_DATA.search(page.text).group(1))
    assert [f["step"] for f in data["frames"]] == [0, 1, 2, 3] and data["setup"]["config"] == validate(SMALL)
    assert client.get("/replay?session=nope").status_code == 404
    assert client.get("/" + link).status_code == 404  # the tab is closed: its run is gone


def test_another_site_cannot_drive_a_run_nor_rebind_the_name():
    app = TestClient(create_app(SMALL, allowed_hosts=["127.0.0.1", "localhost"]), base_url="http://127.0.0.1:8000")
    assert app.get("/").status_code == 200
    assert app.get("/", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding
    with pytest.raises((WebSocketDisconnect, WebSocketDenialResponse)) as refused, app.websocket_connect(
            "ws://127.0.0.1:8000/ws", headers={"origin": "http://evil.example"}):
        pass
    assert getattr(refused.value, "code", None) == 1008 or refused.value.status_code == 403  # closed before accept
    with tab(app, "ws://127.0.0.1:8000/ws") as socket_:  # no Origin: not a browser (the page's is the server's)
        assert socket_.opened[2]["frame"]["step"] == 0


def test_loopback_is_told_from_other_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    warning = exposure_warning("0.0.0.0", 8123)
    assert warning is not None and "not a loopback address" in warning and "8123" in warning
    assert exposure_warning("127.0.0.1", 8123) is None


# -- the command --------------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def command(*args):
    """``microgd playground ARGS`` running; yields (process, first line); Ctrl-C at the end."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    process = subprocess.Popen([sys.executable, "-m", "microgd", "playground", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield process, process.stdout.readline()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def test_the_command_serves_on_a_free_loopback_port_until_ctrl_c():
    import httpx
    from websockets.sync.client import connect

    with command("--no-browser", "--hidden", "2") as (process, line):
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert url, line
        assert httpx.get(url.group(0)).status_code == 200
        with connect(f"ws://127.0.0.1:{url.group(1)}/ws") as socket_:
            hello, setup = json.loads(socket_.recv(timeout=10)), json.loads(socket_.recv(timeout=10))
            assert hello["type"] == "hello" and setup["setup"]["config"]["hidden"] == [2]
            process.send_signal(signal.SIGINT)  # with a tab open
            assert process.wait(timeout=15) == 0
    out, err = process.stdout.read(), process.stderr.read()
    assert "stopped" in out and "Traceback" not in err and "warning" not in err, err


def test_another_host_is_served_when_asked_with_a_warning():
    import httpx

    port = free_port()
    with command("--no-browser", "--host", "0.0.0.0", "--port", str(port)) as (process, line):
        assert f":{port}/" in line
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    err = process.stderr.read()
    assert process.returncode == 0 and "not a loopback address" in err and "Traceback" not in err


def test_a_port_in_use_or_a_bad_option_is_one_line_before_serving(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["playground", "--no-browser", "--port", str(taken.getsockname()[1])]) == 2
    assert main(["playground", "--no-browser", "--dataset", "digits"]) == 2
    assert main(["playground", "--no-browser", "--steps", "5"]) == 2
    assert main(["playground", "--port", "70000"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and all(line.startswith("microgd") for line in lines)
    assert "--port" in lines[0] and "dataset: unknown 'digits'" in lines[1] and "--record" in lines[2]


def test_without_the_extra_the_command_says_how_to_get_it(monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "starlette" or m.startswith(("starlette.", "microgd.playground.s"))]:
        monkeypatch.delitem(sys.modules, name)
    import microgd.playground

    monkeypatch.delattr(microgd.playground, "server", raising=False)
    monkeypatch.setitem(sys.modules, "starlette", None)
    assert main(["playground", "--no-browser"]) == 2
    needs = 'the playground needs its extra: pip install "microgd[playground]"'
    assert capsys.readouterr().err == f"microgd: error: {needs}\n"


# -- recording ----------------------------------------------------------------------------------------------

def replay_data(path):
    page = Path(path).read_text(encoding="utf-8")
    return page, json.loads(REPLAY_DATA.search(page).group(1))


def test_record_writes_a_self_contained_replay(tmp_path, capsys):
    out = tmp_path / "run.html"
    assert main(["playground", "--record", str(out), "--steps", "20", "--every", "5", "--hidden", "3",
                 "--dataset", "circles"]) == 0
    assert capsys.readouterr().out == f"wrote {out}: 20 steps, 5 frames; it opens in a browser, no server needed\n"
    page, data = replay_data(out)
    assert [f["step"] for f in data["frames"]] == [0, 5, 10, 15, 20]
    assert data["setup"]["config"]["dataset"] == "circles" and [p[0] for p in data["losses"]] == list(range(1, 21))
    assert page.count("<script") == 2 and page.count("<style>") == 1 and 'id="slider"' in page
    assert "static/" not in page and not re.search(r"<link rel=\"stylesheet\"|src=", page)
    assert os.listdir(tmp_path) == ["run.html"]


def test_record_checks_its_destination_and_options_before_training(tmp_path, monkeypatch, capsys):
    trained = []
    monkeypatch.setattr(Run, "steps", lambda self, n=1: trained.append(n))
    assert main(["playground", "--record", str(tmp_path / "no" / "run.html"), "--steps", "5"]) == 2
    assert main(["playground", "--record", str(tmp_path / "run.svg")]) == 2
    assert main(["playground", "--record", str(tmp_path / "run.html"), "--optimizer", "lbfgs"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert trained == [] and os.listdir(tmp_path) == [] and len(err) == 3
    assert "does not exist" in err[0] and ".html" in err[1] and "optimizer: unknown 'lbfgs'" in err[2]


def test_ctrl_c_while_recording_keeps_the_steps_done(tmp_path, monkeypatch, capsys):
    steps = Run.steps
    calls = []

    def interrupted(self, n=1):
        calls.append(n)
        if len(calls) == 3:
            raise KeyboardInterrupt
        steps(self, n)

    monkeypatch.setattr(Run, "steps", interrupted)
    out = tmp_path / "run.html"
    assert main(["playground", "--record", str(out), "--steps", "50", "--every", "5", "--hidden", "2"]) == 130
    assert capsys.readouterr().err == f"microgd: interrupted; wrote the 10 step(s) done to {out}\n"
    assert [f["step"] for f in replay_data(out)[1]["frames"]] == [0, 5, 10]


def test_a_replay_keeps_markup_in_names_as_text(tmp_path):
    csv = "<b>a</b>,</script><script>alert(1)</script>,y\n0,0,0\n1,1,1\n0,1,1\n1,0,0\n"
    page, data = replay_data(record_module.record(tmp_path / "run.html", {"dataset": "csv", "csv": csv,
                                                                           "hidden": [2]}, steps=2, every=1).path)
    assert data["setup"]["columns"][1] == "</script><script>alert(1)</script>"
    assert page.count("</script>") == 2  # the data's own </script> is escaped inside the JSON


# -- Jupyter ------------------------------------------------------------------------------------------------

def test_jupyter_shows_the_page_inline_and_trains_the_users_own_model():
    from IPython.core.formatters import DisplayFormatter
    from websockets.sync.client import connect

    from microgd.nn import MLP
    from microgd.playground.jupyter import Playground

    model = MLP(2, [3, 1], activations=["tanh", "sigmoid"], seed=1)
    X, y = [[0, 0], [0, 1], [1, 0], [1, 1]], [0, 1, 1, 0]
    playground = Playground(model, X, y, lr=0.5)
    shown, _ = DisplayFormatter().format(playground)
    assert shown["text/html"] == playground._repr_html_()
    assert re.fullmatch(r'<iframe src="http://127\.0\.0\.1:\d+/\?run=[\w-]+" .*</iframe>', shown["text/html"])
    address = playground.url.replace("http://", "ws://").replace("/?run=", "/ws?run=")
    with connect(address) as socket_:
        messages = [json.loads(socket_.recv(timeout=10)) for _ in range(3)]
        socket_.send(json.dumps({"type": "step"}))
        after = json.loads(socket_.recv(timeout=10))
    setup = messages[1]["setup"]
    assert setup["config"]["dataset"] == "user" and setup["points"] == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert setup["config"]["lr"] == 0.5 and after["frame"]["step"] == 1
    assert playground.model is model and playground.run is not None and playground.run.step_count == 1
    with pytest.raises(ValueError, match="lr"):
        Playground(lr=-1)
