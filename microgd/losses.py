"""Loss functions on Values: each returns a Value to call ``backward()`` on.

    >>> from microgd import Value
    >>> from microgd.losses import half_squared_error
    >>> y = Value(0.75)
    >>> loss = half_squared_error(y, 1.0)      # tutorial 2's "mse": 1/2 (y - z)^2
    >>> loss.data, loss.label                   # every loss is labelled L, as pictures and explain show it
    (0.03125, 'L')
    >>> loss.backward(); y.grad                 # d loss / d y = y - z
    -0.25
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar, Union

from . import checks, rules
from .engine import Value

__all__ = ["squared_error", "half_squared_error", "mse", "binary_cross_entropy", "hinge", "cross_entropy",
           "over_outputs"]

Scalar = Union[Value, int, float]
LOSS = "L"  # the label of every loss these functions return (tutorial 2's L)
F = TypeVar("F", bound=Callable[..., Value])


def _value(x: Scalar, what: str) -> Value:
    if isinstance(x, Value):
        return x
    if not checks.is_real(x):
        raise TypeError(f"{what} must be a Value or a number, got {type(x).__name__}: {x!r}")
    return Value(x)


def _number(x: Scalar) -> float:
    return x.data if isinstance(x, Value) else x


def _named(loss: Value) -> Value:
    """The loss node, labelled ``L`` (the name pictures, the backprop page, explain and a tape's source give it)."""
    loss.label = LOSS
    return loss


def over_outputs(loss: F) -> F:
    """Mark ``loss`` as one that takes all of a model's outputs at once, ``loss(outputs, target)``, as
    :func:`cross_entropy` does; :func:`microgd.train.fit` otherwise applies a loss to each output and
    its own target and sums.

        >>> from microgd import Value
        >>> @over_outputs
        ... def total_error(outputs, target):        # the outputs' sum against one number
        ...     return (sum(outputs) - target) ** 2
        >>> total_error([Value(1.0), Value(2.0)], 4.0).data, total_error.over_outputs
        (1.0, True)
    """
    setattr(loss, "over_outputs", True)  # noqa: B010 (an attribute the type checker does not know of functions)
    return loss


def squared_error(pred: Scalar, target: Scalar) -> Value:
    """``(pred - target)^2``, tutorial 1's error."""
    return _named(_squared(pred, target, "squared_error"))


def _squared(pred: Scalar, target: Scalar, who: str) -> Value:
    return (_value(pred, f"{who}: pred") - target) ** 2


def half_squared_error(pred: Scalar, target: Scalar) -> Value:
    """``1/2 (pred - target)^2``, tutorial 2's loss: its derivative is just ``pred - target``."""
    return _named(0.5 * (_value(pred, "half_squared_error: pred") - target) ** 2)


def mse(preds: Sequence[Scalar], targets: Sequence[Scalar]) -> Value:
    """Mean squared error over a batch: ``sum((pred - target)^2) / n``.

        >>> mse([1.0, 2.0], [0.0, 0.0]).data
        2.5
    """
    if len(preds) != len(targets):
        raise ValueError(f"mse: {len(preds)} predictions but {len(targets)} targets")
    if not preds:
        raise ValueError("mse: needs at least one prediction")
    total = _squared(preds[0], targets[0], "mse")
    for pred, target in zip(preds[1:], targets[1:]):
        total = total + _squared(pred, target, "mse")
    return _named(total / len(preds))


def binary_cross_entropy(pred: Scalar, target: Scalar) -> Value:
    """``-(t log p + (1 - t) log(1 - p))`` for a probability ``pred`` and a target ``t`` in [0, 1].

    Numerically stable and branch-free (so a tape of it holds for every sample): when ``pred`` is a
    sigmoid node, the loss is computed from its logit ``s`` as ``t softplus(-s) + (1 - t) softplus(s)``,
    finite for any ``s``, accurate to the last digits even when the loss is tiny, with the gradient
    ``sigmoid(s) - t`` even where ``pred`` rounds to 0 or 1. Any other ``pred`` must lie strictly between
    0 and 1. ``target`` may be a Value (a tape's argument): the loss reads it, not its number.

        >>> from microgd import Value
        >>> s = Value(40.0); p = s.sigmoid()        # p rounds to 1.0
        >>> loss = binary_cross_entropy(p, 0.0); loss.backward()
        >>> round(loss.data, 6), s.grad
        (40.0, 1.0)
    """
    checks.number(_number(target), "binary_cross_entropy: target", at_least=0, at_most=1)
    if isinstance(pred, Value) and pred.rule is rules.sigmoid:  # not a micrograd-style closure of that name
        s = pred.parents[0]
        # softplus(s) - t s would be the same number, but it cancels to 0 where the loss is tiny
        return _named(target * rules.softplus(-s) + (1.0 - target) * rules.softplus(s))
    p = _value(pred, "binary_cross_entropy: pred")
    if not 0.0 < p.data < 1.0:
        raise ValueError(f"binary_cross_entropy: pred must be a probability strictly between 0 and 1, got {p.data!r} "
                         "(pass the sigmoid output Value itself and the loss is computed from its logit)")
    return _named(-(target * p.log() + (1.0 - target) * (1.0 - p).log()))


def hinge(score: Scalar, label: Scalar) -> Value:
    """``max(0, 1 - label * score)`` for a raw ``score`` and a ``label`` of -1 or +1 (a number or a Value).

        >>> hinge(0.25, 1).data, hinge(-2.0, -1).data
        (0.75, 0.0)
    """
    y = _number(label)
    if y not in (-1, 1) or isinstance(y, bool):
        raise ValueError(f"hinge: label must be -1 or +1, got {label!r} (map 0/1 labels with 2 * y - 1)")
    return _named((1.0 - label * _value(score, "hinge: score")).relu())


@over_outputs
def cross_entropy(logits: Sequence[Scalar], label: Scalar) -> Value:
    """Softmax cross-entropy of raw scores ``logits`` for the class ``label`` (0, 1, ..., n - 1):
    ``-log softmax(logits)[label] = logsumexp(logits) - logits[label]``.

    Stable for any logits (the registry's ``logsumexp`` shifts by the largest); its gradient by
    ``logits[k]`` is ``softmax(logits)[k] - [k == label]``. A Value ``label`` (a tape's argument)
    picks its logit without a branch, ``sum_k [k == label] logits[k]``, so one tape serves every label.
    :func:`microgd.train.fit` passes it the model's whole list of outputs.

        >>> from microgd import Value
        >>> logits = [Value(2.0), Value(1.0), Value(0.1)]
        >>> loss = cross_entropy(logits, 0); loss.backward()
        >>> round(loss.data, 6), [round(z.grad, 6) for z in logits]
        (0.41703, [-0.340999, 0.242433, 0.098566])
    """
    n = len(logits)
    k = _number(label)
    if not checks.is_real(k) or not float(k).is_integer() or not 0 <= k < n:
        raise ValueError(f"cross_entropy: label must be a class index 0 to {n - 1} (one per logit), got {label!r}")
    zs = [_value(z, f"cross_entropy: logits[{i}]") for i, z in enumerate(logits)]
    if isinstance(label, Value):
        picked = Value.weighted_sum([1.0 - rules.step(abs(label - i)) for i in range(n)], zs, 0.0)
    else:
        picked = zs[int(k)]
    return _named(rules.logsumexp(*zs) - picked)

