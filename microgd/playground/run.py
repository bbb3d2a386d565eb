"""The playground's model side: a :class:`Run` trains an MLP of two inputs and one output on a dataset, a
mini-batch a step, and gives the page every number it draws, true at the current step.

    >>> run = Run({"dataset": "xor", "hidden": [4], "lr": 0.5})
    >>> run.steps(3)
    >>> frame = run.frame()
    >>> frame["step"], len(frame["weights"]), frame["weight"]["name"], frame["activations"][0]
    (3, 17, 'w_h1_1', [-1.0, -1.0])

**Speed.** One sample's loss is traced once (:func:`microgd.tape.trace`) and every step runs the tape's fused
program (:meth:`~microgd.tape.Tape.fused`: a layer one matrix product) on the mini-batch, the parameters and
the optimizer's state held in numpy arrays (:meth:`microgd.optim.Optimizer.arrays`): a step touches no Value.
:meth:`Run.frame` writes the numbers back into the model's Values and builds the selected sample's graph
eagerly (one sample: small), so the graph, the activations and the derivation are the engine's own.

**Data.** The built-in datasets and a CSV are scaled to [-1, 1] (each input column; a regression's target
too). Two classes of targets are encoded as the loss wants them: 0 and 1 for ``binary_cross_entropy`` (the
output a sigmoid), -1 and +1 for the others (the output linear; the boundary at 0). A user's own ``data=``
and ``model=`` are taken as they are (a class label is re-encoded only for a loss that needs it).

A Run is not thread-safe: call it from one thread at a time.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..checks import is_real, is_whole
from ..data import ConstantColumnError, MinMaxScaler
from ..drawing import MAX_NODES, RenderError, drawn_inputs, expression_graph, number_formatter, run_renderer
from ..engine import DomainError, Value, sweep
from ..explain import explain
from ..losses import binary_cross_entropy, half_squared_error, hinge, squared_error
from ..nn import MLP
from ..optim import SGD, Adam
from ..table import number
from ..tape import trace
from .datasets import (
    CLASSIFICATION,
    CSV_COLUMNS,
    CSV_MAX_BYTES,
    CSV_MAX_ROWS,
    REGRESSION,
    TASKS,
    PlaygroundError,
    Table,
    built_in,
    from_csv,
    from_rows,
    shown,
    two_classes,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Floats = NDArray[np.float64]

__all__ = ["Run", "validate", "PlaygroundError", "TrainingDiverged", "OPTIONS", "DEFAULTS", "LOSSES", "Loss", "GRID"]


@dataclass(frozen=True)
class Loss:
    """A loss the page may choose: its function of (output, target), the output activation it needs (None:
    any; a Run's own model then has a linear output), the class labels it needs (None: any) and its tasks."""

    function: Callable[[Value, Value], Value]
    output: str | None
    labels: tuple[float, float] | None
    tasks: tuple[str, ...]


LOSSES = {
    "binary_cross_entropy": Loss(binary_cross_entropy, "sigmoid", (0.0, 1.0), (CLASSIFICATION,)),
    "hinge": Loss(hinge, None, (-1.0, 1.0), (CLASSIFICATION,)),
    "half_squared_error": Loss(half_squared_error, None, None, (CLASSIFICATION, REGRESSION)),
    "squared_error": Loss(squared_error, None, None, (CLASSIFICATION, REGRESSION)),
}
ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")
OPTIMIZERS = ("sgd", "momentum", "adam")
MOMENTUM = 0.9  # the "momentum" optimizer: SGD with this momentum
MAX_LAYERS, MAX_UNITS = 4, 32
MAX_LR = 10.0
POINTS = (10, 1000)
MAX_NOISE = 1.0
MAX_SEED = 2**32 - 1
GRID = 48
"""The decision boundary's grid: GRID x GRID model outputs over the data's extent."""
MAX_LOSS_POINTS = 50  # (step, loss) pairs one frame carries at most: more steps are averaged in buckets
NUMBER_FORMAT = ".4f"  # the graph picture's numbers
BOX_WIDTH = "1.25"  # inches: every value box of the graph picture, so that wider numbers later still fit
DEFAULTS: dict[str, Any] = {"dataset": "moons", "hidden": [8, 8], "activation": "tanh", "loss": None,
                            "optimizer": "sgd", "lr": 0.1, "batch": 16, "seed": 0, "points": 200, "noise": 0.1,
                            "csv": None}
"""Each option's default; the loss's (None) is binary_cross_entropy for a classification, else
half_squared_error; the batch is at most the number of points."""


class TrainingDiverged(PlaygroundError):
    """A step met a value or a gradient that is not a finite number (the learning rate too large?); the run
    is left at its last completed step, where it can go on with a smaller learning rate."""


# -- options -------------------------------------------------------------------------------------------

def validate(options: dict) -> dict:
    """Every option of a run, checked, with the defaults filled in (:data:`DEFAULTS`); a
    :class:`PlaygroundError` naming the option for anything unknown, of the wrong type or out of range.
    Nothing given is ever evaluated; a CSV is parsed as numbers.

        >>> config = validate({"dataset": "xor", "hidden": [4]})
        >>> config["hidden"], config["loss"], config["batch"]
        ([4], 'binary_cross_entropy', 4)
        >>> try:
        ...     validate({"lr": "1; import os"})
        ... except PlaygroundError as error:
        ...     print(error)
        lr: must be a number above 0 and at most 10.0, got '1; import os'
    """
    return _configured(options, None, None)[0]


@dataclass(frozen=True)
class _Data:
    """The data a run trains on: rows of two inputs and targets as lists (for the page) and arrays (for the
    fused program), the task, the boundary's threshold (None for a regression) and the columns' names."""

    points: list[list[float]]
    targets: list[float]
    task: str
    threshold: float | None
    columns: list[str]

    @property
    def arrays(self) -> tuple[Floats, Floats]:
        return np.array(self.points, dtype=float), np.array(self.targets, dtype=float)


def _configured(options: Any, model: MLP | None, rows: Table | None) -> tuple[dict, _Data]:
    """The config of ``options`` and the data it names (``rows``: a user's own), checked against ``model``."""
    if not isinstance(options, dict):
        raise PlaygroundError(f"options: must be an object of options, got {shown(options)}")
    unknown = [key for key in options if key not in DEFAULTS]
    if unknown:
        raise PlaygroundError(f"unknown option {shown(unknown[0])} (the options are {', '.join(DEFAULTS)})")
    given = {**DEFAULTS, **options}
    config: dict[str, Any] = {
        "points": _whole(given["points"], "points", *POINTS),
        "noise": _real(given["noise"], "noise", 0.0, MAX_NOISE, open_low=False),
        "seed": _whole(given["seed"], "seed", 0, MAX_SEED),
    }
    config["dataset"], config["csv"], table = _table(options, config, rows)
    config["hidden"], config["activation"] = _architecture(given, options, model)
    config["loss"] = _loss(given["loss"], table.task, model)
    config["optimizer"] = _choice(given["optimizer"], "optimizer", OPTIMIZERS)
    config["lr"] = _lr(given["lr"])
    n = len(table.X)
    batch = options["batch"] if "batch" in options else min(DEFAULTS["batch"], n)
    config["batch"] = _whole(batch, "batch", 1, n, f" (the points of dataset {config['dataset']!r})")
    return {key: config[key] for key in DEFAULTS}, _prepared(table, LOSSES[config["loss"]], own=rows is not None)


def _table(options: dict, config: dict, rows: Table | None) -> tuple[str, str | None, Table]:
    """The dataset's name, the CSV text (None unless the dataset is "csv") and the table (``rows``: a user's)."""
    dataset, text = options.get("dataset", DEFAULTS["dataset"]), options.get("csv")
    if rows is not None:
        if options.get("dataset", "user") != "user" or text is not None:
            raise PlaygroundError(f"dataset: a run given data= trains on it, not on {shown(dataset)}")
        return "user", None, rows
    dataset = _choice(dataset, "dataset", tuple(TASKS))
    if dataset == "csv":
        if text is None:
            raise PlaygroundError("csv: dataset 'csv' needs the text of a CSV file in the option csv")
        return dataset, text, from_csv(text)
    if text is not None:
        raise PlaygroundError(f"csv: a CSV is for dataset 'csv', not {dataset!r}")
    return dataset, None, built_in(dataset, config["points"], config["noise"], config["seed"])


def _architecture(given: dict, options: dict, model: MLP | None) -> tuple[list[int], str]:
    """The hidden layers' widths and activation: the options', or the model's (options given must agree)."""
    hidden = _hidden(given["hidden"])
    activation = _choice(given["activation"], "activation", ACTIVATIONS)
    if model is None:
        return hidden, activation
    if not isinstance(model, MLP) or model.sizes[0] != 2 or model.sizes[-1] != 1:
        raise PlaygroundError(f"model: must be a microgd.nn.MLP of 2 inputs and 1 output, got {shown(model)}")
    names = [p.label for p in model.parameters()]
    if len(set(names)) != len(names):
        raise PlaygroundError("model: its parameters' labels must be unique (an MLP names them w_h1_1, b_h1, ...)")
    own = model.sizes[1:-1], (model.activations[0] if len(model.layers) > 1 else activation)
    for option, value, theirs in (("hidden", hidden, own[0]), ("activation", activation, own[1])):
        if option in options and value != theirs:
            raise PlaygroundError(f"{option}: the model given has {theirs!r}, not {shown(value)}")
    return own


def _hidden(value: Any) -> list[int]:
    widths = list(value) if isinstance(value, (list, tuple)) else None
    if widths is None or len(widths) > MAX_LAYERS or not all(is_whole(n) and 1 <= n <= MAX_UNITS for n in widths):
        raise PlaygroundError(f"hidden: must be a list of at most {MAX_LAYERS} layer widths, each a whole number "
                              f"from 1 to {MAX_UNITS}, got {shown(value)}")
    return [int(n) for n in widths]


def _loss(value: Any, task: str, model: MLP | None) -> str:
    """The loss's name: the one given, or the task's default; checked against the task and the model's output."""
    if value is None:
        sigmoid_out = model is None or model.activations[-1] == "sigmoid"
        value = "binary_cross_entropy" if task == CLASSIFICATION and sigmoid_out else "half_squared_error"
    name = _choice(value, "loss", tuple(LOSSES))
    loss = LOSSES[name]
    if task not in loss.tasks:
        fits = ", ".join(n for n, other in LOSSES.items() if task in other.tasks)
        raise PlaygroundError(f"loss: {name!r} needs two classes of targets (0/1 or -1/+1), but this data is a "
                              f"{task} (choose {fits})")
    if model is not None and loss.output is not None and model.activations[-1] != loss.output:
        raise PlaygroundError(f"loss: {name!r} needs the model's output to be a {loss.output}, "
                              f"not {model.activations[-1]!r}")
    return name


def _lr(value: Any) -> float:
    return _real(value, "lr", 0.0, MAX_LR, open_low=True)


def _choice(value: Any, option: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise PlaygroundError(f"{option}: unknown {shown(value)} (choose from {', '.join(choices)})")
    return value


def _whole(value: Any, option: str, low: int, high: int, why: str = "") -> int:
    if not is_whole(value) or not low <= value <= high:
        raise PlaygroundError(f"{option}: must be a whole number from {low} to {high}{why}, got {shown(value)}")
    return int(value)


def _real(value: Any, option: str, low: float, high: float, open_low: bool) -> float:
    if not (is_real(value) and (low < value if open_low else low <= value) and value <= high):  # nan fails both
        bound = f"above {low:g}" if open_low else f"from {low:g}"
        raise PlaygroundError(f"{option}: must be a number {bound} and at most {high}, got {shown(value)}")
    return float(value)


def _prepared(table: Table, loss: Loss, own: bool) -> _Data:
    """``table`` as the run trains on it: inputs (and a regression's targets) scaled to [-1, 1] unless the data
    is a user's ``own``, class labels encoded for the loss (see the module's docstring)."""
    X = table.X if own else _scaled(table.X, table.columns)
    labels = two_classes(table.y)
    if labels is None:
        y = table.y if own else _scaled(table.y, table.columns[2:])
        return _Data(X, y, REGRESSION, None, table.columns)
    low, high = loss.labels or (labels if own else (-1.0, 1.0))
    y = [high if t == labels[1] else low for t in table.y]
    return _Data(X, y, CLASSIFICATION, (low + high) / 2, table.columns)


def _scaled(data: list, columns: list[str]) -> list:
    """``data`` (rows, or one flat column) min-max scaled to [-1, 1]; ``columns`` names its columns."""
    try:
        return MinMaxScaler((-1, 1)).fit_transform(data)
    except ConstantColumnError as error:
        raise PlaygroundError(f"dataset: column {columns[error.column]!r} is constant ({number(error.value, None)} "
                              "in every row): nothing to learn from it") from None


# -- the run -------------------------------------------------------------------------------------------

class Run:
    """One training run of the playground: its ``config`` (:func:`validate`'s), ``step_count``, :meth:`steps`,
    the selections (:meth:`select_sample`, :meth:`select_weight`), :meth:`setup` (sent once) and :meth:`frame`
    (the state at this step). ``model=`` (an MLP of 2 inputs and 1 output) and ``data=(X, y)`` train a user's
    own model (in place) or data instead; :attr:`model` hands the model back with the current weights.

        >>> from microgd.nn import MLP
        >>> mine = MLP(2, [3, 1], activations=["relu", "sigmoid"], seed=1)
        >>> run = Run({"lr": 0.5}, model=mine, data=([[0, 0], [0, 1], [1, 0], [1, 1]], [0, 1, 1, 0]))
        >>> run.config["dataset"], run.config["hidden"], run.config["loss"], run.config["batch"]
        ('user', [3], 'binary_cross_entropy', 4)
        >>> run.steps(10); run.model is mine
        True
    """

    def __init__(self, options: dict | None = None, *, model: MLP | None = None, data: Any = None):
        rows = None if data is None else from_rows(*_pair(data))
        self.config, self._data = _configured({} if options is None else options, model, rows)
        self._loss = LOSSES[self.config["loss"]].function
        self._model = model if model is not None else _new_model(self.config)
        self._params = self._model.parameters()
        self._initial = [p.data for p in self._params]
        self._X, self._Y = self._data.arrays
        x0, z0 = self._data.points[0], self._data.targets[0]
        tape = trace(self._sample_loss, x0, z0)
        if {id(p) for p in tape.captured} != {id(p) for p in self._params}:
            raise PlaygroundError("model: its loss must use every parameter of the model, and nothing else")
        self._program = tape.fused()
        self._order = tape.captured  # the arrays' order
        at = {p.label: k for k, p in enumerate(self._order)}
        self._at = at  # a parameter's position in the arrays, by name
        self._layout = np.array([at[p.label] for p in self._params], dtype=np.intp)
        outputs = trace(self._output, x0)
        self._outputs = outputs.fused()
        self._outputs_at = np.array([at[p.label] for p in outputs.captured], dtype=np.intp)
        self._corners = _corners(self._X)
        self._grid = _grid(self._corners)
        self._sample, self._weight = 0, self._params[0].label
        self._picture: dict | None = None
        self._start()

    def _start(self) -> None:
        """Step 0: the initial weights, a new optimizer, the first epoch's order."""
        for p, x in zip(self._params, self._initial):
            p.data = x
        self._optimizer = _optimizer(self.config, self._params)
        self._state = self._optimizer.arrays(self._order)
        self._rng = random.Random(self.config["seed"])  # shuffles as fit(seed=...) does
        self._shuffled = list(range(len(self._data.points)))
        self._rng.shuffle(self._shuffled)
        self._cursor = 0
        self._before = self._state.data  # the numbers before the last step
        self._grads: Floats = np.zeros(len(self._order))  # the last step's mean gradient
        self._batch_loss: float | None = None
        self._loss_now = self._mean_loss()
        self._pending: list[list[float]] = []  # [last step, summed loss, steps] buckets since the last frame
        self.step_count = 0

    def reset(self) -> None:
        """Back to step 0: the weights the run started from, a new optimizer (the current learning rate kept),
        the same shuffles; the selections stay."""
        self._start()

    # -- training --

    def steps(self, n: int = 1) -> None:
        """Train ``n`` mini-batch steps: each epoch the samples shuffled (seeded), each step the mean gradient
        of the batch's losses handed to the optimizer, then the loss over all the data computed at the new
        weights. A step after which some value or gradient on the data would not be a finite number is not
        made: it raises :class:`TrainingDiverged` (and Ctrl-C leaves no step half made)."""
        for _ in range(_whole(n, "steps", 0, 10**9)):
            self._step()

    def _step(self) -> None:
        batch = self._shuffled[self._cursor:self._cursor + self.config["batch"]]
        before, saved = self._state.data, copy.copy(self._state)  # its arrays are replaced, never changed
        try:
            losses, grads = self._program.run((self._X[batch], self._Y[batch]), before)
            grads = grads / len(batch)
            self._state.step(grads)
            batch_loss, self._loss_now = _mean(losses), self._mean_loss()
        except BaseException as error:
            self._state = saved
            if isinstance(error, (DomainError, FloatingPointError)):
                raise TrainingDiverged(f"lr: training diverged at step {self.step_count + 1} with lr "
                                       f"{number(self.config['lr'], None)} (a value or gradient left the floats): "
                                       "lower the learning rate, or reset") from None
            raise
        self._before, self._grads = before, grads
        self.step_count += 1
        self._batch_loss = batch_loss
        self._pending.append([self.step_count, self._loss_now, 1])
        if len(self._pending) > 2 * MAX_LOSS_POINTS:
            self._pending = _merged(self._pending)
        self._cursor += len(batch)
        if self._cursor == len(self._shuffled):
            self._cursor = 0
            self._rng.shuffle(self._shuffled)

    def set_lr(self, lr: object) -> None:
        """The learning rate from the next step on (checked as the option is); the run goes on."""
        self._optimizer.lr = self.config["lr"] = _lr(lr)

    # -- selections --

    def select_sample(self, index: int) -> None:
        """The sample whose graph, activations and derivation the frames show (0 to points - 1)."""
        self._sample = _whole(index, "sample", 0, len(self._data.points) - 1)

    def select_weight(self, name: str) -> None:
        """The parameter whose numbers and derivation the frames show, by its label: "w_h1_2", "b_y", ..."""
        if not isinstance(name, str) or name not in self._at:
            names = [p.label for p in self._params]
            raise PlaygroundError(f"weight: unknown {shown(name)} (the parameters are {names[0]} to {names[-1]}, "
                                  "as setup's network lists them)")
        self._weight = name

    @property
    def model(self) -> MLP:
        """The model, its parameters holding the current numbers (their ``.grad`` the last step's mean gradient)."""
        self._state.write_back()
        for p, g in zip(self._order, self._grads.tolist()):
            p.grad = g
        return self._model

    # -- views --

    def setup(self) -> dict:
        """What the page draws once per run, JSON-ready:

        * ``config``: :func:`validate`'s; ``task``: "classification" or "regression"; ``threshold``: the output
          value at the decision boundary (0.5 or 0.0; None for a regression); ``columns``: the names of x1, x2
          and the target (a CSV's header);
        * ``points``: ``[[x1, x2], ...]`` and ``targets``: as trained on (scaled, encoded: see the module);
        * ``network``: ``sizes``; ``units``, the names per layer, inputs first (``[["x1", "x2"], ["h1", ...],
          ["y"]]``); ``activations`` per layer; ``weights``, every parameter in the frames' order as ``{"name",
          "layer", "from", "to"}``: layer 1 is the first hidden one, ``from`` the unit's index in the layer
          before (None for a bias), ``to`` its index in its own layer;
        * ``grid``: ``x1`` and ``x2`` as [low, high], and ``size``: a frame's ``boundary`` holds size x size
          outputs, ``boundary[r * size + c]`` at x1 = low + (high - low) c / (size - 1) and likewise x2 by r;
        * ``graph``: ``svg``, the selected sample's computation graph, laid out once (every sample's has the
          same shape), whose value nodes ``<g id="v{i}">`` and input edges ``<g id="e{i}_{k}">`` a frame's
          ``graph`` updates (the texts "data ...", "grad ..." and the edge's two lines); ``format``: the
          numbers' format in it; ``svg`` is None, and ``note`` says why, for a graph too large to draw or no
          renderer (``note`` is "" otherwise);
        * ``sample`` and ``weight``: the current selections.
        """
        model = self._model
        units = [["x1", "x2"], *([n.label for n in layer.neurons] for layer in model.layers)]
        weights = [{"name": p.label, "layer": li, "from": k if k < len(neuron.w) else None, "to": j}
                   for li, layer in enumerate(model.layers, 1) for j, neuron in enumerate(layer.neurons)
                   for k, p in enumerate((*neuron.w, neuron.b))]
        lows, highs = self._corners
        data = self._data
        return {
            "config": dict(self.config), "task": data.task, "threshold": data.threshold, "columns": data.columns,
            "points": data.points, "targets": data.targets,
            "network": {"sizes": model.sizes, "units": units, "activations": model.activations, "weights": weights},
            "grid": {"x1": [lows[0], highs[0]], "x2": [lows[1], highs[1]], "size": GRID},
            "graph": self._graph_picture(), "sample": self._sample, "weight": self._weight,
        }

    def frame(self) -> dict:
        """The run at the current step, JSON-ready (about 10 ms on a 2-16-16-1 network and 200 points):

        * ``step``; ``loss``: the mean loss over all the data at the current weights; ``batch_loss``: the last
          step's mini-batch mean, at the weights before its update (None at step 0);
        * ``loss_points``: ``[step, loss over all the data after that step]`` for each step since the
          previous frame, at most 50: more steps are averaged in buckets of consecutive steps, each named by
          its last step;
        * ``boundary``: the model's output on setup's grid, to 4 decimals;
        * ``weights`` and ``grads``: every parameter's number and the last step's mean gradient (0 at step
          0), in setup's ``network.weights`` order;
        * ``sample``: ``index``, ``x``, ``target``, ``output``, ``loss`` of the selected sample;
          ``activations``: each unit's output for it, as setup's ``network.units`` lists them;
        * ``graph``: ``{"v{i}": [data, grad], "e{i}_{k}": [local, upstream]}`` of the sample's graph, by the
          picture's ids (an edge's contribution is local x upstream); ``{}`` when it is too large to draw;
        * ``weight``: ``name``, ``value``, ``grad`` (the last step's mean gradient) and ``update`` (what the
          last step added to it: -lr x grad for "sgd");
        * ``derivation``: ``weight``, ``text`` (explain's lines: dL/d weight for the sample) and ``latex``
          (explain's aligned block).
        """
        self._state.write_back()  # the eager graph reads the Values
        numbers = self._state.data
        out, root = self._sample_graph()
        k = self._at[self._weight]
        derivation = explain(root, wrt=self._order[k])
        boundary, _ = self._outputs.run((self._grid,), numbers[self._outputs_at])
        i = self._sample
        return {
            "step": self.step_count, "loss": self._loss_now, "batch_loss": self._batch_loss,
            "loss_points": self._loss_points(), "boundary": np.round(boundary, 4).tolist(),
            "weights": numbers[self._layout].tolist(), "grads": self._grads[self._layout].tolist(),
            "sample": {"index": i, "x": self._data.points[i], "target": self._data.targets[i], "output": out.data,
                       "loss": root.data},
            "activations": self._activations(out), "graph": self._graph_numbers(root),
            "weight": {"name": self._weight, "value": float(numbers[k]), "grad": float(self._grads[k]),
                       "update": float(numbers[k] - self._before[k])},
            "derivation": {"weight": self._weight, "text": derivation.text().split("\n"), "latex": derivation.latex()},
        }

    def _mean_loss(self) -> float:
        """The mean loss over all the data at the arrays' numbers (DomainError if one is not finite)."""
        losses, _ = self._program.run((self._X, self._Y), self._state.data)
        return _mean(losses)

    def _output(self, x: Sequence[Value]) -> Value:
        out = self._model(x)
        assert isinstance(out, Value)  # a model of one output
        return out

    def _sample_loss(self, x: Sequence[Value], z: Value) -> Value:
        return self._loss(self._output(x), z)

    def _sample_graph(self) -> tuple[Value, Value]:
        """The selected sample's output and loss, built eagerly on the model's Values: the leaves x1, x2 and z
        (the target), then the model's output, then the loss (so the nodes are numbered in that order)."""
        x1, x2 = self._data.points[self._sample]
        x, z = [Value(x1, label="x1"), Value(x2, label="x2")], Value(self._data.targets[self._sample], label="z")
        out = self._output(x)
        return out, self._loss(out, z)

    def _activations(self, out: Value) -> list[list[float]]:
        found = {v.label: v.data for v in out.topo() if v.label}
        return [[found["x1"], found["x2"]], *([found[n.label] for n in layer.neurons] for layer in self._model.layers)]

    def _graph_numbers(self, root: Value) -> dict[str, list[float]]:
        """``[data, grad]`` of each value node and ``[local, upstream]`` of each input edge, by the picture's ids."""
        nodes = root.topo()
        if len(nodes) > MAX_NODES:
            return {}
        grads = sweep(root)
        shown_: dict[str, list[float]] = {}
        for i, v in enumerate(nodes):
            if v.is_constant:
                continue
            shown_[f"v{i}"] = [v.data, grads.get(v, 0.0)]
            if v.parents:
                upstream, locals_ = grads[v], v.local_grads()
                shown_.update((f"e{i}_{k}", [locals_[k], upstream]) for k in drawn_inputs(v)
                              if not v.parents[k].is_constant)
        return shown_

    def _graph_picture(self) -> dict:
        """The selected sample's graph as SVG, rendered on the first call and kept (its ids fit every sample)."""
        if self._picture is None:
            self._state.write_back()
            self._picture = {"format": NUMBER_FORMAT, **_picture(self._sample_graph()[1])}
        return self._picture

    def _loss_points(self) -> list[list[float]]:
        buckets, self._pending = self._pending, []
        while len(buckets) > MAX_LOSS_POINTS:
            buckets = _merged(buckets)
        return [[step, total / count] for step, total, count in buckets]


# -- helpers -------------------------------------------------------------------------------------------

def _pair(data: Any) -> tuple[Any, Any]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise PlaygroundError(f"data: must be a pair (X, y), got {shown(data)}")
    return data[0], data[1]


def _new_model(config: dict) -> MLP:
    """An MLP of 2 inputs, the hidden layers asked for and one output fitting the loss (Glorot's uniform
    initialisation, He's for relu layers), drawn with the run's seed."""
    hidden, activation = config["hidden"], config["activation"]
    output = LOSSES[config["loss"]].output or "linear"
    return MLP(2, [*hidden, 1], activations=[activation] * len(hidden) + [output],
               init="he" if activation == "relu" else "xavier", seed=config["seed"])


def _optimizer(config: dict, params: list[Value]) -> SGD | Adam:
    name, lr = config["optimizer"], config["lr"]
    if name == "adam":
        return Adam(params, lr=lr)
    return SGD(params, lr=lr, momentum=MOMENTUM if name == "momentum" else 0.0)


def _corners(X: Floats) -> tuple[list[float], list[float]]:
    """The boundary grid's corners, ([x1 low, x2 low], [x1 high, x2 high]): the data's extent and a tenth more
    on each side."""
    low, high = X.min(axis=0), X.max(axis=0)
    pad = np.where(high > low, (high - low) / 10, 1.0)
    return (low - pad).tolist(), (high + pad).tolist()


def _grid(corners: tuple[list[float], list[float]]) -> Floats:
    """The boundary's grid points as rows (x1, x2): row ``r * GRID + c`` at the r-th x2 and the c-th x1 of
    GRID even steps from corner to corner."""
    (x1_low, x2_low), (x1_high, x2_high) = corners
    a, b = np.meshgrid(np.linspace(x1_low, x1_high, GRID), np.linspace(x2_low, x2_high, GRID))
    return np.column_stack((a.ravel(), b.ravel()))


def _mean(losses: Floats) -> float:
    """The mean of finite ``losses``; a DomainError if their sum passes the largest float."""
    with np.errstate(over="ignore"):
        mean = float(losses.mean())
    if not math.isfinite(mean):
        raise DomainError("the mean loss passed the largest float")
    return mean


def _merged(buckets: list[list[float]]) -> list[list[float]]:
    """Neighbouring [last step, summed loss, steps] buckets merged two by two (an odd last one kept)."""
    pairs = [[b[0], a[1] + b[1], a[2] + b[2]] for a, b in zip(buckets[::2], buckets[1::2])]
    return pairs + buckets[len(pairs) * 2:]


def _picture(root: Value) -> dict:
    """``{"svg": ..., "note": ""}`` for the graph of ``root``, or ``{"svg": None, "note": why}``."""
    nodes = root.topo()
    if len(nodes) > MAX_NODES:
        return {"svg": None, "note": f"one sample's graph has {len(nodes)} nodes, more than a picture draws "
                                     f"({MAX_NODES}): choose fewer or narrower layers to see it"}
    grads = sweep(root)
    numbers = [grads.get(v, 0.0) for v in nodes]
    show = number_formatter(NUMBER_FORMAT, "playground")
    graph = expression_graph(nodes, number=show, grads=numbers, grad_texts=[f"grad {show(g)}" for g in numbers],
                             caller="playground")
    for i, v in enumerate(nodes):
        if not v.is_constant:
            graph.node(f"v{i}", width=BOX_WIDTH)  # a node's attributes given again: the later ones add up
    try:
        svg = run_renderer(graph.source, "svg").decode("utf-8")
    except RenderError as error:
        return {"svg": None, "note": " ".join(str(error).split())}
    return {"svg": svg[svg.index("<svg"):], "note": ""}


OPTIONS: dict[str, Any] = {
    "dataset": list(TASKS), "tasks": TASKS, "activation": list(ACTIVATIONS), "loss": list(LOSSES),
    "losses": {task: [name for name, loss in LOSSES.items() if task in loss.tasks]
               for task in (CLASSIFICATION, REGRESSION)},
    "optimizer": list(OPTIMIZERS),
    "hidden": {"max_layers": MAX_LAYERS, "max_units": MAX_UNITS},
    "lr": {"above": 0.0, "max": MAX_LR}, "batch": {"min": 1, "max": "the number of points"},
    "points": {"min": POINTS[0], "max": POINTS[1]}, "noise": {"min": 0.0, "max": MAX_NOISE},
    "seed": {"min": 0, "max": MAX_SEED},
    "csv": {"max_bytes": CSV_MAX_BYTES, "max_rows": CSV_MAX_ROWS, "columns": CSV_COLUMNS},
    "defaults": validate({}),
}
"""What the page may offer (JSON-ready): each option's choices or limits, the task of each dataset (None for a
CSV: its target column decides), the losses that fit each task, and ``defaults`` (:func:`validate` of ``{}``)."""
