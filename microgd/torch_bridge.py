"""microgd networks in PyTorch and back, as plain data: a state dict (sizes, activations, weights, as
``microgd.nn``'s ``state_dict()``) to a float64 ``torch.nn.Sequential`` and back. ``MLP.to_torch()`` and
``MLP.from_torch(module)`` are built on these. PyTorch is an optional extra, imported when first needed.

    >>> net = sequential({"sizes": [2, 1], "activations": ["tanh"], "weights": [[[0.5, -1.0, 0.25]]]})
    >>> state_dict_of(net)
    {'sizes': [2, 1], 'activations': ['tanh'], 'weights': [[[0.5, -1.0, 0.25]]]}
"""

from __future__ import annotations

import functools
from typing import Any

from . import rules
from .rules import OPS, Op

__all__ = ["sequential", "state_dict_of"]

def sequential(state: dict[str, Any]) -> Any:
    """A float64 ``torch.nn.Sequential``: per layer a ``Linear`` with the state's weights, then its activation
    (the module its registry entry builds, ``ReLU``, ``Tanh``, ``Sigmoid``; for any other op one running its
    ``array`` form; none for "linear", the identity)."""
    torch = _torch("to_torch")
    items: list[Any] = []
    for rows, name in zip(state["weights"], state["activations"]):
        linear = torch.nn.Linear(len(rows[0]) - 1, len(rows), dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor([row[:-1] for row in rows], dtype=torch.float64))
            linear.bias.copy_(torch.tensor([row[-1] for row in rows], dtype=torch.float64))
        items.append(linear)
        if OPS[name] is not rules.linear:
            items.append(_torch_activation(torch, OPS[name]))
    return torch.nn.Sequential(*items)


def state_dict_of(module: Any) -> dict[str, Any]:
    """The state dict of a ``Sequential`` of ``Linear`` layers (with biases), each followed by at most one
    activation microgd has (``ReLU``, ``Tanh``, ``Sigmoid``, ``Identity``, or a registry op as
    :func:`sequential` makes it), from any device and dtype, its weights in float64."""
    torch = _torch("from_torch")
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"from_torch: expected a torch.nn.Sequential of Linear layers and activations, "
                        f"got {type(module).__name__}")
    sizes: list[int] = []
    activations: list[str] = []
    weights = []
    for k, item in enumerate(module):
        if isinstance(item, torch.nn.Linear):
            if item.bias is None:
                raise ValueError(f"from_torch: item {k} ({item}) has no bias; a microgd neuron always has one")
            if sizes and item.in_features != sizes[-1]:
                raise ValueError(f"from_torch: item {k} ({item}) takes {item.in_features} inputs, but the layer "
                                 f"before it gives {sizes[-1]}")
            sizes += [item.in_features, item.out_features] if not sizes else [item.out_features]
            rows = item.weight.detach().to("cpu", torch.float64).tolist()
            bias = item.bias.detach().to("cpu", torch.float64).tolist()
            weights.append([[*row, b] for row, b in zip(rows, bias)])
            activations.append(rules.linear.name)
            continue
        name = _activation_of_torch(torch, item)
        if name is None:
            raise ValueError(f"from_torch: item {k} ({item}) is not a Linear layer or an activation microgd has "
                             "(ReLU, Tanh, Sigmoid, Identity, or one made by to_torch)")
        if k == 0 or not isinstance(module[k - 1], torch.nn.Linear):
            raise ValueError(f"from_torch: item {k} ({item}) is an activation without a Linear layer right "
                             "before it")
        activations[-1] = name
    if not sizes:
        raise ValueError("from_torch: the Sequential holds no Linear layer")
    return {"sizes": sizes, "activations": activations, "weights": weights}


def _torch(who: str) -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError(f'{who} needs PyTorch: pip install "microgd[torch]"') from None
    return torch


def _torch_activation(torch: Any, op: Op) -> Any:
    """The torch module for activation ``op``: the one its registry entry builds (``op.torch``), else the
    op's ``array`` form run on tensors (torch's autograd differentiates it)."""
    if op.torch is not None:
        return op.torch(torch)
    if op.array is None:
        raise ValueError(f"to_torch: activation {op.name!r} has no array form, so PyTorch cannot run it; define "
                         "it with define_op(..., array=lambda xp, x: ...), xp being numpy or torch")
    return _registry_activation(torch)(op.name)


def _activation_of_torch(torch: Any, item: Any) -> str | None:
    """The activation's name of a torch module (of the type an op's registry entry builds: "linear" for
    Identity), None if microgd has no such activation."""
    for name, op in OPS.items():
        if op.arity == 1 and op.torch is not None and type(item) is type(op.torch(torch)):
            return name
    if type(item) is _registry_activation(torch) and item.op in OPS and OPS[item.op].arity == 1:
        return str(item.op)
    return None


@functools.cache
def _registry_activation(torch: Any) -> Any:
    class RegistryActivation(torch.nn.Module):
        """A microgd registry op of one input as a torch module, computed by its ``array`` form."""

        def __init__(self, op: str):
            super().__init__()
            self.op = op

        def forward(self, x: Any) -> Any:
            array = OPS[self.op].array
            assert array is not None  # checked when the module was made
            return array(torch, x).to(x.dtype)  # step's (x > 0) * 1.0 is torch's default dtype, float32

        def extra_repr(self) -> str:
            return repr(self.op)

    return RegistryActivation
