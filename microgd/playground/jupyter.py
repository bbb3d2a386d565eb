"""The playground inline in Jupyter: the same page in an IFrame, served by the kernel from a background thread
on a free loopback port (one server for all the cells of the kernel).

    >>> from microgd.playground.jupyter import Playground
    >>> playground = Playground(hidden=[4], lr=0.05)
    >>> playground.url.startswith("http://127.0.0.1:")
    True
    >>> playground._repr_html_().startswith("<iframe")
    True

A cell that ends with ``Playground(model, X, y)`` shows the page; each view of it (each output, each
browser tab) trains its own run of that model on that data, starting from the model's weights.
``playground.run`` is the latest such run, ``playground.model`` its network with the weights it has learned.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from typing import Any

import uvicorn

from .run import Run, validate
from .server import Launch, bind, create_app, url_of
from .session import MAX_MESSAGE

__all__ = ["Playground"]

HEIGHT = 940  # pixels: the whole page, without a scroll bar in the notebook at 1400 pixels wide


class _Server:
    """The kernel's playground server: uvicorn in a daemon thread, the cells' runs registered by token."""

    def __init__(self) -> None:
        self.launches: dict[str, Launch] = {}
        self.sock = bind("127.0.0.1", 0)
        self.url = url_of(self.sock, "127.0.0.1")
        app = create_app(allowed_hosts=["127.0.0.1", "localhost"], launches=self.launches)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", ws_max_size=4 * MAX_MESSAGE,
                                ws_per_message_deflate=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="microgd-playground")
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)


_server: _Server | None = None
_lock = threading.Lock()


def _the_server() -> _Server:
    global _server
    with _lock:
        if _server is None or not _server.thread.is_alive():
            _server = _Server()
        return _server


class Playground:
    """The playground for ``model`` (an MLP of 2 inputs and 1 output; default: a new one from the options) on
    ``X``, ``y`` (default: the options' dataset), shown inline by Jupyter.

        >>> Playground(dataset="circles").options["dataset"]
        'circles'
    """

    def __init__(self, model: Any = None, X: Any = None, y: Any = None, **options: Any) -> None:
        self.options = validate(dict(options))  # a bad option fails here, in the cell, not in the page
        if (X is None) != (y is None):
            raise TypeError("Playground: give both X and y, or neither")
        self._model, self._data = model, None if X is None else (X, y)
        self.run: Run | None = None
        server = _the_server()
        self.token = secrets.token_urlsafe(12)
        server.launches[self.token] = (dict(options), self._make_run)
        self.url = f"{server.url}?run={self.token}"

    def _make_run(self, options: dict) -> Run:
        run = Run(options, model=self._model, data=self._data)
        self.run = run
        return run

    @property
    def model(self) -> Any:
        """The latest run's network, with the weights it has learned (None before the page has opened)."""
        return None if self.run is None else self.run.model

    def _repr_html_(self) -> str:
        return (f'<iframe src="{html.escape(self.url)}" width="100%" height="{HEIGHT}" '
                'style="border: 1px solid #d8dde6; border-radius: 6px;" title="microgd playground"></iframe>')

    def __repr__(self) -> str:
        return f"<microgd Playground at {self.url}>"
