"""A run as one self-contained HTML file: the playground's own page, its script and style inlined, the frames
embedded as JSON, and a slider over the steps. It opens from disk, with no server and no network.

    >>> from microgd.playground.record import record
    >>> done = record("run.html", {"hidden": [4]}, steps=20, every=10)
    >>> done.steps, done.frames, done.interrupted
    (20, 3, False)
    >>> "</html>" in open("run.html", encoding="utf-8").read()
    True

``record`` checks that the file can be written before it trains, writes it atomically, and on Ctrl-C writes
the steps done so far (``interrupted`` is then True).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import PathLike, check_writable, write_atomic
from .run import PlaygroundError, Run
from .session import dumps

__all__ = ["record", "replay_html", "Recording", "STATIC", "MAX_FRAMES"]

STATIC = Path(__file__).resolve().parent / "static"
CSS_TAG = '<link rel="stylesheet" href="static/playground.css">'
JS_TAG = '<script src="static/playground.js"></script>'
TITLE_TAG = "<title>microgd playground</title>"
MAX_FRAMES = 1000  # frames one recording holds (--steps / --every): about 10 kB each on two moons


@dataclass(frozen=True)
class Recording:
    """What :func:`record` wrote: the file, the steps trained, the frames kept, whether Ctrl-C cut it short."""

    path: Path
    steps: int
    frames: int
    interrupted: bool


def record(path: PathLike, options: dict | None = None, *, steps: int = 300, every: int = 5, model: Any = None,
           data: Any = None) -> Recording:
    """Train a run for ``steps`` steps, keeping a frame every ``every`` steps, and write its replay to ``path``.

        >>> record("moons.html", {"hidden": [3]}, steps=4, every=2).frames
        3
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PlaygroundError(f"steps {steps!r} must be a whole number >= 1")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise PlaygroundError(f"every {every!r} must be a whole number >= 1")
    if -(-steps // every) + 1 > MAX_FRAMES:
        raise PlaygroundError(f"{steps} steps with a frame every {every} make more than {MAX_FRAMES} frames: "
                              f"use a larger every (at least {-(-steps // (MAX_FRAMES - 1))})")
    check_writable(path)
    run = Run(dict(options or {}), model=model, data=data)
    setup = run.setup()
    frames: list[dict] = []
    losses: list = []
    interrupted = False
    try:
        while True:
            frame = run.frame()
            losses.extend(frame.get("loss_points", []))
            frames.append(_compact(frame))
            if run.step_count >= steps:
                break
            run.steps(min(every, steps - run.step_count))
    except KeyboardInterrupt:
        interrupted = True
    write_atomic(path, replay_html(setup, frames, losses))
    return Recording(Path(path), frames[-1]["step"] if frames else 0, len(frames), interrupted)


def replay_html(setup: dict, frames: Sequence[dict | str], losses: Sequence, title: str | None = None) -> str:
    """The page that replays ``frames`` (dicts, or JSON texts of them) of the run ``setup`` describes.

        >>> replay_html({"config": {}}, [{"step": 0, "loss": 1.0}], [[0, 1.0]])[:15]
        '<!DOCTYPE html>'
    """
    texts = [f if isinstance(f, str) else dumps(f) for f in frames]
    data = f'{{"setup":{dumps(setup)},"losses":{dumps(list(losses))},"frames":[{",".join(texts)}]}}'
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # only in strings
    page = template()
    css = (STATIC / "playground.css").read_text(encoding="utf-8")
    js = (STATIC / "playground.js").read_text(encoding="utf-8")
    name = title or f"microgd playground replay: {setup.get('config', {}).get('dataset', 'a run')}"
    return (page.replace(TITLE_TAG, f"<title>{html.escape(str(name))}</title>")
            .replace(CSS_TAG, f"<style>\n{css}</style>")
            .replace(JS_TAG, f'<script id="replay-data" type="application/json">{data}</script>\n'
                             f"<script>\n{js}</script>"))


def template() -> str:
    """The page as the server serves it (index.html), checked to hold each tag a replay replaces once."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    for tag in (TITLE_TAG, CSS_TAG, JS_TAG):
        if page.count(tag) != 1:
            raise RuntimeError(f"index.html should hold {tag} once")
    return page


def _compact(frame: dict) -> dict:
    """The frame with its decision boundary to 4 decimals (what a colour shows): a third of the file."""
    boundary = frame.get("boundary")
    if isinstance(boundary, list):
        frame = {**frame, "boundary": [None if v is None else round(float(v), 4) for v in boundary]}
    return frame
