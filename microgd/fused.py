"""A tape's layers as matrix products: the traced graph re-organised so that the sums of a layer run as one
matrix product and its activation as one array op, forward and backward, while the rest of the graph runs as
:meth:`Tape.batch <microgd.tape.Tape.batch>` runs it, one array of shape (batch,) per scalar (a *column*).
Made by :meth:`Tape.fused() <microgd.tape.Tape.fused>`; the program it runs is straight-line Python, shown
as ``source``.

What fuses, and what does not: :mod:`microgd.layers`, which finds the layers; the program's text and how a run
executes it: :mod:`microgd.fused_program`.

**Running it.** A run computes the lines of ``source``, the same operations on the same operands, but puts
each block it makes into an array it no longer needs: one an earlier line made and no later line reads, or one
kept from the run before. So ``h = tanh(s_h)`` goes into ``s_h``'s array (on numpy, where the op's array form
is one ufunc), and ``d * (1.0 - h * h)`` is ``h * h`` into ``h``'s array (read no more), then ``1.0 -`` it,
then ``d *`` it; what another op's array form makes takes the memory its predecessor of the run before has just
given back; so a training loop asks the system for no new memory per step (new memory costs a page fault per
4 kB, more than the arithmetic at 10,000 samples). On numpy a large batch runs in equal chunks whose
working arrays fit a core's cache (about 1 MB), the values put side by side and the gradients added (on torch,
chunks of 16 MB only bound the memory kept); a FusedTape keeps the working arrays of its last four batch (or
chunk) sizes. The arguments and ``params`` are only read, and the arrays a run returns are the caller's.
``_program.text(True)`` shows the program as a run executes it.

**Numbers.** A matrix product adds in its own order (and a large batch's chunks add their gradients), so
values and gradients agree with ``Tape.batch`` to rounding, not to the last bit. Only the gradients that reach
a captured Value are computed (``Tape.batch`` computes the arguments' too, and refuses one that is not finite).
Every value, gradient, argument and parameter is checked finite, as ``Tape.batch`` checks (numpy raises where a
value that is not finite is made; the products and, on torch, the lines where an inf may vanish are checked
where made).

    >>> from microgd.nn import MLP
    >>> from microgd.losses import squared_error
    >>> from microgd.tape import trace
    >>> model = MLP(2, [3, 1], activations=["tanh", "linear"], seed=1)
    >>> def loss(x, z):
    ...     return squared_error(model(x), z)
    >>> print(trace(loss, [0.5, -1.0], 0.25).fused().source, end="")
    def loss(x, z, params):
        w_h = params[at_w_h]
        b_h = params[at_b_h]
        s_h = w_h @ x.T + b_h[:, None]
        h = tanh(s_h)
        w_y = params[at_w_y]
        b_y = params[at_b_y]
        y = w_y @ h + b_y[:, None]
        y_1 = y[0]
        v0 = y_1 - z
        L = v0 ** 2.0
        _grads = _xp.zeros_like(params)
        d_v0 = 2.0 * v0
        d_y = d_v0[None]
        _grads[at_w_y] += d_y @ h.T
        _grads[at_b_y] += d_y.sum(1)
        d_h = w_y.T * d_y
        d_s_h = d_h * (1.0 - h * h)
        _grads[at_w_h] += d_s_h @ x
        _grads[at_b_h] += d_s_h.sum(1)
        return L, _grads
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import tape as taping
from .engine import DomainError
from .fused_program import _Compiled, _finite, _Program
from .tape import (
    Tape,
    _accumulating,
    _argument_array,
    _array,
    _array_module,
    _batch_size,
    _is_tensor,
    _per_sample,
    _shape,
    _store,
)

__all__ = ["FusedTape", "FusedLayer", "install"]
_CHUNK_BYTES = {"numpy": 1 << 20, "torch": 1 << 24}
"""A batch runs in chunks whose working arrays take about this much: on numpy a core's L2 cache (a pass over an
array in it is twice as fast); on torch, whose calls cost more and which may run on a GPU, only a bound on the
memory a FusedTape keeps."""
_KEPT_SIZES = 4  # a FusedTape keeps its working arrays for this many batch (or chunk) sizes


@dataclass(frozen=True)
class FusedLayer:
    """One fused layer of a :class:`FusedTape`: ``units`` sums over the same ``inputs`` inputs, run as the
    matrix product named ``name`` in the source, then ``activation`` (an op's name) on the whole block, if any.

        >>> FusedLayer("s_h", inputs=64, units=32, activation="relu")
        FusedLayer(name='s_h', inputs=64, units=32, activation='relu')
    """

    name: str
    inputs: int
    units: int
    activation: str | None


class FusedTape:
    """A :class:`~microgd.tape.Tape` with its layers fused into matrix products (see the module's docstring);
    made by ``tape.fused()`` (its ``tape``). ``source`` is the program, ``layers`` what was fused, :meth:`batch`
    runs it like ``Tape.batch`` and :meth:`run` on arrays of parameters, for a training loop that keeps them in
    arrays.

        >>> import numpy as np
        >>> from microgd.nn import MLP
        >>> from microgd.tape import trace
        >>> model = MLP(2, [4, 1], seed=0)
        >>> fused = trace(lambda x: model(x), [0.5, -1.0]).fused()
        >>> values, grads = fused.run((np.array([[0.5, -1.0], [1.0, 2.0]]),), np.ones(len(fused.tape.captured)))
        >>> values.tolist(), grads.shape                     # every weight 1.0: 4 relu(x1 + x2 + 1) + 1
        ([3.0, 17.0], (17,))
    """

    def __init__(self, tape: Tape):
        self.tape = tape
        program = _Program(tape)
        self.layers = [FusedLayer(*layer) for layer in program.layers]
        self.source: str = program.source
        self._program = program
        self._runs: dict[tuple[str, str], _Compiled] = {}
        self._kept: dict[tuple[str, str, int], list[Any]] = {}  # (module, device, batch size): working arrays
        self._keeping = threading.Lock()
        self._shapes = [_shape(s) for s in tape.structures]  # each argument's sample shape (None: none fits)

    def run(self, arrays: Sequence[Any], params: Any) -> tuple[Any, Any]:
        """f's value for each sample of a batch, and the batch's sum of the gradients of the captured Values, at
        the numbers ``params``: a 1-D float64 array (numpy, or a torch tensor) in ``tape.captured``'s order.
        ``arrays``: one array per argument of f, leading batch axis, as for ``Tape.batch``. Returns an array of
        shape (batch,) and an array of ``params``'s shape, on the arrays' module and device; reads and writes
        no Value. A value, gradient, argument or parameter that is not finite raises DomainError (Tape.batch
        replays the batch to name the sample)."""
        if not isinstance(arrays, (tuple, list)):
            raise TypeError(f"fused.run: arrays must be a tuple of arrays, one per argument of f, got "
                            f"{type(arrays).__name__}")
        xp, device, batches, size = self._arrays(tuple(arrays), params, "fused.run")
        numbers = _array(xp, params, device)
        count = len(self.tape.captured)
        if tuple(numbers.shape) != (count,):
            raise ValueError(f"fused.run: params should be a 1-D array of the {count} captured Values' numbers "
                             f"(tape.captured's order), got shape {tuple(numbers.shape)}")
        return self._computed(xp, device, batches, size, numbers)

    def batch(self, *arrays: Any) -> Any:
        """f's value for each sample of a batch, as :meth:`Tape.batch <microgd.tape.Tape.batch>` gives it (to
        rounding: a matrix product adds in its own order): numpy arrays, nested lists or torch tensors, leading
        batch axis. Captured Values' ``.grad`` get the batch's sum of their gradients. A sample outside an op's
        domain, or whose values leave the finite floats, raises DomainError naming the sample."""
        xp, device, batches, size = self._arrays(arrays, None, "tape.batch")
        captured = self.tape.captured
        try:
            values, grads = self._computed(xp, device, batches, size, _array(xp, [p.data for p in captured], device))
        except DomainError as error:
            self.tape._name_sample(batches, size)
            raise DomainError("tape.batch: a value or gradient is not finite, although every sample alone is fine: "
                              "a sum over the batch passed the largest float") from error
        sums = grads.tolist()
        with _accumulating:
            _store(captured, [p.grad + g for p, g in zip(captured, sums)])
        return values

    def _arrays(self, arrays: tuple, params: Any, who: str) -> tuple[Any, Any, list[Any], int]:
        """The array module (torch if any array is a tensor), the device, the arguments as float64 arrays and
        the batch size, each argument checked as ``Tape.batch`` checks it."""
        size = self._numpy_batch_size(arrays, params)
        if size is not None:
            return sys.modules["numpy"], None, list(arrays), size
        structures = self.tape.structures
        if len(arrays) != len(structures):
            raise TypeError(f"{who}: takes {len(structures)} array(s), one per argument of f, got {len(arrays)}")
        xp = _array_module((*arrays, params))
        device = next((a.device for a in (*arrays, params) if _is_tensor(a)), None)
        try:
            batches = [_argument_array(xp, a, device, f"argument {i + 1}") for i, a in enumerate(arrays)]
            return xp, device, batches, _batch_size(batches, structures)
        except (TypeError, ValueError) as error:
            raise type(error)(str(error).replace("tape.batch:", f"{who}:", 1)) from None

    def _numpy_batch_size(self, arrays: tuple, params: Any) -> int | None:
        """The batch size if every argument is already what ``Tape.batch``'s checks make of it, a float64 numpy
        array of its traced shape, and ``params`` is None or a numpy array (the common case, seen in a few
        attribute reads); else None, and the arguments go through those checks."""
        numpy = sys.modules.get("numpy")
        if numpy is None or len(arrays) != len(self._shapes) or not (params is None or type(params) is numpy.ndarray):
            return None
        float64, sizes = numpy.dtype(numpy.float64), set()
        for a, shape in zip(arrays, self._shapes):
            if type(a) is not numpy.ndarray or a.dtype is not float64 or not a.ndim or a.shape[1:] != shape:
                return None
            sizes.add(a.shape[0])
        return sizes.pop() if len(sizes) == 1 else None

    def _computed(self, xp: Any, device: Any, batches: list[Any], size: int, params: Any) -> tuple[Any, Any]:
        """The values and the gradients' sums: the program run on the whole batch, or on equal chunks of it whose
        working arrays fit a cache (values put side by side, gradients added), and everything checked finite."""
        where = (xp.__name__, str(device))
        compiled = self._runs.get(where)
        if compiled is None:
            compiled = self._runs[where] = self._program.compiled(xp, device)
        parts = -(-size // compiled.chunk(_CHUNK_BYTES.get(xp.__name__, 1 << 24)))
        try:
            with _running(xp):
                if parts <= 1:
                    value, grads = self._chunk(compiled, xp, device, batches, size, params)
                    values = _per_sample(xp, value, size, device)
                else:
                    values = xp.empty(size, dtype=xp.float64, **({} if device is None else {"device": device}))
                    ends = [size * k // parts for k in range(parts + 1)]
                    for start, stop in itertools.pairwise(ends):
                        value, part = self._chunk(compiled, xp, device, [b[start:stop] for b in batches],
                                                  stop - start, params)
                        values[start:stop] = value
                        grads = part if start == 0 else grads + part
                finite = all(_finite(xp, a) for a in (values, grads, params, *batches))
        except ArithmeticError:  # numpy raises where a value that is not finite is made; _check, where it is seen
            finite = False
        if not finite:
            raise DomainError("fused.run: a value or gradient is not finite in this batch (a sample outside an op's "
                              "domain, or numbers past the largest float): Tape.batch names the sample")
        return values, grads

    def _chunk(self, compiled: _Compiled, xp: Any, device: Any, batches: list[Any], size: int, params: Any
               ) -> tuple[Any, Any]:
        """One run of the program, on working arrays kept from an earlier run of this size (or new ones), which
        it keeps for the next if it succeeds."""
        key = (xp.__name__, str(device), size)
        with self._keeping:
            work = self._kept.pop(key, None)
        if work is None:
            work = compiled.arrays(xp, device, size)
        value, grads = compiled.run(*batches, params, work)
        with self._keeping:
            self._kept[key] = work
            while len(self._kept) > _KEPT_SIZES:
                del self._kept[next(iter(self._kept))]
        return value, grads


def install() -> None:
    """Make :class:`FusedTape` what ``Tape.fused()`` returns (the package does it on import)."""
    taping._fusing = FusedTape


def _running(xp: Any) -> Any:
    """numpy raises on overflow, division by zero and invalid results (nan), so they are caught where made;
    torch records no autograd graph (a run writes into arrays of its own, which autograd refuses)."""
    if xp.__name__ == "numpy":
        return xp.errstate(over="raise", divide="raise", invalid="raise", under="ignore")
    return xp.no_grad() if xp.__name__ == "torch" else contextlib.nullcontext()
