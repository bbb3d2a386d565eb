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
The "fused" engine also keeps the parameters and the optimizer's state in numpy arrays while it runs
(:meth:`microgd.optim.Optimizer.arrays`), handing them back to the Values and the optimizer when it stops.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import checks
from .engine import DomainError, Value, is_recording, no_grad
from .losses import binary_cross_entropy, cross_entropy, half_squared_error, hinge, squared_error
from .nn import MLP, Layer, Module, Neuron
from .optim import SGD, Optimizer, OptimizerArrays
from .table import number
from .tape import Tape, trace

if TYPE_CHECKING:
    import numpy
    from numpy.typing import NDArray

    Floats = NDArray[numpy.float64]
    Gradient = Callable[[list[int], Floats], tuple[Floats, Floats]]

__all__ = ["fit", "History", "ENGINES"]

ENGINES = ("auto", "tape", "batch", "fused", "eager")
BUILT_IN_LOSSES = (squared_error, half_squared_error, binary_cross_entropy, hinge, cross_entropy)
FUSED_FROM = 8
"""The smallest mini-batch that "auto" trains with the fused engine: below it, numpy's cost per call outweighs
the work it saves on a small network (measured per epoch, trace included: on a 2-8-8-1 MLP the fused engine
costs 1.35x the scalar tape at 1 sample a batch, the same at 4, 0.9x at 8, 0.85x at 32; on a 64-32-10 MLP it
is faster at every size, 0.4x at 1 sample, 0.7x at 32; "batch" is slower than both at every size)."""


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

    ``engine`` says how each sample's loss and gradient are computed. "eager" and "tape" give the same
    floats, and "batch" too but for the last bit of numpy's exp, log, tanh and ``**``; "fused" gives the
    same numbers to rounding (a matrix product adds in its own order: within 1e-12 relative a step):

    * "eager": the graph of every sample is built and ``backward()`` run on it;
    * "tape": one sample's loss is traced once and the compiled tape replayed on each sample;
    * "batch": the tape replayed on a whole mini-batch at once with numpy (its exp, log, tanh and ``**``
      may differ from Python's in the last bit; + - * /, relu and abs give the same floats);
    * "fused": the tape's fused program (:meth:`~microgd.tape.Tape.fused`: each layer one matrix
      product, forward and backward) on a whole mini-batch, the parameters and the optimizer's state
      held in numpy arrays while ``fit`` runs (:meth:`~microgd.optim.Optimizer.arrays`: SGD and Adam
      step on whole arrays, to the last bit as their ``step()``; another optimizer's ``step()`` is
      called on the Values). The Values and the optimizer get them back when ``fit`` returns, on
      Ctrl-C and on an error;
    * "auto" (default): "fused" for mini-batches of at least 8 when numpy is installed, else "tape",
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
    on_arrays: _ArraySteps | None = None  # the "fused" engine's, made on its first mini-batch
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
                if replay is not None and replay.fused:
                    if on_arrays is None:
                        on_arrays = _fused(replay, optimizer, batch[0], epoch)
                    losses = on_arrays(batch, epoch)
                else:
                    optimizer.zero_grad()
                    losses = replay(batch, epoch) if replay is not None else _eager(model, X, y, loss, batch, epoch)
                    if len(batch) > 1:
                        for p in optimizer.params:
                            p.grad /= len(batch)
                    _step(optimizer, params)
                for sample in losses:
                    total += sample
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
        if on_arrays is not None:
            on_arrays.close()
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
    if engine in ("batch", "fused") or (engine == "auto" and batch_size >= FUSED_FROM):
        try:
            import numpy
        except ImportError:
            if engine != "auto":
                raise ImportError(f'fit: engine="{engine}" needs numpy: pip install "microgd[fast]"') from None
        else:
            arrays = numpy.array(rows, dtype=float), numpy.array(targets, dtype=float)
    fused = engine == "fused" or (engine == "auto" and arrays is not None)
    return _Replay(model, loss, rows, targets, arrays, check=not known, fused=fused)


class _Replay:
    """One sample's loss traced once, on the first sample ``fit`` meets, then replayed on every mini-batch
    sample by sample (:meth:`Tape.each`) or all at once (:meth:`Tape.batch`); ``fused``: by the "fused" engine's
    steps instead (:func:`_fused`)."""

    def __init__(self, model: Module, loss: Callable, rows: list, targets: list, arrays: tuple | None, check: bool,
                 fused: bool = False):
        self.model, self.loss, self.rows, self.targets, self.arrays = model, loss, rows, targets, arrays
        self.fused = fused
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
            self.name_sample(batch, epoch)
            raise

    def name_sample(self, batch: list[int], epoch: int) -> None:
        """Replay the mini-batch sample by sample and raise fit's DomainError naming the first sample outside
        an op's domain (none: return, and the caller raises its own error)."""
        assert self.tape is not None
        for i in batch:
            try:
                self.tape.each([(self.rows[i], self.targets[i])])
            except DomainError as error:
                raise _at(epoch, i, error) from error

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


# -- the "fused" engine: parameters and optimizer state in arrays --------------------------------------------

def _fused(replay: _Replay, optimizer: Optimizer, first: int, epoch: int) -> _ArraySteps:
    """The "fused" engine's steps, made on the first mini-batch (``first`` its first sample: the tape is
    traced on it, as for "batch"). The arrays hold the tape's captured Values in its order, then any
    parameter of the optimizer the loss does not use (its gradient 0, as on the other engines)."""
    tape = replay.tape if replay.tape is not None else replay._trace(first, epoch)
    assert replay.arrays is not None
    X, Y = replay.arrays
    captured = {id(p) for p in tape.captured}
    order = [*tape.captured, *(p for p in optimizer.params if id(p) not in captured)]
    return _ArraySteps(optimizer.arrays(order), len(tape.captured), _fused_gradient(tape, X, Y), replay.name_sample)


def _fused_gradient(tape: Tape, X: Floats, Y: Floats) -> Gradient:
    """The "fused" engine's gradient function: ``gradient(batch, params)`` gives the losses of the samples
    ``X[batch], Y[batch]`` (an array, in batch order) and the gradient of their sum with respect to the
    tape's captured Values (an array in ``tape.captured`` order), at the numbers ``params`` for these
    Values (a 1-D float64 array in the same order; their ``.data`` may be stale), by the tape's fused
    program (:meth:`microgd.tape.Tape.fused`: layers as matrix products), touching no Value. It raises
    DomainError for a value or gradient that is not finite: ``fit`` then names the sample."""
    fused = tape.fused()
    return lambda batch, params: fused.run((X[batch], Y[batch]), params)


class _ArraySteps:
    """Training steps with the parameters and the optimizer's state in arrays (``state``, from
    :meth:`Optimizer.arrays`): for each mini-batch, ``gradient(batch, params)`` gives the samples' losses and
    the sum of their gradients for the first ``used`` Values of ``state.params`` (a parameter after them
    gets 0); the sum is divided by the batch's size, as ``p.grad /= len(batch)`` does, and
    ``state.step`` takes it. ``close()`` hands the numbers and the state back (the optimizer's
    parameters' ``.grad`` get the last step's gradient, as on the other engines); so does a DomainError,
    before ``name_sample(batch, epoch)`` names the sample at fault on the Values."""

    def __init__(self, state: OptimizerArrays, used: int, gradient: Gradient,
                 name_sample: Callable[[list[int], int], None]):
        import numpy

        self.state, self.used, self.gradient, self.name_sample = state, used, gradient, name_sample
        self.unused = numpy.zeros(len(state.params) - used)  # the gradient of the parameters the loss ignores
        self.grads: Floats | None = None  # the last step's

    def __call__(self, batch: list[int], epoch: int) -> list[float]:
        """One step on ``batch``: its samples' losses."""
        import numpy

        state = self.state
        params = state.data
        try:
            losses, grads = self.gradient(batch, params[:self.used] if len(self.unused) else params)
        except DomainError:
            self.close()
            self.name_sample(batch, epoch)
            raise
        if len(batch) > 1:
            grads = grads / len(batch)
        if len(self.unused):
            grads = numpy.concatenate((grads, self.unused))
        state.step(grads)
        self.grads = grads
        return losses.tolist()

    def close(self) -> None:
        """Store the numbers into the Values and the state into the optimizer, again if a Ctrl-C cuts in."""
        while True:
            try:
                self.state.write_back()
                if self.grads is not None:
                    grads = self.grads[self.state.positions].tolist()
                    for p, g in zip(self.state.optimizer.params, grads):
                        p.grad = g
                return
            except KeyboardInterrupt:  # copying again is harmless; leaving the model half copied is not
                continue


def _progress(epochs: int):
    from tqdm import tqdm

    return tqdm(total=epochs, desc="training", unit="epoch", file=sys.stderr, dynamic_ncols=True)
