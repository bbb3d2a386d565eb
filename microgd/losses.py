"""Loss functions on Values: each returns a Value to call ``backward()`` on.

    >>> from microgd import Value
    >>> from microgd.losses import half_squared_error
    >>> y = Value(0.75)
    >>> loss = half_squared_error(y, 1.0)      # tutorial 2's "mse": 1/2 (y - z)^2
    >>> loss.data
    0.03125
    >>> loss.backward(); y.grad                 # d loss / d y = y - z
    -0.25
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from . import rules
from .engine import Value

__all__ = ["squared_error", "half_squared_error", "mse", "binary_cross_entropy", "hinge"]

Scalar = Union[Value, int, float]


def _value(x: Scalar, what: str) -> Value:
    if isinstance(x, Value):
        return x
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{what} must be a Value or a number, got {type(x).__name__}: {x!r}")
    return Value(x)


def _number(x: Scalar) -> float:
    return x.data if isinstance(x, Value) else x


def squared_error(pred: Scalar, target: Scalar) -> Value:
    """``(pred - target)^2``, tutorial 1's error."""
    return (_value(pred, "squared_error: pred") - target) ** 2


def half_squared_error(pred: Scalar, target: Scalar) -> Value:
    """``1/2 (pred - target)^2``, tutorial 2's loss: its derivative is just ``pred - target``."""
    return 0.5 * (_value(pred, "half_squared_error: pred") - target) ** 2


def mse(preds: Sequence[Scalar], targets: Sequence[Scalar]) -> Value:
    """Mean squared error over a batch: ``sum((pred - target)^2) / n``.

        >>> mse([1.0, 2.0], [0.0, 0.0]).data
        2.5
    """
    if len(preds) != len(targets):
        raise ValueError(f"mse: {len(preds)} predictions but {len(targets)} targets")
    if not preds:
        raise ValueError("mse: needs at least one prediction")
    total = squared_error(preds[0], targets[0])
    for pred, target in zip(preds[1:], targets[1:]):
        total = total + squared_error(pred, target)
    return total / len(preds)


def binary_cross_entropy(pred: Scalar, target: Scalar) -> Value:
    """``-(t log p + (1 - t) log(1 - p))`` for a probability ``pred`` and a target ``t`` in [0, 1].

    Numerically stable: when ``pred`` is a sigmoid node, the loss is computed from its logit
    ``s`` as ``max(s, 0) - s t + log(1 + exp(-|s|))``, finite for any ``s`` and with the exact
    gradient ``sigmoid(s) - t`` even where ``pred`` rounds to 0 or 1. Any other ``pred`` must lie
    strictly between 0 and 1.

        >>> from microgd import Value
        >>> s = Value(40.0); p = s.sigmoid()        # p rounds to 1.0
        >>> loss = binary_cross_entropy(p, 0.0); loss.backward()
        >>> round(loss.data, 6), s.grad
        (40.0, 1.0)
    """
    t = _number(target)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
        raise ValueError(f"binary_cross_entropy: target must be a number in [0, 1], got {target!r}")
    if isinstance(pred, Value) and pred.op == rules.sigmoid.name:
        s = pred.parents[0]
        if s.data >= 0.0:  # s (1 - t) + log(1 + exp(-s)): each branch smooth, the exp never overflows
            return s * (1.0 - t) + (1.0 + (-s).exp()).log()
        return -s * t + (1.0 + s.exp()).log()
    p = _value(pred, "binary_cross_entropy: pred")
    if not 0.0 < p.data < 1.0:
        raise ValueError(f"binary_cross_entropy: pred must be a probability strictly between 0 and 1, got {p.data!r} "
                         "(pass the sigmoid output Value itself and the loss is computed from its logit)")
    return -(t * p.log() + (1.0 - t) * (1.0 - p).log())


def hinge(score: Scalar, label: Scalar) -> Value:
    """``max(0, 1 - label * score)`` for a raw ``score`` and a ``label`` of -1 or +1.

        >>> hinge(0.25, 1).data, hinge(-2.0, -1).data
        (0.75, 0.0)
    """
    y = _number(label)
    if y not in (-1, 1) or isinstance(y, bool):
        raise ValueError(f"hinge: label must be -1 or +1, got {label!r} (map 0/1 labels with 2 * y - 1)")
    return (1.0 - y * _value(score, "hinge: score")).relu()
