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

The graph of one sample's loss has the same shape for every sample, so by default ``fit`` traces it
once (:func:`microgd.tape.trace`) and replays the compiled tape on every sample, adding the gradients
in the order the eager engine adds them: the same seed gives the same weights with either engine.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import checks
from .engine import DomainError, Value, is_recording, no_grad
from .losses import binary_cross_entropy, cross_entropy, half_squared_error, hinge, squared_error
from .nn import MLP, Layer, Module, Neuron
from .optim import SGD, Optimizer
from .table import number
from .tape import Tape, trace

__all__ = ["fit", "History", "ENGINES"]

ENGINES = ("auto", "tape", "batch", "eager")
BUILT_IN_LOSSES = (squared_error, half_squared_error, binary_cross_entropy, hinge, cross_entropy)
BATCHED_FROM = 32
"""The smallest mini-batch that "auto" replays with numpy: below it, numpy's cost per call outweighs the
work it does (measured per epoch, on a 64-32-10 MLP and a 2-8-8-1 one alike: the batched replay costs
the same as the scalar one at 24 to 32 samples a batch, twice as much at 8, half as much at 64)."""


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
        seed: int | None = None, verbose: bool = True, engine: str = "auto") -> History:
    """Train ``model`` on rows ``X`` with targets ``y``; returns the :class:`History` of per-epoch mean loss.

    Each step averages the gradient of ``loss(prediction, target)`` over ``batch_size`` samples (the loss
    summed over the outputs when the model has several, with ``y`` rows of targets; a loss marked
    :func:`~microgd.losses.over_outputs`, such as ``cross_entropy``, gets the whole list of outputs) and
    calls ``optimizer.step()`` under ``no_grad()``. The optimizer defaults to ``SGD(lr=0.1)``; the loss to
    tutorial 2's ``1/2 (y - z)^2``. ``shuffle`` reorders the samples every epoch with
    ``random.Random(seed)``, or with Python's global ``random`` when ``seed`` is None (so
    ``random.seed(...)`` makes a run repeatable, as it does the initial weights). A progress bar shows
    the loss on a terminal (stderr a tty and ``verbose``).

    ``engine`` says how each sample's loss and gradient are computed; every choice gives the same numbers:

    * "eager": the graph of every sample is built and ``backward()`` run on it;
    * "tape": one sample's loss is traced once and the compiled tape replayed on each sample;
    * "batch": the tape replayed on a whole mini-batch at once with numpy (its exp, log, tanh and ``**``
      may differ from Python's in the last bit; + - * /, relu and abs give the same floats);
    * "auto" (default): "batch" for mini-batches of at least 32 when numpy is installed, else "tape",
      for a ``microgd.nn`` MLP, Layer or Neuron with a built-in loss on rows of numbers; "eager"
      otherwise. These models have no branch on the data and the built-in losses are branch-free, so
      one trace holds for every sample (every target is checked by the loss up front instead).

    With "tape" or "batch" chosen for another model or loss, ``fit`` retraces on a second sample
    (:meth:`~microgd.tape.Tape.check`) and refuses a loss whose graph changes with the data; a change
    that those two samples do not show is not caught: such a loss needs "eager".
    """
    if len(X) != len(y):
        raise ValueError(f"fit: {len(X)} input rows but {len(y)} targets")
    if len(X) == 0:
        raise ValueError("fit: no training data")
    checks.whole(epochs, "fit: epochs", 0)
    checks.whole(batch_size, "fit: batch_size", 1)
    checks.seed(seed, "fit: seed")
    params = model.parameters()
    optimizer = optimizer if optimizer is not None else SGD(params, lr=0.1)
    rng = random if seed is None else random.Random(seed)
    replay = _replay(engine, model, X, y, loss, batch_size)
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
                losses = replay(batch, epoch) if replay is not None else _eager(model, X, y, loss, batch, epoch)
                for sample in losses:
                    total += sample
                if len(batch) > 1:
                    for p in optimizer.params:
                        p.grad /= len(batch)
                _step(optimizer, params)
                history.steps += 1
            history.append(total / len(order))
            if bar is not None:
                bar.set_postfix(loss=number(history[-1]), refresh=False)
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


def _at(epoch: int, i: int, error: DomainError) -> DomainError:
    return DomainError(f"fit: epoch {epoch}, sample {i}: {error} (learning rate too large?)")


def _eager(model: Module, X: Sequence, y: Sequence, loss: Callable, batch: list[int], epoch: int) -> list[float]:
    """Each sample's loss, its graph built and back-propagated: the gradients add up in the parameters."""
    losses = []
    for i in batch:
        try:
            sample = _sample_loss(model, X[i], y[i], loss)
        except DomainError as error:
            raise _at(epoch, i, error) from error
        losses.append(_checked(sample).data)
        sample.backward()
    return losses


def _checked(sample: Any) -> Value:
    if not isinstance(sample, Value):
        raise TypeError(f"fit: loss(prediction, target) must return a Value, got {type(sample).__name__}")
    return sample


def _sample_loss(model: Module, x: Any, target: Any, loss: Callable) -> Value:
    return _combine(model(x), target, loss)


def _combine(out: Value | list[Value], target: Any, loss: Callable) -> Value:
    """``loss(out, target)``, summed over the outputs of a multi-output model unless the loss takes them all."""
    if getattr(loss, "over_outputs", False):
        return loss(out if isinstance(out, list) else [out], target)
    if not isinstance(out, list):
        return loss(out, target)
    if not isinstance(target, Sequence) or len(target) != len(out):
        raise ValueError(f"fit: the model has {len(out)} outputs, so each target must list {len(out)} numbers, "
                         f"got {target!r}")
    total = loss(out[0], target[0])
    for o, t in zip(out[1:], target[1:]):
        total = total + loss(o, t)
    return total


# -- the tape -----------------------------------------------------------------------------------------------

def _replay(engine: str, model: Module, X: Sequence, y: Sequence, loss: Callable, batch_size: int) -> _Replay | None:
    """The tape engine ``engine`` asks for (None: the eager one), after checking the data it will replay."""
    if engine not in ENGINES:
        raise ValueError(f"fit: engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
    if engine == "eager":
        return None
    known = type(model) in (MLP, Layer, Neuron) and loss in BUILT_IN_LOSSES
    if engine == "auto" and not (known and is_recording()):
        return None
    rows, targets = _numbers(X, "X"), _numbers(y, "y")
    if rows is None or targets is None:
        if engine == "auto":
            return None
        raise TypeError(f"fit: engine={engine!r} replays a tape on numbers: X and y must hold numbers and lists "
                        "of numbers (train on Values with engine='eager')")
    nin, nout = model.sizes[0], model.sizes[-1]
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise ValueError(f"fit: X[{i}] should be a row of the model's {nin} inputs, got {X[i]!r}")
        if len(row) != nin:
            raise ValueError(f"fit: X[{i}] holds {len(row)} numbers, but the model takes {nin} inputs")
    outputs = Value(0.5) if nout == 1 else [Value(0.5) for _ in range(nout)]
    for i, target in enumerate(y):  # the loss checks every target now: the tape will not call it again
        try:
            _combine(outputs, target, loss)
        except (ValueError, TypeError) as error:
            raise type(error)(f"fit: y[{i}]: {error}") from None
    arrays = None
    if engine == "batch" or (engine == "auto" and batch_size >= BATCHED_FROM):
        try:
            import numpy
        except ImportError:
            if engine == "batch":
                raise ImportError('fit: engine="batch" needs numpy: pip install "microgd[fast]"') from None
        else:
            arrays = numpy.array(rows, dtype=float), numpy.array(targets, dtype=float)
    return _Replay(model, loss, rows, targets, arrays, check=not known)


class _Replay:
    """One sample's loss traced once, on the first sample ``fit`` meets, then replayed on every mini-batch
    sample by sample (:meth:`Tape.each`) or all at once (:meth:`Tape.batch`)."""

    def __init__(self, model: Module, loss: Callable, rows: list, targets: list, arrays: tuple | None, check: bool):
        self.model, self.loss, self.rows, self.targets, self.arrays = model, loss, rows, targets, arrays
        self.check = check and len(rows) > 1
        self.tape: Tape | None = None

    def __call__(self, batch: list[int], epoch: int) -> list[float]:
        tape = self.tape if self.tape is not None else self._trace(batch[0], epoch)
        try:
            if self.arrays is not None:
                X, Y = self.arrays
                return tape.batch(X[batch], Y[batch], in_order=True).tolist()
            return tape.each((self.rows[i], self.targets[i]) for i in batch)
        except DomainError:
            for i in batch:  # name the sample
                try:
                    tape.each([(self.rows[i], self.targets[i])])
                except DomainError as error:
                    raise _at(epoch, i, error) from error
            raise

    def _trace(self, i: int, epoch: int) -> Tape:
        model, loss = self.model, self.loss

        def sample_loss(x: list[Value], target: Any) -> Value:
            return _checked(_sample_loss(model, x, target, loss))

        try:
            tape = trace(sample_loss, self.rows[i], self.targets[i])
        except DomainError as error:
            raise _at(epoch, i, error) from error
        other = (i + 1) % len(self.rows)
        if self.check and not tape.check(self.rows[other], self.targets[other]):
            raise ValueError(f"fit: the loss's graph changes with the data (sample {other} takes another path than "
                             f"sample {i}: a Python if on a Value's .data?), so no tape fits it: use engine='eager'")
        self.tape = tape
        return tape


def _numbers(data: Sequence, name: str) -> list | None:
    """``data`` as floats and lists of floats (a row of a numpy array too); None if some entry is not a
    number (a Value, say). A number that is nan or inf is an error."""
    out: list[Any] = []
    for i, item in enumerate(data):
        if isinstance(item, (Value, str, bytes)):
            return None
        if isinstance(item, Sequence) or getattr(item, "ndim", 0) >= 1:  # a list, or a row of an array
            row = list(item)
            if not all(map(checks.is_real, row)):
                return None
            out.append([checks.number(v, f"fit: {name}[{i}][{j}]") for j, v in enumerate(row)])
        elif checks.is_real(item):
            out.append(checks.number(item, f"fit: {name}[{i}]"))
        else:
            return None
    return out


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
