"""The playground: a live page where a learner watches a network learn. :mod:`microgd.playground.run` is the
model side (``Run``: training, and the numbers every view shows), the rest of the package serves the page.
Importing the package imports nothing else; ``Playground`` (the page inside Jupyter) loads on first use:
in a notebook cell, ``from microgd.playground import Playground`` then ``Playground(hidden=[16, 16])``.
"""

from typing import Any

__all__ = ["Playground"]


def __getattr__(name: str) -> Any:
    """``Playground`` from :mod:`microgd.playground.jupyter`, imported when first asked for."""
    if name == "Playground":
        from .jupyter import Playground

        return Playground
    raise AttributeError(f"module 'microgd.playground' has no attribute {name!r}")
