"""Optimizers: move parameters against their gradients. State (velocities, moments) lives here, not on the Values.

    >>> from microgd import Value
    >>> from microgd.optim import SGD
    >>> w = Value(3.0)
    >>> opt = SGD([w], lr=0.1)
    >>> for _ in range(3):
    ...     opt.zero_grad(); (w * w).backward(); opt.step()    # d(w^2)/dw = 2w, so w <- 0.8 w
    >>> round(w.data, 6)
    1.536

A step checks every gradient and every new value first and raises ``FloatingPointError``
(changing nothing) if one is not finite, instead of silently filling the model with nan.

A training loop that computes gradients as numpy arrays steps on arrays instead of Values:
``optimizer.arrays(order)`` holds the parameters' numbers and the optimizer's state in arrays, its
``step(grads)`` is the scalar ``step()``'s arithmetic to the last bit, and ``write_back()`` hands
everything back to the Values and the optimizer (see :class:`OptimizerArrays`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import checks
from .engine import Value, no_grad

if TYPE_CHECKING:
    import numpy
    from numpy.typing import ArrayLike, NDArray

    Floats = NDArray[numpy.float64]

__all__ = ["Optimizer", "SGD", "Adam", "OptimizerArrays", "SGDArrays", "AdamArrays"]


class Optimizer:
    """Holds the parameters; ``zero_grad()`` clears their gradients, ``step()`` updates them."""

    def __init__(self, params: Iterable[Value]):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        seen = set()
        for i, p in enumerate(self.params):
            if not isinstance(p, Value):
                raise TypeError(f"{type(self).__name__}: parameter {i} is a {type(p).__name__}, not a Value")
            if id(p) in seen:
                raise ValueError(f"{type(self).__name__}: parameter {i} appears twice (it would be updated twice)")
            seen.add(id(p))

    def zero_grad(self) -> None:
        """Set every parameter's ``grad`` to 0."""
        for p in self.params:
            p.grad = 0.0

    def _grads(self) -> list[float]:
        grads = [p.grad for p in self.params]
        for i, g in enumerate(grads):
            if not math.isfinite(g):
                name = self.params[i].label or "unlabelled"
                raise FloatingPointError(f"{type(self).__name__}: parameter {i} ({name}) has a non-finite gradient "
                                         f"{g!r}; nothing was updated")
        return grads

    def _commit(self, new: list[float]) -> None:
        for i, x in enumerate(new):
            if not math.isfinite(x):
                raise FloatingPointError(f"{type(self).__name__}: the step would make parameter {i} {x!r} "
                                         "(learning rate too large?); nothing was updated")
        for p, x in zip(self.params, new):
            p.data = x

    def step(self) -> None:
        raise NotImplementedError

    def arrays(self, order: Iterable[Value] | None = None) -> OptimizerArrays:
        """The parameters' numbers and this optimizer's state as numpy arrays, laid out in ``order`` (default:
        ``self.params``'s), to step on arrays of gradients: see :class:`OptimizerArrays`. ``order`` must hold
        every parameter of the optimizer once and may hold other Values, which a step leaves alone.

        SGD and Adam step on the arrays themselves; any other optimizer (a subclass with a ``step()`` of its
        own, too) goes through its ``step()``: each step writes the numbers and gradients into the Values,
        calls it and reads the numbers back. Needs numpy (``pip install "microgd[fast]"``).
        """
        return OptimizerArrays(self, order)


class OptimizerArrays:
    """An optimizer's parameters (``data``) and state as numpy float64 arrays, position ``k`` standing for the
    Value ``params[k]``; made by :meth:`Optimizer.arrays`. ``step(grads)`` takes one array of gradients in the
    same order and updates the arrays, leaving the Values' numbers and the optimizer as they were, after
    checking, as ``Optimizer.step()`` does, that every gradient and every new number is finite;
    ``write_back()`` stores the numbers into the Values and the state into the optimizer, so that its
    scalar ``step()`` continues exactly where the arrays stopped.

        >>> import numpy as np
        >>> from microgd import Value
        >>> from microgd.optim import Adam
        >>> w, b = Value(1.0, label="w"), Value(-2.0, label="b")
        >>> optimizer = Adam([w, b], lr=0.1)
        >>> state = optimizer.arrays([b, w])          # any order, e.g. a tape's captured Values'
        >>> state.data
        array([-2.,  1.])
        >>> state.step(np.array([0.5, -3.0]))          # d/db, d/dw: the Values are not touched
        >>> state.data.round(6).tolist(), w.data, optimizer.t
        ([-2.1, 1.1], 1.0, 0)
        >>> state.write_back()                          # now they are, and the optimizer's m, v and t
        >>> round(w.data, 6), round(b.data, 6), optimizer.t
        (1.1, -2.1, 1)
        >>> w2, b2 = Value(1.0), Value(-2.0)            # the scalar step from the same gradients
        >>> scalar = Adam([w2, b2], lr=0.1)
        >>> w2.grad, b2.grad = -3.0, 0.5
        >>> scalar.step()
        >>> (w2.data, b2.data, scalar.m, scalar.v) == (w.data, b.data, optimizer.m, optimizer.v)
        True

    A Value of ``params`` that the optimizer does not hold keeps its number and its zero state whatever
    its gradient. The arrays are replaced at every step, never changed in place, so one read before a
    step still holds the numbers before it; and a step either completes or changes nothing, even when a
    Ctrl-C lands in it. After ``write_back()`` and scalar steps, make new arrays to go on with arrays.

    :class:`SGDArrays` and :class:`AdamArrays` do the scalar step's arithmetic on whole arrays, in the same
    order, so to the last bit: numpy's float64 + - * / and sqrt round exactly as Python's floats do. This
    base class, for any other optimizer, holds only ``data`` and steps through the optimizer's own
    ``step()``, which keeps its state in the optimizer (and leaves the gradients in the Values' ``.grad``).
    """

    def __init__(self, optimizer: Optimizer, order: Iterable[Value] | None = None):
        np = _numpy()
        self.optimizer = optimizer
        self.params: list[Value] = list(optimizer.params if order is None else order)
        who = f"{type(optimizer).__name__}.arrays"
        position: dict[int, int] = {}
        for k, p in enumerate(self.params):
            if not isinstance(p, Value):
                raise TypeError(f"{who}: order[{k}] is a {type(p).__name__}, not a Value")
            if position.setdefault(id(p), k) != k:
                raise ValueError(f"{who}: order[{k}] appears twice")
        missing = [i for i, p in enumerate(optimizer.params) if id(p) not in position]
        if missing:
            i = missing[0]
            raise ValueError(f"{who}: order lacks parameter {i} ({optimizer.params[i].label or 'unlabelled'}) "
                             f"of the optimizer ({len(missing)} missing): a step updates every parameter")
        # positions[i]: where the optimizer's parameter i is in params and in the arrays
        self.positions = np.array([position[id(p)] for p in optimizer.params], dtype=np.intp)
        # the positions of the optimizer's parameters, ascending; None when every Value of params is one
        self._held: Any = None if len(optimizer.params) == len(self.params) else np.sort(self.positions)
        self._state: tuple = (np.array([p.data for p in self.params], dtype=np.float64),)

    @property
    def data(self) -> Floats:
        """The parameters' numbers, in the order of ``params``."""
        return self._state[0]

    def step(self, grads: ArrayLike) -> None:
        """One update from ``grads``, the gradient for each Value of ``params`` (a 1-D array in that order).
        Raises ``FloatingPointError`` naming the parameter (and changes nothing) if one of the optimizer's
        parameters has a non-finite gradient, or would get a non-finite number."""
        g = self._gradients(grads)
        data = self._state[0]
        held = self.optimizer.params
        positions = self.positions.tolist()
        try:
            for p, k in zip(held, positions):
                p.data, p.grad = float(data[k]), float(g[k])
            with no_grad():
                self.optimizer.step()
            new = data.copy()
            new[self.positions] = [p.data for p in held]
        finally:  # the Values go back to the arrays, whether the step completed or not
            for p, k in zip(held, positions):
                p.data = float(data[k])
        self._state = (new,)

    def write_back(self) -> None:
        """Store the numbers into the optimizer's Values and the state into the optimizer (the other Values
        of ``params`` keep theirs). Safe to repeat: it only copies."""
        data = self._state[0].tolist()
        for p, k in zip(self.optimizer.params, self.positions.tolist()):
            p.data = data[k]

    def _gradients(self, grads: ArrayLike) -> Floats:
        np = _numpy()
        g = np.asarray(grads, dtype=np.float64)
        if g.shape != (len(self.params),):
            raise ValueError(f"{type(self).__name__}.step: expected {len(self.params)} gradients in a 1-D array, "
                             f"got shape {g.shape}")
        if not np.isfinite(g if self._held is None else g[self._held]).all():
            i = self._first_not_finite(g)
            raise FloatingPointError(f"{type(self.optimizer).__name__}: parameter {i} "
                                     f"({self.optimizer.params[i].label or 'unlabelled'}) has a non-finite "
                                     f"gradient {float(g[self.positions[i]])!r}; nothing was updated")
        return g

    def _held_part(self, *arrays: Floats) -> list[Floats]:
        """The arrays' entries for the Values the optimizer holds (the arrays themselves when it holds all)."""
        return list(arrays) if self._held is None else [a[self._held] for a in arrays]

    def _checked(self, new: Floats) -> Floats:
        """``data`` with the optimizer's parameters set to ``new`` (as ``_held_part`` gives them), once every
        number is checked finite."""
        np = _numpy()
        if not np.isfinite(new).all():
            full = new if self._held is None else self._scattered(self._state[0], new)
            i = self._first_not_finite(full)
            raise FloatingPointError(f"{type(self.optimizer).__name__}: the step would make parameter {i} "
                                     f"{float(full[self.positions[i]])!r} (learning rate too large?); "
                                     "nothing was updated")
        return new if self._held is None else self._scattered(self._state[0], new)

    def _scattered(self, whole: Floats, part: Floats) -> Floats:
        """A copy of ``whole`` with the optimizer's parameters' entries set to ``part``."""
        out = whole.copy()
        out[self._held] = part
        return out

    def _first_not_finite(self, full: Floats) -> int:
        """The first of the optimizer's parameters (by its index) whose entry in ``full`` is not finite."""
        np = _numpy()
        return int(np.flatnonzero(~np.isfinite(full[self.positions]))[0])


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise ImportError('optimizer.arrays needs numpy: pip install "microgd[fast]"') from None
    return numpy


def _listed(values: Floats, positions: Any) -> list[float]:
    """``values`` at ``positions``, as a list of Python floats."""
    return values[positions].tolist()


class SGD(Optimizer):
    """Gradient descent, ``w <- w - lr * v`` with ``v = momentum * v + grad`` (plain ``w - lr * grad`` at momentum 0).

    With ``momentum=0`` one step is exactly tutorial 2's delta rule, ``w_new = w - eta * delta * a``.
    """

    def __init__(self, params: Iterable[Value], lr: float, momentum: float = 0.0):
        super().__init__(params)
        self.lr = checks.number(lr, "SGD lr", above=0.0)
        self.momentum = checks.number(momentum, "SGD momentum", at_least=0.0, below=1.0)
        self.velocity = [0.0] * len(self.params)

    def step(self) -> None:
        """One update from the current gradients."""
        grads = self._grads()
        if self.momentum:
            velocity = [self.momentum * v + g for v, g in zip(self.velocity, grads)]
        else:
            velocity = grads
        self._commit([p.data - self.lr * v for p, v in zip(self.params, velocity)])
        if self.momentum:
            self.velocity = velocity

    def arrays(self, order: Iterable[Value] | None = None) -> OptimizerArrays:
        """The parameters and ``velocity`` as arrays (:class:`SGDArrays`), stepped as :meth:`step` steps;
        see :meth:`Optimizer.arrays`. A subclass with its own ``step()`` gets :class:`OptimizerArrays`,
        which calls it."""
        if type(self).step is not SGD.step:
            return super().arrays(order)
        return SGDArrays(self, order)


class SGDArrays(OptimizerArrays):
    """:class:`SGD`'s state on arrays: ``data`` and ``velocity`` in the order of ``params``.

        >>> import numpy as np
        >>> from microgd import Value
        >>> w = Value(1.0)
        >>> state = SGD([w], lr=0.1, momentum=0.9).arrays()
        >>> state.step(np.array([2.0])); state.step(np.array([1.0]))
        >>> state.velocity.tolist(), state.data.tolist()    # v = 2, then 0.9 * 2 + 1
        ([2.8], [0.52])
    """

    optimizer: SGD

    def __init__(self, optimizer: SGD, order: Iterable[Value] | None = None):
        super().__init__(optimizer, order)
        velocity = _numpy().zeros(len(self.params))
        velocity[self.positions] = optimizer.velocity
        self._state = (self._state[0], velocity)

    @property
    def velocity(self) -> Floats:
        """The velocity of each Value of ``params`` (0 for a Value the optimizer does not hold)."""
        return self._state[1]

    def step(self, grads: ArrayLike) -> None:
        """One update from ``grads``, exactly as :meth:`SGD.step` would make it from these gradients."""
        np = _numpy()
        g = self._gradients(grads)
        opt = self.optimizer
        data, velocity = self._state
        (d, v, g) = self._held_part(data, velocity, g)
        with np.errstate(all="ignore"):
            if opt.momentum:
                v = opt.momentum * v + g
            else:
                v = g
            new = self._checked(d - opt.lr * v)
        if opt.momentum:
            velocity = v if self._held is None else self._scattered(velocity, v)
        self._state = (new, velocity)  # one assignment: a step completes or changes nothing

    def write_back(self) -> None:
        """Store the numbers into the Values and ``velocity`` into the optimizer."""
        super().write_back()
        self.optimizer.velocity = _listed(self._state[1], self.positions)


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with bias correction.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, ``w <- w - lr m^ / (sqrt(v^) + eps)``
    where ``m^ = m / (1 - b1^t)`` and ``v^ = v / (1 - b2^t)`` at step ``t``.
    """

    def __init__(self, params: Iterable[Value], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(params)
        self.lr = checks.number(lr, "Adam lr", above=0.0)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Adam betas must be a pair (b1, b2), got {betas!r}")
        self.betas = tuple(checks.number(b, f"Adam betas[{i}]", at_least=0.0, below=1.0) for i, b in enumerate(betas))
        self.eps = checks.number(eps, "Adam eps", above=0.0)
        self.t = 0
        self.m = [0.0] * len(self.params)
        self.v = [0.0] * len(self.params)

    def step(self) -> None:
        """One update from the current gradients."""
        grads = self._grads()
        b1, b2 = self.betas
        t = self.t + 1
        m = [b1 * m + (1.0 - b1) * g for m, g in zip(self.m, grads)]
        v = [b2 * v + (1.0 - b2) * g * g for v, g in zip(self.v, grads)]
        c1, c2 = 1.0 - b1**t, 1.0 - b2**t
        self._commit([p.data - self.lr * (mi / c1) / (math.sqrt(vi / c2) + self.eps)
                      for p, mi, vi in zip(self.params, m, v)])
        self.t, self.m, self.v = t, m, v

    def arrays(self, order: Iterable[Value] | None = None) -> OptimizerArrays:
        """The parameters, ``m``, ``v`` and ``t`` as arrays (:class:`AdamArrays`), stepped as :meth:`step`
        steps; see :meth:`Optimizer.arrays`. A subclass with its own ``step()`` gets
        :class:`OptimizerArrays`, which calls it."""
        if type(self).step is not Adam.step:
            return super().arrays(order)
        return AdamArrays(self, order)


class AdamArrays(OptimizerArrays):
    """:class:`Adam`'s state on arrays: ``data``, the moments ``m`` and ``v`` in the order of ``params``, and
    the step count ``t``.

        >>> import numpy as np
        >>> from microgd import Value
        >>> w = Value(1.0)
        >>> state = Adam([w], lr=0.01).arrays()
        >>> state.step(np.array([0.5]))                 # the first step is lr * g / (|g| + eps)
        >>> state.t, state.m.tolist(), state.data.tolist() == [1.0 - 0.01 * 0.5 / (0.5 + 1e-8)]
        (1, [0.04999999999999999], True)
    """

    optimizer: Adam

    def __init__(self, optimizer: Adam, order: Iterable[Value] | None = None):
        super().__init__(optimizer, order)
        data = self._state[0]
        m, v = _numpy().zeros(len(data)), _numpy().zeros(len(data))
        m[self.positions], v[self.positions] = optimizer.m, optimizer.v
        self._state = (data, m, v, optimizer.t)

    @property
    def m(self) -> Floats:
        """The first moment of each Value of ``params`` (0 for a Value the optimizer does not hold)."""
        return self._state[1]

    @property
    def v(self) -> Floats:
        """The second moment of each Value of ``params`` (0 for a Value the optimizer does not hold)."""
        return self._state[2]

    @property
    def t(self) -> int:
        """The number of steps taken, the optimizer's scalar steps before these arrays included."""
        return self._state[3]

    def step(self, grads: ArrayLike) -> None:
        """One update from ``grads``, exactly as :meth:`Adam.step` would make it from these gradients."""
        np = _numpy()
        g = self._gradients(grads)
        opt = self.optimizer
        (b1, b2), lr, eps = opt.betas, opt.lr, opt.eps
        data, m_all, v_all, t = self._state
        t += 1
        d, m, v, g = self._held_part(data, m_all, v_all, g)
        with np.errstate(all="ignore"):  # the scalar step's operations, in its order: the same roundings
            m = b1 * m + (1.0 - b1) * g
            v = b2 * v + (1.0 - b2) * g * g
            c1, c2 = 1.0 - b1**t, 1.0 - b2**t  # Python floats, as in the scalar step
            new = self._checked(d - lr * (m / c1) / (np.sqrt(v / c2) + eps))
        if self._held is not None:
            m, v = self._scattered(m_all, m), self._scattered(v_all, v)
        self._state = (new, m, v, t)  # one assignment: a step completes or changes nothing

    def write_back(self) -> None:
        """Store the numbers into the Values and ``m``, ``v``, ``t`` into the optimizer."""
        _, m, v, t = self._state
        super().write_back()
        opt = self.optimizer
        opt.t, opt.m, opt.v = t, _listed(m, self.positions), _listed(v, self.positions)
