"""Training loop: ``fit(model, X, y)`` runs epochs of (mini-batch) gradient descent and returns the loss history.

    >>> from microgd.nn import MLP
    >>> from microgd.optim import SGD
    >>> from microgd.train import fit
    >>> model = MLP(1, [1], activation="linear", weights=[[[0.0, 0.0]]])
    >>> history = fit(model, [[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0], optimizer=SGD(model.parameters(), lr=0.1),
    ...               epochs=200, seed=0, verbose=False)           # learns y = 2x + 1
    >>> history[-1] < 1e-6 < history[0], [round(p.data, 3) for p in model.parameters()]
    (True, [2.0, 1.0])

``batch_size=1`` is tutorial 2's per-sample SGD. Ctrl-C stops between steps: ``fit`` returns
the history so far (``history.interrupted`` is True) with the model at its last completed step.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Sequence

from .engine import DomainError, Value, no_grad
from .losses import half_squared_error
from .nn import Module
from .optim import SGD, Optimizer

__all__ = ["fit", "History"]


class History(list):
    """The mean loss of each completed epoch, plus ``interrupted`` (stopped by Ctrl-C) and ``steps`` (updates made)."""

    def __init__(self):
        super().__init__()
        self.interrupted = False
        self.steps = 0

    def __repr__(self) -> str:
        return f"History({list.__repr__(self)}, steps={self.steps}, interrupted={self.interrupted})"


def fit(model: Module, X: Sequence[Sequence[float]], y: Sequence, loss: Callable = half_squared_error,
        optimizer: Optimizer | None = None, epochs: int = 100, batch_size: int = 1, shuffle: bool = True,
        seed: int | None = None, verbose: bool = True) -> History:
    """Train ``model`` on rows ``X`` with targets ``y``; returns the :class:`History` of per-epoch mean loss.

    Each step averages ``loss(prediction, target)`` over ``batch_size`` samples (summed over the
    outputs when the model has several, with ``y`` rows of targets), back-propagates it and
    calls ``optimizer.step()`` under ``no_grad()``. The optimizer defaults to ``SGD(lr=0.1)``; the
    loss to tutorial 2's ``1/2 (y - z)^2``. ``shuffle`` reorders the samples every epoch with
    ``random.Random(seed)``. A progress bar shows the loss on a terminal (stderr a tty and ``verbose``).
    """
    if len(X) != len(y):
        raise ValueError(f"fit: {len(X)} input rows but {len(y)} targets")
    if not X:
        raise ValueError("fit: no training data")
    for what, n, low in (("epochs", epochs, 0), ("batch_size", batch_size, 1)):
        if isinstance(n, bool) or not isinstance(n, int) or n < low:
            raise ValueError(f"fit: {what} must be a whole number >= {low}, got {n!r}")
    params = model.parameters()
    optimizer = optimizer if optimizer is not None else SGD(params, lr=0.1)
    rng = random.Random(seed)
    order = list(range(len(X)))
    history = History()
    bar = _progress(epochs) if verbose and sys.stderr.isatty() else None
    try:
        for epoch in range(1, epochs + 1):
            if shuffle:
                rng.shuffle(order)
            total = 0.0
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                optimizer.zero_grad()
                for i in batch:
                    try:
                        sample = _sample_loss(model, X[i], y[i], loss)
                    except DomainError as error:
                        raise DomainError(f"fit: epoch {epoch}, sample {i}: {error} (learning rate too large?)") \
                            from error
                    if not isinstance(sample, Value):
                        raise TypeError(f"fit: loss(prediction, target) must return a Value, got "
                                        f"{type(sample).__name__}")
                    if not math.isfinite(sample.data):
                        raise FloatingPointError(f"fit: the loss became {sample.data!r} at epoch {epoch}, "
                                                 f"sample {i} (learning rate too large?)")
                    total += sample.data
                    (sample if len(batch) == 1 else sample * (1.0 / len(batch))).backward()
                _step(optimizer, params)
                history.steps += 1
            history.append(total / len(order))
            if bar is not None:
                bar.set_postfix(loss=f"{history[-1]:.6g}", refresh=False)
                bar.update()
    except KeyboardInterrupt:
        history.interrupted = True
        if verbose:
            print(f"\ninterrupted after {len(history)} epoch(s), {history.steps} step(s); "
                  "the model holds its last completed step", file=sys.stderr)
    finally:
        if bar is not None:
            bar.close()
    return history


def _sample_loss(model: Module, x: Sequence[float], target, loss: Callable) -> Value:
    """``loss(model(x), target)``, summed over the outputs of a multi-output model."""
    out = model(x)
    if not isinstance(out, list):
        return loss(out, target)
    if not isinstance(target, Sequence) or len(target) != len(out):
        raise ValueError(f"fit: the model has {len(out)} outputs, so each target must list {len(out)} numbers, "
                         f"got {target!r}")
    total = loss(out[0], target[0])
    for o, t in zip(out[1:], target[1:]):
        total = total + loss(o, t)
    return total


def _step(optimizer: Optimizer, params: list[Value]) -> None:
    """``optimizer.step()`` under ``no_grad()``, all or nothing: a Ctrl-C halfway restores the parameters."""
    before = [p.data for p in params]
    try:
        with no_grad():
            optimizer.step()
    except KeyboardInterrupt:
        for p, x in zip(params, before):
            p.data = x
        raise


def _progress(epochs: int):
    from tqdm import tqdm

    return tqdm(total=epochs, desc="training", unit="epoch", file=sys.stderr, dynamic_ncols=True)
