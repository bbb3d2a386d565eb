"""One browser tab's run: the messages of the playground's protocol, and training in a background task.

The page and the server speak JSON over one websocket per tab. The page sends objects with a ``type``:

========================================  ==========================================================
``{"type": "configure", "options": {}}``  a new run with these options (architecture, data, ...)
``{"type": "reset"}``                     back to step 0: the same run from its first weights
``{"type": "play"}`` / ``"pause"``        train in the background / stop (a frame follows a pause)
``{"type": "step"}``                      one training step, then a frame
``{"type": "lr", "value": 0.05}``         the learning rate, from the next step on (no reset)
``{"type": "speed", "value": 50}``        steps per second while playing (0: as fast as it goes)
``{"type": "sample", "index": 3}``        select a sample (its graph and activations)
``{"type": "weight", "name": "w_h1_2"}``  select a weight (its derivation and numbers)
``{"type": "ack"}``                       the page has drawn a frame (at most WINDOW are in flight)
========================================  ==========================================================

and receives ``hello`` (the options the page may offer, the tab's session number and its replay link), then
``setup`` (once per run: points, network layout, graph picture), ``frame`` (what changed) and ``error``
(one line; the run is left as it was). Every value is checked by :class:`~microgd.playground.run.Run`;
nothing the page sends is ever evaluated.

    >>> import asyncio, json
    >>> sent = []
    >>> async def send(text): sent.append(json.loads(text))
    >>> session = Session(send, {"dataset": "xor", "hidden": [2]})
    >>> asyncio.run(session.start())
    >>> [m["type"] for m in sent]
    ['hello', 'setup', 'frame']
    >>> asyncio.run(session.handle('{"type": "step"}'))
    >>> sent[-1]["frame"]["step"]
    1
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocketDisconnect

from .run import OPTIONS, PlaygroundError, Run

__all__ = ["Session", "Send", "RunFactory", "dumps", "FPS", "WINDOW", "MAX_MESSAGE"]

Send = Callable[[str], Awaitable[None]]
RunFactory = Callable[[dict], Run]

FPS = 15  # frames per second pushed while playing
WINDOW = 3  # frames sent and not yet drawn (acknowledged) before the server waits for the page
MAX_SPEED = 100_000  # steps per second the speed control may ask for
MAX_MESSAGE = 1_000_000  # characters in one message from the page (a CSV file travels inside one)
KEEP_FRAMES = 200  # frames a tab keeps for its replay (thinned evenly past that)
KEEP_LOSSES = 20_000  # (step, loss) pairs a tab keeps for its replay's loss curve
_numbers = itertools.count(1)


class Session:
    """One tab's run and the background task that trains it; ``handle`` takes each message the page sends.

        >>> Session(lambda text: None, {}).playing
        False
    """

    def __init__(self, send: Send, options: dict | None = None, factory: RunFactory | None = None) -> None:
        self.send_text = send
        self.options = dict(options or {})
        self.factory: RunFactory = factory or Run
        self.number = next(_numbers)
        self.token = secrets.token_urlsafe(12)  # the replay link's secret: one tab cannot read another's run
        self.run: Run | None = None
        self.playing = False
        self.speed = 0.0  # steps per second; 0: as fast as frames allow
        self.in_flight = 0
        self.setup_data: dict = {}
        self.frames: list[str] = []  # the frames sent, as JSON, for a replay
        self.losses: list[list[float]] = []
        self._task: asyncio.Task | None = None
        self._per_step = 1e-3  # seconds per step, measured as the run trains
        self._frame_cost = 0.02  # seconds to make and send a frame, likewise
        self._sending = asyncio.Lock()

    async def start(self) -> None:
        """Say hello and make the first run (with the server's options)."""
        await self.send({"type": "hello", "session": self.number, "options": OPTIONS,
                         "replay": f"replay?session={self.token}"})
        try:
            await asyncio.to_thread(self._new_run, self.options)
        except PlaygroundError as error:  # the server's own options are bad: the defaults instead
            await self.error(error)
            await asyncio.to_thread(self._new_run, {})
        await self._send_setup()

    async def handle(self, text: str) -> None:
        """Act on one message from the page; a bad one is answered with an error, the run left as it was."""
        try:
            message = _message(text)
            await self._act(message["type"], message)
        except WebSocketDisconnect:  # the page went away while we answered: the socket's loop ends the session
            raise
        except Exception as error:  # a bad value (PlaygroundError), or training that failed: one line, go on
            await self.error(error)

    async def _act(self, kind: str, message: dict) -> None:
        run = self._run()
        if kind == "ack":
            self.in_flight = max(0, self.in_flight - 1)
        elif kind == "configure":
            options = message.get("options")
            if not isinstance(options, dict):
                raise PlaygroundError("options: must be an object of options")
            await self._replace(options)
        elif kind == "reset":
            await self._paused(asyncio.to_thread(run.reset))
            self.setup_data, self.frames, self.losses = run.setup(), [], []  # the config as it is now
            await self._send_setup()
        elif kind == "play":
            self._play_on()
            await self.send({"type": "state", "playing": True})
        elif kind == "pause":
            await self._stop()
            await self.send({"type": "state", "playing": False})
            await self._send_frame()
        elif kind == "step":
            await self._stop()
            run.steps(1)
            await self._send_frame()
        elif kind == "lr":
            run.set_lr(message.get("value"))
            await self._send_frame()
        elif kind == "speed":
            self.speed = _speed(message.get("value"))
        elif kind == "sample":
            run.select_sample(message.get("index"))  # type: ignore[arg-type]
            await self._send_frame()
        elif kind == "weight":
            run.select_weight(message.get("name"))  # type: ignore[arg-type]
            await self._send_frame()
        else:
            raise PlaygroundError(f"unknown message type {kind!r}")

    def _run(self) -> Run:
        if self.run is None:
            raise PlaygroundError("no run yet")
        return self.run

    def _new_run(self, options: dict) -> None:
        """Replace the run (only once the new one is made: a bad option leaves the old one as it was)."""
        run = self.factory(dict(options))
        setup = run.setup()
        self.run, self.setup_data, self.frames, self.losses = run, setup, [], []

    async def _replace(self, options: dict) -> None:
        """A new run, made in a thread (tracing it and laying out its graph take a moment) while this one
        waits, paused; playing goes on with the new run."""
        await self._paused(asyncio.to_thread(self._new_run, options))
        await self._send_setup()

    async def _paused(self, work: Awaitable[None]) -> None:
        """Do ``work`` with training stopped, then carry on playing if it was (also when ``work`` fails)."""
        was_playing = self.playing
        await self._stop()
        try:
            await work
        finally:
            if was_playing:
                self._play_on()

    def _play_on(self) -> None:
        self.playing = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._play())

    async def _send_setup(self) -> None:
        await self.send({"type": "setup", "setup": self.setup_data, "playing": self.playing})
        await self._send_frame()

    async def _send_frame(self) -> None:
        frame = self._run().frame()
        self.losses.extend(frame.get("loss_points", []))
        text = dumps(frame)
        self._keep(text)
        self.in_flight += 1
        await self._send(f'{{"type":"frame","playing":{dumps(self.playing)},"frame":{text}}}')

    def _keep(self, text: str) -> None:
        """Keep the frame (and its losses) for a replay, thinning the oldest evenly past the limits."""
        self.frames.append(text)
        if len(self.frames) > KEEP_FRAMES:
            self.frames = [*self.frames[:-1:2], self.frames[-1]]
        if len(self.losses) > KEEP_LOSSES:
            self.losses = self.losses[::2]

    async def _play(self) -> None:
        """Train while playing: each tick runs k steps and pushes a frame, FPS ticks a second; k is what the
        speed asks for, at most what fits in the tick beside the frame (both timed as the run goes)."""
        tick, owed = 1.0 / FPS, 0.0
        last = time.perf_counter()
        try:
            while self.playing:
                started = time.perf_counter()
                budget = max(0.2 * tick, 0.85 * tick - self._frame_cost)
                most = max(1, int(budget / self._per_step))
                if self.speed:
                    owed = min(owed + self.speed * (started - last), float(most))
                    k = int(owed)
                    owed -= k
                else:
                    k = most
                last = started
                if k:
                    self._run().steps(k)
                    stepped = time.perf_counter()
                    self._per_step = 0.7 * self._per_step + 0.3 * (stepped - started) / k
                    if self.in_flight < WINDOW:
                        await self._send_frame()
                        self._frame_cost = 0.7 * self._frame_cost + 0.3 * (time.perf_counter() - stepped)
                await asyncio.sleep(max(0.0, tick - (time.perf_counter() - started)))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # training failed (diverged, ...): stop, say why, show where it stopped
            self.playing = False
            self._task = None
            await self.error(error)
            await self.send({"type": "state", "playing": False})
            await self._send_frame()

    async def _stop(self) -> None:
        """Stop playing: the task ends at its next tick (never cut off mid-message)."""
        self.playing = False
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            await task

    async def close(self) -> None:
        """Stop training at once (the tab went away)."""
        self.playing = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def error(self, error: BaseException) -> None:
        """Tell the page, in one line, what went wrong."""
        text = " ".join(str(error).split())
        if not isinstance(error, PlaygroundError):  # not a value the page sent: name what failed
            text = f"{type(error).__name__}: {text}" if text else type(error).__name__
        await self.send({"type": "error", "message": text})

    async def send(self, message: dict) -> None:
        await self._send(dumps(message))

    async def _send(self, text: str) -> None:
        async with self._sending:  # the training task and the replies take turns, message by message
            await self.send_text(text)


def _message(text: str) -> dict:
    if len(text) > MAX_MESSAGE:
        raise PlaygroundError(f"a message of {len(text):,} characters is more than the playground takes "
                              f"({MAX_MESSAGE:,})")
    try:
        message = json.loads(text)
    except ValueError:
        raise PlaygroundError("a message that is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise PlaygroundError("a message must be a JSON object with a 'type'")
    return message


def _speed(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_SPEED:
        raise PlaygroundError(f"speed {value!r} must be a number of steps per second from 0 to {MAX_SPEED:,} "
                              "(0: as fast as it goes)")
    return float(value)


def dumps(message: Any) -> str:
    """JSON the browser can parse: compact, numpy's numbers as Python's, a number that is not finite (a
    diverged loss) as null.

        >>> dumps({"loss": float("nan"), "step": 2})
        '{"loss":null,"step":2}'
    """
    try:
        return json.dumps(message, allow_nan=False, separators=(",", ":"), default=_plain)
    except ValueError:
        return json.dumps(_finite(message), allow_nan=False, separators=(",", ":"), default=_plain)


def _plain(value: Any) -> Any:
    """numpy's numbers and arrays as Python's."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _finite(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
