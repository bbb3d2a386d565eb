"""Neural networks on Value: Neuron, Layer, MLP, and saving them as versioned JSON.

A neuron computes its weighted sum as one ``weighted_sum`` node, ``Value.weighted_sum(w, x, b)``, then its
activation ("sigmoid", "tanh", "relu" or "linear" for none). The second seed's 2-3-1 network:

    >>> from microgd.nn import MLP
    >>> model = MLP(2, [3, 1], weights=[
    ...     [[-0.5, -1.0, 0.5], [-0.5, 0.5, 0.5], [1.0, 0.0, 0.5]],   # hidden: [w_1, w_2, b] per neuron
    ...     [[0.5, -1.0, 0.0, 0.5]]])                                  # output: [w_1, w_2, w_3, b]
    >>> round(model([1.0, 1.0]).data, 4)
    0.503
    >>> model.sizes, len(model.parameters())
    ([2, 3, 1], 13)

Initialisation (when no ``weights=``), from ``seed=`` or ``rng=random.Random(...)``, never the
global random state: ``init="uniform"`` draws every weight and bias from [-1, 1] (the seed's
choice); ``"xavier"`` (Glorot uniform, for sigmoid/tanh) draws weights from
``±sqrt(6 / (fan_in + fan_out))`` and ``"he"`` (for relu) from ``±sqrt(6 / fan_in)``, both with
zero biases. ``model.save(path)`` writes JSON atomically; ``MLP.load(path)`` builds a model from it.

A model may also carry how its training data was scaled and named, so that a loaded model can
predict in the data's own units: set ``model.scaling`` and ``model.columns`` (both None by
default) before ``save``; ``load`` restores them.

    >>> from microgd.data import MinMaxScaler
    >>> model.scaling = {"inputs": MinMaxScaler().fit([[0, 10], [4, 20]]), "target": MinMaxScaler().fit([5, 7])}
    >>> model.columns = {"inputs": ["a", "b"], "target": "y"}
    >>> model.save("model.json")
    >>> loaded = MLP.load("model.json")
    >>> loaded.columns["target"], loaded.scaling["inputs"].transform([[2, 15]])
    ('y', [[0.5, 0.5]])
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Sequence
from types import MethodType
from typing import Any, Union

from .data import MinMaxScaler
from .engine import Value
from .files import write_atomic

__all__ = ["Module", "Neuron", "Layer", "MLP", "StateError", "ACTIVATIONS", "INITS"]

ACTIVATIONS: dict[str, Callable[[Value], Value] | None] = {
    "sigmoid": Value.sigmoid, "tanh": Value.tanh, "relu": Value.relu, "linear": None,
}
INITS = ("uniform", "xavier", "he")
FORMAT, VERSION = "microgd-mlp", 1
_KEYS = ("format", "version", "sizes", "activations", "weights")
_OPTIONAL_KEYS = ("scaling", "columns")

PathLike = Union[str, "os.PathLike[str]"]


class StateError(ValueError):
    """A state dict or model file is malformed or does not fit the model; the message says where and why."""


class _class_or_instance_method:
    """A method bound to the class when called on the class, to the instance when called on one."""

    def __init__(self, on_class: Callable, on_instance: Callable, doc: str):
        self.on_class, self.on_instance, self.__doc__ = on_class, on_instance, doc

    def __get__(self, instance, owner):
        return MethodType(self.on_class, owner) if instance is None else MethodType(self.on_instance, instance)


def _load_new(cls: type[Module], path: PathLike) -> Module:
    """A new module of class ``cls`` built from the file at ``path``."""
    source = os.fspath(path)
    sizes, activations, weights, scaling, columns = _check_state(_read(path), source)
    module = cls._build(sizes, activations, weights, source)
    module.scaling, module.columns = scaling, columns
    return module


def _load_into(module: Module, path: PathLike) -> Module:
    """Load the file at ``path`` into ``module`` (checked first; untouched on error); returns it."""
    module._load_checked(_read(path), os.fspath(path))
    return module


class Module:
    """Base of Neuron, Layer and MLP: parameters, gradients, state dicts and files.

    Every module is a grid of neurons (layers of neurons), saved in one format:
    ``{"format": "microgd-mlp", "version": 1, "sizes": [...], "activations": [...], "weights": [...]}``
    where ``weights`` holds, per layer, per neuron, ``[w_1, ..., w_n, b]``, and two optional keys
    written only when the attributes of the same names are set:

    - ``scaling``: ``{"inputs": MinMaxScaler, "target": MinMaxScaler}``, both fitted, how the
      training data was scaled (one column per input, one per output); saved as their ``state_dict()``.
    - ``columns``: ``{"inputs": [name, ...], "target": name}``, the data's column names, one per input.

    Files without them load as before (the attributes are then None).
    """

    scaling: dict[str, MinMaxScaler] | None = None
    columns: dict[str, Any] | None = None

    def _grid(self) -> list[list[Neuron]]:
        """The module's neurons, layer by layer."""
        raise NotImplementedError

    @classmethod
    def _build(cls, sizes: list[int], activations: list[str], weights: list, source: str) -> Module:
        """A new module of this class from checked sizes, activations and weights."""
        raise NotImplementedError

    def parameters(self) -> list[Value]:
        """Every weight and bias: layer by layer, neuron by neuron, a neuron's weights then its bias."""
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
        """The activation of each layer (all neurons of a layer share one)."""
        names = []
        for i, layer in enumerate(self._grid(), 1):
            kinds = {neuron.activation for neuron in layer}
            if len(kinds) != 1:
                raise ValueError(f"layer {i} mixes activations {sorted(kinds)}: a layer has one activation")
            names.append(kinds.pop())
        return names

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the module, as plain JSON-ready data (``scaling`` and ``columns``
        only when set; a malformed one is a TypeError or StateError here, not a file ``load`` rejects)."""
        weights = [[[p.data for p in (*n.w, n.b)] for n in layer] for layer in self._grid()]
        state = {"format": FORMAT, "version": VERSION, "sizes": self.sizes, "activations": self.activations,
                 "weights": weights}
        scaling = self.scaling
        if scaling is not None:
            if not (isinstance(scaling, dict) and set(scaling) == {"inputs", "target"}
                    and all(isinstance(s, MinMaxScaler) for s in scaling.values())):
                raise TypeError("model.scaling should be None or {'inputs': MinMaxScaler, 'target': MinMaxScaler}, "
                                f"got {scaling!r}")
            state["scaling"] = {key: scaling[key].state_dict() for key in ("inputs", "target")}
        if self.columns is not None:
            state["columns"] = self.columns
        _, columns = _check_extras(state, state["sizes"], "model")
        if columns is not None:
            state["columns"] = columns  # checked, and a copy: later edits of model.columns do not reach it
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy the weights of ``state`` into this module's parameters.

        ``state`` is checked whole first (format, version, shape and activations equal to this
        module's, every number finite, ``scaling`` and ``columns`` if present); on any error
        :class:`StateError` is raised and the module is left untouched. Sets ``scaling`` and
        ``columns`` to the state's (None where it has none).
        """
        self._load_checked(state, "state dict")

    def _load_checked(self, state: Any, source: str) -> None:
        sizes, activations, weights, scaling, columns = _check_state(state, source)
        if sizes != self.sizes or activations != self.activations:
            raise StateError(f"{source}: holds a network {sizes} {activations}, "
                             f"but this model is {self.sizes} {self.activations}")
        for p, number in zip(self.parameters(), (x for layer in weights for row in layer for x in row)):
            p.data = number
        self.scaling, self.columns = scaling, columns

    def save(self, path: PathLike) -> None:
        """Write ``state_dict()`` to ``path`` as JSON, atomically: a crash mid-write leaves any old file intact.

        Floats are written with ``repr`` so that loading gives back every parameter exactly;
        ``scaling`` and ``columns`` are written when set.
        """
        write_atomic(path, json.dumps(self.state_dict(), allow_nan=False) + "\n")

    load = _class_or_instance_method(_load_new, _load_into, """Read a file written by ``save``.

        ``MLP.load(path)`` builds a new model; ``model.load(path)`` loads the weights into ``model``
        (which must have the same sizes and activations) and returns it. Either way ``scaling`` and
        ``columns`` are the file's (None when it has none). A malformed file raises
        :class:`StateError` naming the file and the problem (and the key), and leaves ``model`` untouched.
        """)


class Neuron(Module):
    """One neuron: ``activation(w . x + b)``, the weighted sum as a single ``weighted_sum`` node.

    ``weights=[w_1, ..., w_n, b]`` or drawn by ``init`` (see the module); ``label`` prefixes the
    parameters' labels (``w1 .. wn``, ``b``), which graph pictures show.

        >>> n = Neuron(2, "linear", weights=[2.0, 3.0, 1.0])    # [w_1, w_2, b]
        >>> n([1.0, 1.0]).data
        6.0
    """

    def __init__(self, nin: int, activation: str = "sigmoid", *, init: str = "uniform", seed: int | None = None,
                 rng: random.Random | None = None, weights: Sequence[float] | None = None, label: str = ""):
        _check_size("Neuron nin", nin)
        _check_activation(activation)
        if weights is None:
            row = _draw(_rng(seed, rng), init, nin, 1)
        else:
            row = _check_row(weights, nin, "Neuron weights", "weights")
        self.w = [Value(x, label=f"{label}w{i}") for i, x in enumerate(row[:-1], 1)]
        self.b = Value(row[-1], label=f"{label}b")
        self.activation = activation

    def __call__(self, x: Sequence[Value | float]) -> Value:
        if len(x) != len(self.w):
            raise ValueError(f"Neuron expected {len(self.w)} inputs, got {len(x)}")
        s = Value.weighted_sum(self.w, x, self.b)
        act = ACTIVATIONS[self.activation]
        return act(s) if act else s

    def _grid(self) -> list[list[Neuron]]:
        return [[self]]

    @classmethod
    def _build(cls, sizes, activations, weights, source):
        if sizes[1:] != [1]:
            raise StateError(f"{source}: holds a network {sizes}, not a single neuron [nin, 1]")
        return cls(sizes[0], activations[0], weights=weights[0][0])

    def __repr__(self) -> str:
        return f"Neuron({len(self.w)}, activation={self.activation!r})"


class Layer(Module):
    """``nout`` neurons reading the same ``nin`` inputs; calling it returns a list of ``nout`` Values.

        >>> layer = Layer(2, 3, "tanh", seed=0)
        >>> len(layer([0.5, -0.5])), len(layer.parameters())
        (3, 9)
    """

    def __init__(self, nin: int, nout: int, activation: str = "sigmoid", *, init: str = "uniform",
                 seed: int | None = None, rng: random.Random | None = None,
                 weights: Sequence[Sequence[float]] | None = None, label: str = ""):
        _check_size("Layer nin", nin)
        _check_size("Layer nout", nout)
        _check_activation(activation)
        if weights is None:
            rng = _rng(seed, rng)
            rows = [_draw(rng, init, nin, nout) for _ in range(nout)]
        else:
            rows = _check_layer(weights, nin, nout, "Layer weights", "weights")
        self.neurons = [Neuron(nin, activation, weights=row, label=f"{label}n{j}.") for j, row in enumerate(rows, 1)]

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        nin = len(self.neurons[0].w)
        if len(x) != nin:
            raise ValueError(f"Layer expected {nin} inputs, got {len(x)}")
        # numbers become input leaves once here, not a constant per neuron in each dot (measured faster)
        x = [v if isinstance(v, Value) else Value(v, label=f"x{i}") for i, v in enumerate(x, 1)]
        return [neuron(x) for neuron in self.neurons]

    def _grid(self) -> list[list[Neuron]]:
        return [self.neurons]

    @classmethod
    def _build(cls, sizes, activations, weights, source):
        if len(sizes) != 2:
            raise StateError(f"{source}: holds a network {sizes} of {len(sizes) - 1} layers, not a single layer")
        return cls(sizes[0], sizes[1], activations[0], weights=weights[0])

    def __repr__(self) -> str:
        return f"Layer({len(self.neurons[0].w)}, {len(self.neurons)}, activation={self.activations[0]!r})"


class MLP(Module):
    """A multi-layer perceptron: ``MLP(nin, [width, ..., nout])``.

    ``activation=`` (default "sigmoid") applies to every layer, the output layer included;
    ``activations=[...]`` gives one per layer. ``weights=`` gives every parameter explicitly:
    per layer, per neuron, ``[w_1, ..., w_n, b]``. ``model(x)`` returns a Value when the last
    layer has one neuron, else a list of Values.

        >>> model = MLP(2, [4, 1], activations=["tanh", "sigmoid"], init="xavier", seed=1)
        >>> model
        MLP(2, [4, 1], activations=['tanh', 'sigmoid'])
        >>> 0.0 < model([0.2, 0.7]).data < 1.0
        True
    """

    def __init__(self, nin: int, nouts: Sequence[int], activation: str | None = None, *,
                 activations: Sequence[str] | None = None, init: str = "uniform", seed: int | None = None,
                 rng: random.Random | None = None, weights: Sequence | None = None):
        _check_size("MLP nin", nin)
        if isinstance(nouts, int) or not isinstance(nouts, Sequence) or not nouts:
            raise TypeError(f"MLP nouts must be a non-empty list of layer widths, got {nouts!r}")
        for i, n in enumerate(nouts):
            _check_size(f"MLP nouts[{i}]", n)
        sizes = [nin, *nouts]
        if activations is None:
            activations = [activation or "sigmoid"] * len(nouts)
        elif activation is not None:
            raise TypeError("MLP takes activation= (every layer) or activations= (one per layer), not both")
        elif isinstance(activations, str) or len(activations) != len(nouts):
            raise ValueError(f"MLP activations must list one activation per layer ({len(nouts)}), got {activations!r}")
        for name in activations:
            _check_activation(name)
        if weights is None:
            rng = _rng(seed, rng)
            self.layers = [Layer(a, b, act, init=init, rng=rng, label=f"L{i}.")
                           for i, (a, b, act) in enumerate(zip(sizes, sizes[1:], activations), 1)]
        else:
            weights = _check_weights(weights, sizes, "MLP weights")
            self.layers = [Layer(a, b, act, weights=w, label=f"L{i}.")
                           for i, (a, b, act, w) in enumerate(zip(sizes, sizes[1:], activations, weights), 1)]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        nin = len(self.layers[0].neurons[0].w)
        try:
            n = len(x)
        except TypeError:
            raise TypeError(f"MLP expected a list of {nin} inputs, got {type(x).__name__}: {x!r}") from None
        if n != nin:
            raise ValueError(f"MLP expected {nin} inputs, got {n}")
        for layer in self.layers:
            x = layer(x)
        return x[0] if len(x) == 1 else x

    def _grid(self) -> list[list[Neuron]]:
        return [layer.neurons for layer in self.layers]

    @classmethod
    def _build(cls, sizes, activations, weights, source):
        return cls(sizes[0], sizes[1:], activations=activations, weights=weights)

    def __repr__(self) -> str:
        acts = self.activations
        how = f"activation={acts[0]!r}" if len(set(acts)) == 1 else f"activations={acts!r}"
        sizes = self.sizes
        return f"MLP({sizes[0]}, {sizes[1:]}, {how})"


# -- initialisation --------------------------------------------------------------------------------

def _rng(seed: int | None, rng: random.Random | None) -> random.Random:
    """The generator to draw from: ``rng``, or a new one seeded with ``seed`` (from the OS when None)."""
    if rng is not None:
        if seed is not None:
            raise TypeError("give seed= or rng=, not both")
        if not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
        return rng
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}: {seed!r}")
    return random.Random(seed)


def _draw(rng: random.Random, init: str, fan_in: int, fan_out: int) -> list[float]:
    """One neuron's ``[w_1, ..., w_fan_in, b]`` drawn by the ``init`` scheme."""
    if init == "uniform":
        return [rng.uniform(-1.0, 1.0) for _ in range(fan_in + 1)]
    if init == "xavier":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
    elif init == "he":
        limit = math.sqrt(6.0 / fan_in)
    else:
        raise ValueError(f"unknown init {init!r}: choose from {', '.join(INITS)}")
    return [rng.uniform(-limit, limit) for _ in range(fan_in)] + [0.0]


# -- checking ----------------------------------------------------------------------------------------

def _check_size(what: str, n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what} must be a whole number >= 1, got {n!r}")


def _check_activation(name: Any) -> None:
    if name not in ACTIVATIONS or not isinstance(name, str):
        raise ValueError(f"unknown activation {name!r}: choose from {', '.join(ACTIVATIONS)}")


def _check_row(row: Any, nin: int, source: str, where: str) -> list[float]:
    """One neuron's ``[w_1, ..., w_nin, b]`` as finite floats."""
    if not isinstance(row, (list, tuple)) or len(row) != nin + 1:
        got = f"{len(row)} numbers" if isinstance(row, (list, tuple)) else type(row).__name__
        raise StateError(f"{source}: {where} should be {nin + 1} numbers ({nin} weights then the bias), got {got}")
    numbers = []
    for i, x in enumerate(row):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise StateError(f"{source}: {where}[{i}] should be a number, got {type(x).__name__}: {x!r}")
        try:
            x = float(x)
        except OverflowError:
            x = math.inf
        if not math.isfinite(x):
            raise StateError(f"{source}: {where}[{i}] is {x!r}, expected a finite number")
        numbers.append(x)
    return numbers


def _check_layer(rows: Any, nin: int, nout: int, source: str, where: str) -> list[list[float]]:
    if not isinstance(rows, (list, tuple)) or len(rows) != nout:
        got = f"{len(rows)}" if isinstance(rows, (list, tuple)) else type(rows).__name__
        raise StateError(f"{source}: {where} should list {nout} neurons, got {got}")
    return [_check_row(row, nin, source, f"{where}[{j}]") for j, row in enumerate(rows)]


def _check_weights(weights: Any, sizes: list[int], source: str) -> list[list[list[float]]]:
    """Nested weights for a network of ``sizes``: per layer, per neuron, ``[w_1, ..., w_n, b]``."""
    if not isinstance(weights, (list, tuple)) or len(weights) != len(sizes) - 1:
        got = f"{len(weights)}" if isinstance(weights, (list, tuple)) else type(weights).__name__
        raise StateError(f"{source}: weights should list {len(sizes) - 1} layers, got {got}")
    return [_check_layer(layer, nin, nout, source, f"weights[{i}]")
            for i, (layer, nin, nout) in enumerate(zip(weights, sizes, sizes[1:]))]


def _check_extras(state: dict, sizes: list[int], source: str) -> tuple[dict | None, dict | None]:
    """The optional ``scaling`` (as fitted MinMaxScalers) and ``columns`` of a state, None where absent."""
    scaling = columns = None
    for key in _OPTIONAL_KEYS:
        entry = state.get(key)
        if entry is not None and (not isinstance(entry, dict) or set(entry) != {"inputs", "target"}):
            got = f"keys {', '.join(map(repr, entry))}" if isinstance(entry, dict) else type(entry).__name__
            raise StateError(f"{source}: {key} should be an object with keys 'inputs' and 'target', got {got}")
    if state.get("scaling") is not None:
        scaling = {}
        for key, width, what in (("inputs", sizes[0], "input"), ("target", sizes[-1], "output")):
            try:
                scaler = MinMaxScaler.from_state(state["scaling"][key])
            except ValueError as error:
                raise StateError(f"{source}: scaling.{key}: {error}") from None
            if len(scaler.data_min_) != width:
                raise StateError(f"{source}: scaling.{key} scales {len(scaler.data_min_)} columns, "
                                 f"but the model has {width} {what}{'s' if width != 1 else ''}")
            scaling[key] = scaler
    if state.get("columns") is not None:
        inputs, target = state["columns"]["inputs"], state["columns"]["target"]
        if (not isinstance(inputs, (list, tuple)) or len(inputs) != sizes[0]
                or not all(isinstance(name, str) for name in inputs) or len(set(inputs)) != len(inputs)):
            raise StateError(f"{source}: columns.inputs should list {sizes[0]} distinct column names, got {inputs!r}")
        if not isinstance(target, str) or target in inputs:
            raise StateError(f"{source}: columns.target should be a column name not among the inputs, got {target!r}")
        columns = {"inputs": list(inputs), "target": target}
    return scaling, columns


def _check_state(state: Any, source: str) -> tuple[list[int], list[str], list, dict | None, dict | None]:
    """``(sizes, activations, weights, scaling, columns)`` from a state dict, or StateError saying what is wrong."""
    if not isinstance(state, dict):
        raise StateError(f"{source}: expected a JSON object, got {type(state).__name__}")
    if state.get("format") != FORMAT:
        raise StateError(f"{source}: not a microgd model (format {state.get('format')!r}, expected {FORMAT!r})")
    version = state.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise StateError(f"{source}: written by a newer microgd (format version {version}); "
                         f"this one reads version {VERSION}")
    if version != VERSION or isinstance(version, bool):
        raise StateError(f"{source}: unsupported format version {version!r}, expected {VERSION}")
    missing = [k for k in _KEYS if k not in state]
    if missing:
        raise StateError(f"{source}: missing {', '.join(map(repr, missing))}")
    unknown = [k for k in state if k not in _KEYS + _OPTIONAL_KEYS]
    if unknown:
        raise StateError(f"{source}: unexpected {', '.join(map(repr, unknown))}")
    sizes, activations = state["sizes"], state["activations"]
    if (not isinstance(sizes, list) or len(sizes) < 2
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes)):
        raise StateError(f"{source}: sizes should be a list of at least 2 whole numbers >= 1, got {sizes!r}")
    if (not isinstance(activations, list) or len(activations) != len(sizes) - 1
            or any(not isinstance(a, str) or a not in ACTIVATIONS for a in activations)):
        raise StateError(f"{source}: activations should list {len(sizes) - 1} of {', '.join(ACTIVATIONS)}, "
                         f"got {activations!r}")
    return sizes, activations, _check_weights(state["weights"], sizes, source), *_check_extras(state, sizes, source)


def _read(path: PathLike) -> Any:
    """The JSON in ``path``, or StateError naming the file and the place it stops making sense."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise StateError(f"{source}: not valid JSON at line {error.lineno} column {error.colno}: {error.msg} "
                         "(truncated or hand-edited?)") from None
    except UnicodeDecodeError as error:
        raise StateError(f"{source}: not a UTF-8 text file (byte {error.start})") from None
