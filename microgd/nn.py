"""Neural networks on Value: Neuron, Layer and MLP, with micrograd's ``nn`` API as a subset.

micrograd's code runs unchanged: ``Neuron(nin, nonlin=True)`` (ReLU; linear with ``nonlin=False``),
``Layer(nin, nout, **kwargs)``, ``MLP(nin, nouts)`` (ReLU hidden layers, linear output), weights from
Python's global ``random`` (``random.uniform(-1, 1)``, biases 0, in micrograd's order), ``parameters()``,
``zero_grad()`` and micrograd's reprs. Beyond it: an activation by name, any registry op of one input
(:data:`microgd.rules.OPS`: "linear", "sigmoid", "tanh", an op made with ``define_op``); ``init=``,
``seed=``, ``rng=`` or ``weights=``; names (below); a plain state dict. A bool second argument of Neuron
and Layer is micrograd's ``nonlin``, a string an activation's name.

**Names.** An MLP labels every node it makes, so that pictures, the backprop page, ``explain`` and a tape's
source all call a node by one name, a Python identifier that LaTeX prints with subscripts. Units: hidden
``h1, h2, ...`` (``h{layer}_{unit}``, e.g. ``h2_1``, with several hidden layers), outputs ``y`` (``y1, y2,
...`` with several). For unit ``u``: its weighted sum ``s_u``, its output ``u`` (a linear unit's sum is its
output, ``u``), weight ``j`` (from input ``j``) ``w_u_j``, bias ``b_u``: ``s_h1``, ``h1``, ``w_h1_2``,
``b_h1``, ``w_y_3`` (LaTeX ``s_{h1}``, ``h_{1}``, ``w_{h1,2}``, ``w_{y,3}``). Inputs given as numbers are
``x1, x2, ...``; the losses of :mod:`microgd.losses` label the loss ``L``.

    >>> import random
    >>> random.seed(1337)
    >>> model = MLP(2, [16, 16, 1])
    >>> model.layers[0].neurons[0], model.layers[2]
    (ReLUNeuron(2), Layer of [LinearNeuron(16)])
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from typing import Any, Union

from . import checks, rules, torch_bridge
from .engine import Value, value_function
from .rules import OPS, Op

__all__ = ["Module", "Neuron", "Layer", "MLP", "StateError", "activation_names", "unit_names", "INITS"]

INITS = ("uniform", "xavier", "he")
Nonlin = Union[bool, str, None]
Inputs = Sequence[Value | float]


class StateError(ValueError):
    """Weights or a state dict that are malformed or do not fit the model; the message names the key."""


def activation_names() -> list[str]:
    """The activations a neuron may have: every registry op of one input, the identity ("linear") first."""
    return [rules.linear.name, *(name for name, op in OPS.items() if op.arity == 1 and op is not rules.linear)]


class Module:
    """Base of Neuron, Layer and MLP: a grid of neurons, layer by layer, with parameters and a state dict."""

    def _grid(self) -> list[list[Neuron]]:
        raise NotImplementedError

    def __call__(self, x: Inputs) -> Value | list[Value]:
        raise NotImplementedError

    def parameters(self) -> list[Value]:
        """Every weight and bias, in micrograd's order: layer by layer, per neuron its weights then its bias."""
        return [p for layer in self._grid() for neuron in layer for p in (*neuron.w, neuron.b)]

    def zero_grad(self) -> None:
        """Set every parameter's ``grad`` to 0 (leaves accumulate across ``backward()`` calls)."""
        for p in self.parameters():
            p.grad = 0.0

    @property
    def sizes(self) -> list[int]:
        """``[nin, width of layer 1, ..., width of the last layer]``."""
        grid = self._grid()
        return [len(grid[0][0].w), *map(len, grid)]

    @property
    def activations(self) -> list[str]:
        """The activation of each layer (the neurons of a layer share one)."""
        return [layer[0].activation for layer in self._grid()]

    def state_dict(self) -> dict[str, Any]:
        """Sizes, activations and weights (per layer, per neuron ``[w1, ..., wn, b]``) as plain data.

            >>> Neuron(2, "tanh", weights=[0.5, -1.0, 0.25]).state_dict()
            {'sizes': [2, 1], 'activations': ['tanh'], 'weights': [[[0.5, -1.0, 0.25]]]}
        """
        weights = [[[p.data for p in (*n.w, n.b)] for n in layer] for layer in self._grid()]
        return {"sizes": self.sizes, "activations": self.activations, "weights": weights}

    def to_torch(self) -> Any:
        """The same network in PyTorch: a float64 ``torch.nn.Sequential`` of ``Linear`` layers, each followed
        by its activation (the op's own torch module, ``ReLU``, ``Tanh``, ``Sigmoid``, else a module running its
        ``array`` form; none for "linear"), with these weights. Its outputs and gradients are microgd's, up to
        the order in which torch adds a layer's products. Needs PyTorch (``pip install "microgd[torch]"``).

            >>> module = MLP(2, [3, 1], activations=["tanh", "linear"], seed=0).to_torch()
            >>> module
            Sequential(
              (0): Linear(in_features=2, out_features=3, bias=True)
              (1): Tanh()
              (2): Linear(in_features=3, out_features=1, bias=True)
            )
            >>> module[0].weight.dtype
            torch.float64
        """
        return torch_bridge.sequential(self.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy the weights of ``state`` into the parameters, after checking all of it (keys, sizes and
        activations equal to this module's, finite numbers): on error :class:`StateError`, module untouched."""
        sizes, activations, weights = _check_state(state)
        if sizes != self.sizes or activations != self.activations:
            raise StateError(f"the state dict holds a network {sizes} {activations}, "
                             f"but this model is {self.sizes} {self.activations}")
        for p, number in zip(self.parameters(), (x for layer in weights for row in layer for x in row)):
            p.data = number


class Neuron(Module):
    """One neuron: ``activation(w . x + b)``, its weighted sum one ``weighted_sum`` node.

    ``nonlin``: True (default, ReLU), False (linear) or an activation's name, also as ``activation=``.
    ``weights=[w1, ..., wn, b]``, else drawn by ``init``. ``label`` names the unit ``u``: its parameters
    ``w_u_1, ..., w_u_n``, ``b_u``, and the nodes each call makes, the sum ``s_u`` and the output ``u``
    (unlabelled: parameters ``w1, ..., wn, b``, nodes unnamed).

        >>> n = Neuron(2, "linear", weights=[2.0, 3.0, 1.0])
        >>> n([1.0, 1.0]).data, n, Neuron(2, False).activation
        (6.0, LinearNeuron(2), 'linear')
    """

    def __init__(self, nin: int, nonlin: Nonlin = None, *, activation: str | None = None, init: str = "uniform",
                 seed: int | None = None, rng: random.Random | None = None,
                 weights: Sequence[float] | None = None, label: str = ""):
        checks.whole(nin, "Neuron nin", 1)
        self._activation = _activation_name(nonlin, activation, "Neuron")
        op = _activation_op(self._activation)
        self._apply = None if op is rules.linear else value_function(op)  # the identity: one node fewer
        row = _draw(_uniform(seed, rng), init, nin, 1) if weights is None else _check_row(weights, nin, "weights")
        self.label = label  # the unit's name, its output's label; names made once here, stored once per call
        self._sum_label = f"s_{label}" if label else ""
        self.w = [Value(x, label=f"w_{label}_{i}" if label else f"w{i}") for i, x in enumerate(row[:-1], 1)]
        self.b = Value(row[-1], label=f"b_{label}" if label else "b")

    @property
    def activation(self) -> str:
        """The activation's name: "relu", "linear", "sigmoid", ..."""
        return self._activation

    @property
    def nonlin(self) -> bool:
        """micrograd's flag: does the neuron apply an activation (anything but "linear")?"""
        return self._apply is not None

    def __call__(self, x: Inputs) -> Value:
        if len(x) != len(self.w):
            raise ValueError(f"Neuron expected {len(self.w)} inputs, got {len(x)}")
        s = Value.weighted_sum(self.w, x, self.b)
        if self._apply is None:  # linear: the sum is the unit's output
            s.label = self.label
            return s
        s.label = self._sum_label
        out = self._apply(s)
        out.label = self.label
        return out

    def _grid(self) -> list[list[Neuron]]:
        return [[self]]

    def __repr__(self) -> str:
        return f"{'ReLU' if self._activation == 'relu' else self._activation.capitalize()}Neuron({len(self.w)})"


class Layer(Module):
    """``nout`` neurons reading the same ``nin`` inputs; calling it returns a list of ``nout`` Values, or the
    Value itself when ``nout == 1`` (as micrograd's). Arguments as for :class:`Neuron`, ``weights=`` one row
    per neuron; ``label``: a prefix for the neurons' names (label1, label2, ...) or a list of names
    (each a unit's name, see :class:`Neuron`).

        >>> layer = Layer(2, 3, "tanh", seed=0)
        >>> len(layer([0.5, -0.5])), len(layer.parameters()), layer
        (3, 9, Layer of [TanhNeuron(2), TanhNeuron(2), TanhNeuron(2)])
    """

    def __init__(self, nin: int, nout: int, nonlin: Nonlin = None, *, activation: str | None = None,
                 init: str = "uniform", seed: int | None = None, rng: random.Random | None = None,
                 weights: Sequence[Sequence[float]] | None = None, label: str | Sequence[str] = "n"):
        checks.whole(nin, "Layer nin", 1)
        checks.whole(nout, "Layer nout", 1)
        name = _activation_name(nonlin, activation, "Layer")
        names = [f"{label}{j}" for j in range(1, nout + 1)] if isinstance(label, str) else list(label)
        if len(names) != nout:
            raise ValueError(f"Layer label should name {nout} neurons, got {label!r}")
        if weights is None:
            uniform = _uniform(seed, rng)
            rows = [_draw(uniform, init, nin, nout) for _ in range(nout)]
        else:
            rows = _check_layer(weights, nin, nout, "weights")
        self.neurons = [Neuron(nin, activation=name, weights=row, label=n) for row, n in zip(rows, names)]

    def __call__(self, x: Inputs) -> Value | list[Value]:
        out = self._outputs(x)
        return out[0] if len(out) == 1 else out

    def _outputs(self, x: Inputs) -> list[Value]:
        nin = len(self.neurons[0].w)
        if len(x) != nin:
            raise ValueError(f"Layer expected {nin} inputs, got {len(x)}")
        # numbers become input leaves once here, not a constant per neuron in each sum (measured faster)
        x = [v if isinstance(v, Value) else Value(v, label=f"x{i}") for i, v in enumerate(x, 1)]
        return [neuron(x) for neuron in self.neurons]

    def _grid(self) -> list[list[Neuron]]:
        return [self.neurons]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(map(repr, self.neurons))}]"


class MLP(Module):
    """A multi-layer perceptron ``MLP(nin, [width, ..., nout])``; ``model(x)`` is a Value when the last layer
    has one neuron, else a list of Values.

    No activation given: micrograd's, ReLU hidden layers and a linear output. ``activation=`` (or the third
    argument) puts one on every layer, the output included; ``activations=[...]`` one per layer. ``weights=``
    gives every parameter: per layer, per neuron, ``[w1, ..., wn, b]``. Hidden units are named h1, h2, ...
    (h2_1: layer 2, unit 1, with several hidden layers), outputs y or y1, y2, ...; every node a call makes
    is labelled (see the module's docstring). Tutorial 2's network:

        >>> model = MLP(2, [3, 1], activation="sigmoid", weights=[
        ...     [[-0.5, -1.0, 0.5], [-0.5, 0.5, 0.5], [1.0, 0.0, 0.5]],   # h1, h2, h3: [w1, w2, b]
        ...     [[0.5, -1.0, 0.0, 0.5]]])                                  # y: [w1, w2, w3, b]
        >>> y = model([1.0, 1.0])
        >>> round(y.data, 4), model.sizes, [p.label for p in model.parameters()[-2:]]
        (0.503, [2, 3, 1], ['w_y_3', 'b_y'])
        >>> y.label, y.parents[0].label, [v.label for v in y.parents[0].parents[3:6]]
        ('y', 's_y', ['h1', 'h2', 'h3'])
    """

    def __init__(self, nin: int, nouts: Sequence[int], activation: str | None = None, *,
                 activations: Sequence[str] | None = None, init: str = "uniform", seed: int | None = None,
                 rng: random.Random | None = None, weights: Sequence | None = None):
        checks.whole(nin, "MLP nin", 1)
        if isinstance(nouts, int) or not isinstance(nouts, Sequence) or not nouts:
            raise TypeError(f"MLP nouts must be a non-empty list of layer widths, got {nouts!r}")
        for i, n in enumerate(nouts):
            checks.whole(n, f"MLP nouts[{i}]", 1)
        sizes = [nin, *nouts]
        if activations is None:  # micrograd's default: ReLU hidden layers, a linear output
            activations = [activation] * len(nouts) if activation is not None else \
                [rules.relu.name] * (len(nouts) - 1) + [rules.linear.name]
        elif activation is not None:
            raise TypeError("MLP takes activation= (every layer) or activations= (one per layer), not both")
        elif isinstance(activations, str) or len(activations) != len(nouts):
            raise ValueError(f"MLP activations must list one activation per layer ({len(nouts)}), got {activations!r}")
        for name in activations:
            _activation_op(name)
        if weights is None:
            uniform = _uniform(seed, rng)
            rows = [[_draw(uniform, init, a, b) for _ in range(b)] for a, b in itertools.pairwise(sizes)]
        else:
            rows = _check_weights(weights, sizes)
        self.layers = [Layer(a, b, activation=act, weights=w, label=unit_names(i, len(nouts), b))
                       for i, (a, b, act, w) in enumerate(zip(sizes, sizes[1:], activations, rows), 1)]

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> MLP:
        """A new MLP from a ``state_dict()`` (of an MLP, a Layer or a Neuron), checked as ``load_state_dict`` does.

            >>> MLP.from_state_dict(Neuron(2, weights=[1.0, 2.0, 0.0]).state_dict())
            MLP of [Layer of [ReLUNeuron(2)]]
        """
        sizes, activations, weights = _check_state(state)
        return cls(sizes[0], sizes[1:], activations=activations, weights=weights)

    @classmethod
    def from_torch(cls, module: Any) -> MLP:
        """The MLP a PyTorch ``Sequential`` of ``Linear`` layers (with biases), each followed by at most one
        activation microgd has (``ReLU``, ``Tanh``, ``Sigmoid``, ``Identity``, or a registry op as
        :meth:`to_torch` makes it), holds: its weights in float64, on any device.

            >>> model = MLP(2, [3, 1], activations=["relu", "sigmoid"], seed=0)
            >>> MLP.from_torch(model.to_torch()).state_dict() == model.state_dict()
            True
        """
        return cls.from_state_dict(torch_bridge.state_dict_of(module))

    def __call__(self, x: Inputs) -> Value | list[Value]:
        nin = len(self.layers[0].neurons[0].w)
        try:
            n = len(x)
        except TypeError:
            raise TypeError(f"MLP expected a list of {nin} inputs, got {type(x).__name__}: {x!r}") from None
        if n != nin:
            raise ValueError(f"MLP expected {nin} inputs, got {n}")
        outputs = self.layers[0]._outputs(x)
        for layer in self.layers[1:]:
            outputs = layer._outputs(outputs)
        return outputs[0] if len(outputs) == 1 else outputs

    def _grid(self) -> list[list[Neuron]]:
        return [layer.neurons for layer in self.layers]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(map(repr, self.layers))}]"


def unit_names(layer: int, layers: int, width: int) -> list[str]:
    """The names of the ``width`` units of layer ``layer`` (1 to ``layers``) of an MLP: h1, h2, ... for hidden
    units (h{layer}_{unit}, e.g. h2_1, with several hidden layers); y, or y1, y2, ..., for the outputs.

        >>> unit_names(1, 2, 3), unit_names(2, 3, 2), unit_names(3, 3, 1), unit_names(3, 3, 2)
        (['h1', 'h2', 'h3'], ['h2_1', 'h2_2'], ['y'], ['y1', 'y2'])
    """
    if layer == layers:
        return ["y"] if width == 1 else [f"y{j}" for j in range(1, width + 1)]
    return [f"h{j}" if layers == 2 else f"h{layer}_{j}" for j in range(1, width + 1)]


# -- activations and initialisation ------------------------------------------------------------------

def _activation_name(nonlin: Nonlin, activation: str | None, who: str) -> str:
    """micrograd's ``nonlin`` (True: ReLU, False: linear) or an activation's name, as a checked name."""
    if nonlin is not None and activation is not None:
        raise TypeError(f"{who} takes nonlin (True, False or a name) or activation=, not both")
    choice = activation if activation is not None else nonlin
    if choice is None or isinstance(choice, bool):
        return rules.linear.name if choice is False else rules.relu.name
    if not isinstance(choice, str):
        raise TypeError(f"{who}: nonlin must be True (ReLU), False (linear) or an activation's name, got {choice!r}")
    _activation_op(choice)
    return choice


def _activation_op(name: Any) -> Op:
    """The registry op of one input called ``name`` (a ValueError naming the choices if there is none)."""
    op = OPS.get(name) if isinstance(name, str) else None
    if op is None or op.arity != 1:
        raise ValueError(f"unknown activation {name!r}: choose from {', '.join(activation_names())}")
    return op


def _uniform(seed: int | None, rng: random.Random | None) -> Callable[[float, float], float]:
    """Where numbers are drawn from: ``rng``, a new generator seeded with ``seed``, else Python's global ``random``."""
    if rng is not None:
        if seed is not None:
            raise TypeError("give seed= or rng=, not both")
        if not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
        return rng.uniform
    seed = checks.seed(seed, "seed")
    return random.uniform if seed is None else random.Random(seed).uniform


def _draw(uniform: Callable[[float, float], float], init: str, fan_in: int, fan_out: int) -> list[float]:
    """One neuron's ``[w1, ..., w_fan_in, b]``: weights drawn by the ``init`` scheme, bias 0.

    "uniform" is micrograd's [-1, 1]; "xavier" (Glorot uniform, for sigmoid and tanh)
    ``±sqrt(6 / (fan_in + fan_out))``; "he" (for relu) ``±sqrt(6 / fan_in)``.
    """
    if init == "uniform":
        limit = 1.0
    elif init == "xavier":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
    elif init == "he":
        limit = math.sqrt(6.0 / fan_in)
    else:
        raise ValueError(f"unknown init {init!r}: choose from {', '.join(INITS)}")
    return [uniform(-limit, limit) for _ in range(fan_in)] + [0.0]


# -- checking -------------------------------------------------------------------------------------------

def _check_list(value: Any, n: int, where: str, what: str) -> Sequence:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        got = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
        raise StateError(f"{where} should list {n} {what}, got {got}")
    return value


def _number(x: Any, where: str) -> float:
    try:
        return checks.number(x, where)
    except checks.ArgumentError as error:
        raise StateError(str(error)) from None


def _check_row(row: Any, nin: int, where: str) -> list[float]:
    """One neuron's ``[w1, ..., w_nin, b]`` as finite floats."""
    row = _check_list(row, nin + 1, where, f"numbers ({nin} weights then the bias)")
    return [_number(x, f"{where}[{i}]") for i, x in enumerate(row)]


def _check_layer(rows: Any, nin: int, nout: int, where: str) -> list[list[float]]:
    return [_check_row(row, nin, f"{where}[{j}]") for j, row in enumerate(_check_list(rows, nout, where, "neurons"))]


def _check_weights(weights: Any, sizes: list[int]) -> list[list[list[float]]]:
    """Weights for a network of ``sizes``: per layer, per neuron, ``[w1, ..., wn, b]``."""
    layers = _check_list(weights, len(sizes) - 1, "weights", "layers")
    return [_check_layer(layer, a, b, f"weights[{i}]") for i, (layer, a, b) in enumerate(zip(layers, sizes, sizes[1:]))]


def _check_state(state: Any) -> tuple[list[int], list[str], list[list[list[float]]]]:
    """``(sizes, activations, weights)`` of a state dict, or StateError naming the key that is wrong."""
    keys = ("sizes", "activations", "weights")
    if not isinstance(state, dict):
        raise StateError(f"a state dict should be an object with keys {', '.join(keys)}, got {type(state).__name__}")
    missing, unknown = [k for k in keys if k not in state], [k for k in state if k not in keys]
    if missing or unknown:
        raise StateError(f"{'missing' if missing else 'unexpected'} {', '.join(map(repr, missing or unknown))}")
    sizes, activations, names = state["sizes"], state["activations"], activation_names()
    if (not isinstance(sizes, list) or len(sizes) < 2
            or any(not checks.is_whole(n) or n < 1 for n in sizes)):
        raise StateError(f"sizes should be a list of at least 2 whole numbers >= 1, got {sizes!r}")
    if (not isinstance(activations, list) or len(activations) != len(sizes) - 1
            or not all(isinstance(a, str) and a in names for a in activations)):
        raise StateError(f"activations should list {len(sizes) - 1} of {', '.join(names)}, got {activations!r}")
    return sizes, activations, _check_weights(state["weights"], sizes)
