"""Model files: a network with how its training data was scaled and named, as versioned JSON.

    >>> from microgd.data import MinMaxScaler
    >>> from microgd.nn import MLP
    >>> model = MLP(2, [3, 1], activation="sigmoid", seed=0)
    >>> scaling = Scaling(inputs=MinMaxScaler().fit([[0, 10], [4, 20]]), target=MinMaxScaler().fit([5, 7]))
    >>> save_model(model, "model.json", scaling=scaling, columns=Columns(inputs=["a", "b"], target="y"))
    >>> loaded, scaling, columns = load_model("model.json")
    >>> loaded.state_dict() == model.state_dict(), columns.target, scaling.inputs.transform([[2, 15]])
    (True, 'y', [[0.5, 0.5]])

The file is one JSON object: ``{"format": "microgd-mlp", "version": 1}`` and the network's
``state_dict()`` (``sizes``, ``activations``, ``weights``: per layer, per neuron ``[w1, ..., wn, b]``),
plus two optional keys: ``scaling`` (``{"inputs": ..., "target": ...}``, each a fitted
``MinMaxScaler.state_dict()``) and ``columns`` (``{"inputs": [name, ...], "target": name}``).
Files without them load with None in their place.

A network may hold at most :data:`MAX_PARAMETERS` weights and biases (a million): a larger one in a file is
refused before anything is built, as is a file holding more lists or values than such a network has, so
that what a file costs to load stays in proportion to its size (each parameter becomes a Value of about
250 bytes: a million take about a quarter of a gigabyte and a few seconds).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from typing import Any, NamedTuple, Union

from .. import checks
from ..data import MAX_BYTES, MinMaxScaler, read_text
from ..files import write_atomic
from ..nn import MLP, Module, StateError

__all__ = ["save_model", "load_model", "SavedModel", "Scaling", "Columns", "StateError", "NetworkTooLarge",
           "parameter_count", "check_network", "FORMAT", "VERSION", "MAX_PARAMETERS"]

FORMAT, VERSION = "microgd-mlp", 1
MAX_PARAMETERS = 1_000_000
"""The most weights and biases a network in a model file, or one ``microgd train`` builds, may hold."""
_KEYS = ("format", "version", "sizes", "activations", "weights")
_OPTIONAL_KEYS = ("scaling", "columns")
_DECODER = json.JSONDecoder()

PathLike = Union[str, "os.PathLike[str]"]


class Scaling(NamedTuple):
    """How the training data was scaled: one fitted MinMaxScaler for the inputs (a column each), one for the target."""

    inputs: MinMaxScaler
    target: MinMaxScaler


class Columns(NamedTuple):
    """The training data's column names: one per input, and the target's."""

    inputs: list[str]
    target: str


class NetworkTooLarge(ValueError):
    """A network of more weights and biases (``parameters``) than ``limit``."""

    def __init__(self, message: str, parameters: int, limit: int):
        super().__init__(message)
        self.parameters, self.limit = parameters, limit


def parameter_count(sizes: Sequence[int]) -> int:
    """The weights and biases of an MLP of ``sizes`` (``[nin, width, ..., nout]``): ``(a + 1) * b`` a layer.

        >>> parameter_count([2, 3, 1])
        13
    """
    return sum((a + 1) * b for a, b in itertools.pairwise(sizes))


def check_network(sizes: Sequence[int], limit: int = MAX_PARAMETERS, verb: str = "would have") -> int:
    """The parameter count of an MLP of ``sizes``, or :class:`NetworkTooLarge` when it is above ``limit``.

        >>> check_network([784, 100, 10])
        79510
        >>> check_network([784, 2000, 10])
        Traceback (most recent call last):
        ...
        microgd.app.modelfile.NetworkTooLarge: the network 784-2000-10 would have 1,590,010 parameters, more than ...
    """
    count = parameter_count(sizes)
    if count > limit:
        shape = "-".join(map(str, sizes)) if len(sizes) <= 8 else \
            f"{sizes[0]}-{sizes[1]}-...-{sizes[-1]} ({len(sizes) - 1} layers)"
        raise NetworkTooLarge(f"the network {shape} {verb} {count:,} parameters, more than microgd builds "
                              f"({limit:,})", count, limit)
    return count


class SavedModel(NamedTuple):
    """What :func:`load_model` read: the network, and its data's scaling and column names (None when absent)."""

    model: MLP
    scaling: Scaling | None
    columns: Columns | None


def save_model(model: Module, path: PathLike, *, scaling: Scaling | None = None,
               columns: Columns | None = None) -> None:
    """Write ``model`` (an MLP, a Layer or a Neuron), and ``scaling`` and ``columns`` when given, to ``path``.

    Everything is checked before anything is written (a scaling or column list that does not fit the
    model is a StateError); the write is atomic: a crash mid-write leaves any old file intact. Floats
    are written with ``repr``, so loading gives back every parameter exactly.
    """
    state: dict[str, Any] = {"format": FORMAT, "version": VERSION, **model.state_dict()}
    if scaling is not None:
        if not (isinstance(scaling, tuple) and len(scaling) == 2
                and all(isinstance(s, MinMaxScaler) and s.data_min_ is not None for s in scaling)):
            raise TypeError(f"save_model: scaling should be Scaling(inputs=MinMaxScaler, target=MinMaxScaler), "
                            f"both fitted, got {scaling!r}")
        state["scaling"] = {"inputs": scaling[0].state_dict(), "target": scaling[1].state_dict()}
    if columns is not None:
        if not (isinstance(columns, tuple) and len(columns) == 2):
            raise TypeError(f"save_model: columns should be Columns(inputs=[name, ...], target=name), got {columns!r}")
        state["columns"] = {"inputs": columns[0], "target": columns[1]}
    try:
        _check_extras(state, state["sizes"])
    except StateError as error:
        raise StateError(f"save_model: {error}") from None
    write_atomic(path, json.dumps(state, allow_nan=False) + "\n")


def load_model(path: PathLike, max_bytes: int = MAX_BYTES, max_parameters: int = MAX_PARAMETERS) -> SavedModel:
    """Read a file written by :func:`save_model` (or by microgd 0.2's ``model.save``) as a new MLP.

    A malformed file raises :class:`StateError` naming the file and the key that is wrong; so does one
    larger than ``max_bytes`` (64 MiB by default: an endless input such as ``/dev/zero`` stops there),
    nested too deeply for the JSON reader, or holding an integer with more digits than any float has; and
    one whose network has more than ``max_parameters`` weights and biases (:data:`MAX_PARAMETERS`, a
    million, by default), or more lists or values than such a model holds, before any of it is built.
    """
    source = os.fspath(path)
    state = _read(source, max_bytes, max_parameters)
    try:
        if not isinstance(state, dict):
            raise StateError(f"expected a JSON object, got {type(state).__name__}")
        _check_header(state)
        _check_size(state["sizes"], max_parameters)
        model = MLP.from_state_dict({key: state[key] for key in ("sizes", "activations", "weights")})
        return SavedModel(model, *_check_extras(state, model.sizes))
    except StateError as error:
        raise StateError(f"{source}: {error}") from None


def _check_header(state: dict) -> None:
    """The format and version, and no key missing or unknown."""
    if state.get("format") != FORMAT:
        raise StateError(f"not a microgd model (format {state.get('format')!r}, expected {FORMAT!r})")
    version = state.get("version")
    if checks.is_whole(version) and version > VERSION:
        raise StateError(f"written by a newer microgd (format version {version}); this one reads version {VERSION}")
    if not checks.is_whole(version) or version != VERSION:
        raise StateError(f"unsupported format version {version!r}, expected {VERSION}")
    missing = [k for k in _KEYS if k not in state]
    if missing:
        raise StateError(f"missing {', '.join(map(repr, missing))}")
    unknown = [k for k in state if k not in _KEYS + _OPTIONAL_KEYS]
    if unknown:
        raise StateError(f"unexpected {', '.join(map(repr, unknown))}")


def _check_size(sizes: Any, limit: int) -> None:
    """A network of at most ``limit`` parameters, checked before its weights are read (malformed sizes are
    left for the state dict's own check to name)."""
    if isinstance(sizes, list) and len(sizes) >= 2 and all(checks.is_whole(n) and n >= 1 for n in sizes):
        try:
            check_network(sizes, limit, verb="has")
        except NetworkTooLarge as error:
            raise StateError(f"{error}: load_model(path, max_parameters=...) reads it anyway") from None


def _check_extras(state: dict, sizes: list[int]) -> tuple[Scaling | None, Columns | None]:
    """The optional ``scaling`` and ``columns`` of a state, checked against the network's sizes."""
    for key in _OPTIONAL_KEYS:
        entry = state.get(key)
        if entry is not None and (not isinstance(entry, dict) or set(entry) != {"inputs", "target"}):
            got = f"keys {', '.join(map(repr, entry))}" if isinstance(entry, dict) else type(entry).__name__
            raise StateError(f"{key} should be an object with keys 'inputs' and 'target', got {got}")
    scaling = columns = None
    if state.get("scaling") is not None:
        scalers = []
        for key, width, what in (("inputs", sizes[0], "input"), ("target", sizes[-1], "output")):
            try:
                scaler = MinMaxScaler.from_state(state["scaling"][key])
            except ValueError as error:
                raise StateError(f"scaling.{key}: {error}") from None
            if len(scaler.data_min_ or ()) != width:
                raise StateError(f"scaling.{key} scales {len(scaler.data_min_ or ())} columns, "
                                 f"but the model has {width} {what}{'s' if width != 1 else ''}")
            scalers.append(scaler)
        scaling = Scaling(*scalers)
    if state.get("columns") is not None:
        inputs, target = state["columns"]["inputs"], state["columns"]["target"]
        if (not isinstance(inputs, (list, tuple)) or len(inputs) != sizes[0]
                or not all(isinstance(name, str) for name in inputs) or len(set(inputs)) != len(inputs)):
            raise StateError(f"columns.inputs should list {sizes[0]} distinct column names, got {inputs!r}")
        if not isinstance(target, str) or target in inputs:
            raise StateError(f"columns.target should be a column name not among the inputs, got {target!r}")
        columns = Columns(list(inputs), target)
    return scaling, columns


def _read(source: str, max_bytes: int, max_parameters: int) -> Any:
    """The JSON in ``source``, or StateError naming the file and the place it stops making sense."""
    try:
        text = read_text(source, max_bytes)
    except ValueError as error:  # too large, or not UTF-8: the message names the file
        raise StateError(str(error)) from None
    _check_structure(text, source, max_parameters)
    try:
        return json.loads(text, parse_int=_integer)
    except json.JSONDecodeError as error:
        raise StateError(f"{source}: not valid JSON at line {error.lineno} column {error.colno}: {error.msg} "
                         "(truncated or hand-edited?)") from None
    except RecursionError:
        raise StateError(f"{source}: nested too deeply to be a model (lists within lists beyond what the JSON "
                         "reader follows)") from None
    except _LongInteger as error:
        raise StateError(f"{source}: {error}") from None


def _check_structure(text: str, source: str, max_parameters: int) -> None:
    """Refuse JSON holding more lists (or objects) or values than a model of at most ``max_parameters`` does,
    before it is parsed: three bytes ``[],`` make a list of 56 bytes or more, and the lists of a network are
    one a neuron, at most half its parameters. Brackets and commas are counted in one pass; those inside
    strings (column names may hold any character) are taken out again only when the count is too high."""
    lists, values = text.count("[") + text.count("{"), text.count(",")
    if lists > max_parameters + 16 or values > 4 * max_parameters + 32:
        in_lists, in_values = _in_strings(text, source, 2 * max_parameters)
        lists, values = lists - in_lists, values - in_values
    if lists > max_parameters + 16:
        raise StateError(f"{source}: holds more lists than a network of at most {max_parameters:,} parameters has "
                         f"({lists:,}): load_model(path, max_parameters=...) reads larger networks")
    if values > 4 * max_parameters + 32:
        raise StateError(f"{source}: holds more values than a model of at most {max_parameters:,} parameters does "
                         f"(about {values:,}): load_model(path, max_parameters=...) reads larger networks")


def _in_strings(text: str, source: str, most: int) -> tuple[int, int]:
    """The brackets and braces, and the commas, inside the strings of JSON ``text``, each string's end found by
    the JSON reader itself; StateError past ``most`` strings. Counting stops at a string that does not parse,
    where reading the file would stop too."""
    lists = values = end = 0
    for n in itertools.count():
        start = text.find('"', end)
        if start < 0:
            break
        if n == most:
            raise StateError(f"{source}: holds more strings than a model of at most {most // 2:,} parameters has")
        try:
            end = _DECODER.raw_decode(text, start)[1]
        except json.JSONDecodeError:
            break
        lists += text.count("[", start, end) + text.count("{", start, end)
        values += text.count(",", start, end)
    return lists, values


class _LongInteger(ValueError):
    """An integer in a model file with more digits than any float."""


def _integer(text: str) -> int:
    """A JSON integer; one longer than any float (309 digits) is refused before Python's digit limit is met."""
    digits = len(text.lstrip("-"))
    if digits > 309:
        raise _LongInteger(f"an integer of {digits} digits ({text[:20]}...), larger than any float")
    return int(text)
