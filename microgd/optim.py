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
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from . import checks
from .engine import Value

__all__ = ["Optimizer", "SGD", "Adam"]


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
