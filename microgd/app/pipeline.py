"""The CSV pipeline behind ``microgd train`` and ``microgd predict``: load, check, scale, train, predict.

    >>> import pathlib
    >>> _ = pathlib.Path("table.csv").write_text("I0,I1,Z0\\n70,98,91\\n50,85,82\\n65,67,80\\n25,95,68\\n")
    >>> training = prepare_training("table.csv", "Z0", seed=0)
    >>> training.columns, describe(training.model)
    (Columns(inputs=['I0', 'I1'], target='Z0'), 'MLP 2-3-1 (sigmoid, sigmoid)')
    >>> history = training.fit(epochs=20, lr=0.5, seed=0, verbose=False)
    >>> training.save("model.json")
    >>> result = predict_csv("model.json", "table.csv")
    >>> result.truth, result.rmse == rmse(training.predictions(), training.y)
    ([91.0, 82.0, 80.0, 68.0], True)
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union, cast

from .. import checks, rules
from ..data import ConstantColumnError, MinMaxScaler, ScaleOverflowError, load_csv
from ..engine import DomainError, Value, no_grad
from ..losses import half_squared_error
from ..nn import MLP, Module
from ..optim import SGD
from ..table import number
from ..train import History, fit
from .modelfile import Columns, Scaling, check_network, load_model, save_model

__all__ = ["prepare_training", "Training", "predict_csv", "Prediction", "DataError", "rmse", "describe",
           "output_activation", "NORMALIZE", "HIDDEN_ACTIVATIONS", "OUTPUT_ACTIVATIONS", "HIDDEN", "ACTIVATION",
           "SCALE", "EPOCHS", "LR", "SEED"]

PathLike = Union[str, "os.PathLike[str]"]
# the scaling ranges, and the default output activation: the one whose range is the scaled target's
NORMALIZE = {"0-1": ((0.0, 1.0), rules.sigmoid.name), "-1-1": ((-1.0, 1.0), rules.tanh.name)}
# Hidden activations worth training with: defined on every real number, with a derivative that carries a
# gradient back. Not log (undefined for x <= 0: training stops at the first negative sum), exp (overflows,
# and its gradient grows with it), neg (linear: a flipped identity), step and sign (derivative 0 everywhere:
# nothing is learnt). abs is kept: |x| is piecewise linear like relu, with slope -1 or 1, never a dead unit.
HIDDEN_ACTIVATIONS = (rules.sigmoid.name, rules.tanh.name, rules.relu.name, rules.softplus.name, "abs",
                      rules.linear.name)
# Output activations and the open range of values each gives (None: every real number).
OUTPUT_ACTIVATIONS: dict[str, tuple[float, float] | None] = {
    rules.linear.name: None, rules.sigmoid.name: (0.0, 1.0), rules.tanh.name: (-1.0, 1.0)}
# the defaults of prepare_training and Training.fit, which are microgd train's
HIDDEN, ACTIVATION, SCALE, SEED = (3,), rules.sigmoid.name, "0-1", 0
EPOCHS, LR = 1000, 0.5


class DataError(ValueError):
    """A CSV or model file that does not fit the job; one line naming the file and the column or key."""


def rmse(predictions: Sequence[float], truth: Sequence[float]) -> float:
    """The root mean squared error of ``predictions`` against ``truth``.

        >>> rmse([1.0, 2.0], [1.0, 4.0])
        1.4142135623730951
    """
    return math.sqrt(sum((p - t) ** 2 for p, t in zip(predictions, truth)) / len(truth))


def describe(model: Module) -> str:
    """A one-line description of a network: its sizes and activations."""
    return f"MLP {'-'.join(map(str, model.sizes))} ({', '.join(model.activations)})"


@dataclass
class Training:
    """A CSV file ready to train on: its raw columns, the scaling fitted on them and a fresh model."""

    source: str
    X: list[list[float]]
    y: list[float]
    columns: Columns
    scaling: Scaling
    model: MLP

    def fit(self, epochs: int = EPOCHS, lr: float = LR, seed: int | None = SEED, verbose: bool = True) -> History:
        """``epochs`` of per-sample SGD at rate ``lr`` on the scaled rows, shuffled with ``seed``, on the
        loss 1/2 (y - z)^2 (see :func:`microgd.train.fit`, whose History it returns)."""
        Xs, ys = self.scaling.inputs.transform(self.X), self.scaling.target.transform(self.y)
        return fit(self.model, Xs, ys, loss=half_squared_error, optimizer=SGD(self.model.parameters(), lr=lr),
                   epochs=epochs, seed=seed, verbose=verbose)

    def predictions(self) -> list[float]:
        """The model's prediction for every row, in the target's units."""
        with no_grad():
            scaled = [_output(self.model, row) for row in self.scaling.inputs.transform(self.X)]
        return self.scaling.target.inverse_transform(scaled)

    def save(self, path: PathLike) -> None:
        """Save the model with its scaling and column names (:func:`microgd.app.modelfile.save_model`)."""
        save_model(self.model, path, scaling=self.scaling, columns=self.columns)


def output_activation(normalize: str = SCALE, output: str | None = None,
                      names: tuple[str, str] = ("output activation", "normalize")) -> str:
    """The output activation for a target scaled to ``normalize``'s range: ``output`` when given, checked to
    reach the whole range, else the one whose range is the target's (sigmoid for "0-1", tanh for "-1-1").
    A ValueError says what is wrong, calling the two settings ``names`` (the command's options).

        >>> output_activation("0-1"), output_activation("-1-1"), output_activation("0-1", "linear")
        ('sigmoid', 'tanh', 'linear')
    """
    activation, scaling = names
    if normalize not in NORMALIZE:
        raise ValueError(f"{scaling} must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
    (lo, hi), default = NORMALIZE[normalize]
    if output is None:
        return default
    if output not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"{activation} must be one of {', '.join(OUTPUT_ACTIVATIONS)}, got {output!r}")
    reach = OUTPUT_ACTIVATIONS[output]
    if reach is not None and not (reach[0] <= lo and hi <= reach[1]):
        fits = next(name for name, (_, that) in NORMALIZE.items() if that == output)
        raise ValueError(f"{activation} {output} gives values in ({reach[0]:g}, {reach[1]:g}) only, but {scaling} "
                         f"{normalize} scales the target to [{lo:g}, {hi:g}]: part of it could never be predicted; "
                         f"use {default} or linear, or {scaling} {fits}")
    return output


def prepare_training(path: PathLike, target: str, *, hidden: Sequence[int] = HIDDEN, activation: str = ACTIVATION,
                     output: str | None = None, normalize: str = SCALE, seed: int | None = SEED,
                     distinct_names: bool = False) -> Training:
    """Load a numeric CSV file, scale every column min-max to ``normalize`` ("0-1" or "-1-1") and build
    an MLP with ``hidden`` layers of ``activation`` (one of :data:`HIDDEN_ACTIVATIONS`) and one output unit of
    activation ``output`` (one of :data:`OUTPUT_ACTIVATIONS`; default :func:`output_activation`'s: sigmoid for
    "0-1", tanh for "-1-1").

    A file that cannot be trained on (malformed, no input column, a constant column, repeated names
    when ``distinct_names``, as saving needs) is a :class:`DataError` naming the file and the column; a
    network of more than :data:`~microgd.app.modelfile.MAX_PARAMETERS` weights and biases, which the file's
    columns and ``hidden`` make, is a :class:`~microgd.app.modelfile.NetworkTooLarge`, before it is built.
    """
    source = os.fspath(path)
    if activation not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"the hidden activation must be one of {', '.join(HIDDEN_ACTIVATIONS)}, got {activation!r}")
    output = output_activation(normalize, output)
    feature_range = NORMALIZE[normalize][0]
    try:
        X, y, names = load_csv(path, target=target)
    except ValueError as error:  # malformed file, not a number, unknown column: the message names it
        raise DataError(str(error)) from None
    if not names:
        raise DataError(f"{source}: no input columns besides the target {target!r}")
    twice = [name for name in names if names.count(name) > 1]
    if distinct_names and twice:
        raise DataError(f"{source}: {twice[0]!r} names two columns; the model file records the names: "
                        "make them distinct")
    scaling = Scaling(MinMaxScaler(feature_range), MinMaxScaler(feature_range))
    for scaler, data, columns in ((scaling.inputs, X, names), (scaling.target, y, [target])):
        try:
            scaler.fit(data)
        except ConstantColumnError as error:
            raise DataError(f"{source}: column {columns[error.column]!r} is constant ({number(error.value, None)}): "
                            "nothing to learn from or scale; drop it") from None
        except ScaleOverflowError as error:
            raise DataError(f"{source}: column {columns[error.column]!r}: {error.reason}") from None
    if all(checks.is_whole(n) and n >= 1 for n in hidden):  # else MLP says what is wrong with them
        check_network([len(names), *hidden, 1])
    model = MLP(len(names), [*hidden, 1], activations=[activation] * len(hidden) + [output], seed=seed)
    return Training(source, X, y, Columns(names, target), scaling, model)


@dataclass
class Prediction:
    """What :func:`predict_csv` computed: the file, the columns fed to the model, a prediction per row
    (in the target's units when the model stores its scaling), the file's target column if it has one,
    and notes on what the model file lacks."""

    model: MLP
    header: list[str]
    rows: list[list[float]]
    inputs: list[str]
    predictions: list[float]
    target: str | None
    truth: list[float] | None
    notes: list[str]

    @property
    def rmse(self) -> float | None:
        """The error against the file's target column, None when the file has none."""
        return None if self.truth is None else rmse(self.predictions, self.truth)

    def csv(self) -> str:
        """The file's rows with a ``prediction`` column added, as CSV text: every number exactly, as
        :func:`microgd.table.number` echoes a number the user wrote (``70``, not ``70.0``; the shortest text
        that reads back as the same float)."""
        def exact(x: float) -> str:
            return number(x, None)
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(
            [[*self.header, "prediction"],
             *([*map(exact, row), exact(p)] for row, p in zip(self.rows, self.predictions))])
        return text.getvalue()


def predict_csv(model_path: PathLike, data_path: PathLike) -> Prediction:
    """Predict with a saved model (:func:`~microgd.app.modelfile.load_model`) on a numeric CSV file.

    The model's input columns are found by name, in any order (a model that names no columns takes the
    file's first columns), scaled as in training, and predictions come back in the target's units.
    A file that does not fit the model is a :class:`DataError` naming the file and the column.
    """
    model_source, data_source = os.fspath(model_path), os.fspath(data_path)
    try:
        model, scaling, columns = load_model(model_path)
        header, rows = load_csv(data_path)
    except ValueError as error:  # a malformed model (StateError) or CSV file: the message names file and place
        raise DataError(str(error)) from None
    nin, nout = model.sizes[0], model.sizes[-1]
    if nout != 1:
        raise DataError(f"{model_source}: the model has {nout} outputs; predicting needs a model with one")
    notes = []
    if columns is None:
        if len(header) < nin:
            raise DataError(f"{data_source}: {len(header)} columns, but the model takes {nin} inputs")
        inputs, target = header[:nin], None
        notes.append(f"{model_source} names no columns: its inputs are the file's first {nin}")
    else:
        inputs, target = columns.inputs, columns.target
        for name in inputs:
            if header.count(name) != 1:
                found = "has no column" if name not in header else "has more than one column"
                raise DataError(f"{data_source} {found} {name!r} (the model's inputs: {', '.join(inputs)}; "
                                f"the file's columns: {', '.join(header)})")
    where = [header.index(name) for name in inputs]
    X = [[row[j] for j in where] for row in rows]
    if scaling is None:
        notes.append(f"{model_source} stores no scaling: the raw inputs go in, the raw outputs come out")
    if scaling is not None:
        try:
            X = scaling.inputs.transform(X)
        except ScaleOverflowError as error:  # an input far outside the training range
            raise DataError(f"{data_source} row {cast(int, error.row) + 1}: column {inputs[error.column]!r}: "
                            f"{error.reason}") from None
    predictions = _outputs(model, X, data_source)
    if scaling is not None:
        try:
            predictions = scaling.target.inverse_transform(predictions)
        except ScaleOverflowError as error:  # a linear output far outside the training range
            raise DataError(f"{data_source} row {cast(int, error.row) + 1}: the prediction in {target or 'the target'}"
                            f"'s units is beyond the float range ({error.reason})") from None
    if target is None or header.count(target) != 1:
        target, truth = None, None
    else:
        truth = [row[header.index(target)] for row in rows]
    return Prediction(model, header, rows, list(inputs), predictions, target, truth, notes)


def _outputs(model: MLP, X: list[list[float]], source: str) -> list[float]:
    """The model's output for every row; a row that overflows the network is a DataError naming it."""
    outputs = []
    with no_grad():
        for i, x in enumerate(X, 1):
            try:
                outputs.append(_output(model, x))
            except DomainError as error:
                raise DataError(f"{source} row {i}: the model overflows on these inputs ({error})") from None
    return outputs


def _output(model: MLP, x: list[float]) -> float:
    """The number a model of one output unit gives for ``x``."""
    return cast(Value, model(x)).data
