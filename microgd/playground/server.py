"""The playground's web server: the page, its script and style, one websocket per tab, a replay per tab.

An ASGI app (Starlette) run by uvicorn, bound to 127.0.0.1 unless asked otherwise. Each websocket (each tab)
gets its own :class:`~microgd.playground.session.Session`, so its own run; the messages are described there.

    >>> app = create_app({"hidden": [4]})  # each tab's run: a 2-4-1 network
    >>> [route.path for route in app.routes]
    ['/', '/static/{name}', '/replay', '/ws']

``microgd playground`` runs it (:func:`bind`, then :func:`serve`); Jupyter runs it in a thread
(:mod:`microgd.playground.jupyter`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
import webbrowser
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .record import STATIC, replay_html, template
from .session import MAX_MESSAGE, RunFactory, Session

__all__ = ["create_app", "bind", "serve", "url_of", "is_loopback", "exposure_warning", "open_browser", "Launch",
           "LOOPBACK_HOSTS"]

Launch = tuple[dict, RunFactory]  # what a Jupyter cell asked for: the options and how to make its runs
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
HEADERS = {
    # the page runs its own script and nothing else; it fetches only from this server
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FILES = {"playground.js": "text/javascript", "playground.css": "text/css"}


def create_app(options: dict | None = None, *, factory: RunFactory | None = None,
               allowed_hosts: list[str] | None = None, launches: Mapping[str, Launch] | None = None) -> Starlette:
    """The playground as an ASGI app: each tab's run starts from ``options`` (made by ``factory``, Run by
    default), or from ``launches[token]`` for a page opened as ``/?run=token``; requests naming another host
    than ``allowed_hosts`` (when given) are refused, as a guard against DNS rebinding.

        >>> create_app().routes[0].path
        '/'
    """
    sessions: dict[str, Session] = {}

    async def index(request: Request) -> Response:
        return HTMLResponse(template(), headers=HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in FILES:
            return PlainTextResponse("not found", status_code=404)
        return Response((STATIC / name).read_bytes(), media_type=FILES[name], headers=HEADERS)

    async def replay(request: Request) -> Response:
        session = sessions.get(request.query_params.get("session", ""))
        if session is None or session.run is None:
            return PlainTextResponse("no such run: its tab is closed", status_code=404)
        step = session.run.step_count
        page = replay_html(session.setup_data, session.frames, session.losses)
        return HTMLResponse(page, headers={**HEADERS, "Content-Disposition":
                                           f'attachment; filename="microgd-playground-step-{step}.html"'})

    async def playground_socket(websocket: WebSocket) -> None:
        if not _same_origin(websocket):  # another site's page may not drive this one's runs
            await websocket.close(code=1008)
            return
        start, make = options, factory
        token = websocket.query_params.get("run")
        if token and launches is not None and token in launches:
            start, make = launches[token]
        await websocket.accept()
        session = Session(websocket.send_text, start, make)
        sessions[session.token] = session
        try:
            await session.start()
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is None:
                    await session.error(ValueError("messages are JSON text"))
                    continue
                await session.handle(message["text"])
        except WebSocketDisconnect:
            pass
        finally:
            sessions.pop(session.token, None)
            await session.close()

    routes = [Route("/", index), Route("/static/{name}", static), Route("/replay", replay),
              WebSocketRoute("/ws", playground_socket)]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)


def _same_origin(websocket: WebSocket) -> bool:
    """A browser names the page a websocket comes from: it must be this server's (other clients name none)."""
    origin = websocket.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == websocket.headers.get("host")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, localhost).

        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int) -> str | None:
    """The warning for a server others can reach, or None on a loopback address.

        >>> exposure_warning("127.0.0.1", 8000) is None
        True
    """
    if is_loopback(host):
        return None
    return (f"warning: --host {host} is not a loopback address: anyone who can reach this machine on port {port} "
            "can open the playground and train on its CPU")


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket on ``host``:``port`` (port 0: a free port, chosen by the system).

        >>> with bind() as sock:
        ...     sock.getsockname()[1] > 0
        True
    """
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host.strip("[]"), port), family=family, backlog=128)


def url_of(sock: socket.socket, host: str) -> str:
    """The address a browser opens for a server listening on ``sock`` (bound to ``host``).

        >>> with bind() as sock:
        ...     url_of(sock, "127.0.0.1").startswith("http://127.0.0.1:")
        True
    """
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def allowed_hosts(host: str) -> list[str] | None:
    """The Host headers a loopback server answers (None: any, for a server bound to another address)."""
    return [*LOOPBACK_HOSTS, "[::1]"] if is_loopback(host) else None


def serve(app: Starlette, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C (which uvicorn turns into a clean shutdown, then raises
    KeyboardInterrupt here)."""
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws_max_size=4 * MAX_MESSAGE,
                            ws_per_message_deflate=False, timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])


def open_browser(url: str, opener: Callable[[str], object] = webbrowser.open) -> bool:
    """Open ``url`` in the user's browser, in the background; False where no graphical browser can be
    (a Linux session without a display: a text browser would take over the terminal the server prints to).

        >>> open_browser("http://127.0.0.1:1/", opener=lambda url: None) in (True, False)
        True
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    threading.Thread(target=opener, args=(url,), daemon=True).start()
    return True
