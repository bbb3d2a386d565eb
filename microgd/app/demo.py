"""Tutorial 2, the MLP worked example, end to end (what ``microgd demo`` prints).

Tutorial 2 builds a 2-3-1 sigmoid network by hand: fixed initial weights, a forward and backward pass
worked out on one row of a four-row table scaled min-max to [0, 1], the delta rule, one gradient-descent
update, and a gradient-descent table for f(x, y) = x² + y². The demo prints its worked example beside the
tutorial's printed numbers with a match column, trains the network on the table and draws one backward
pass. Every node has one name in the text, the derivation and the pictures, the one the network and the loss
label it with (:mod:`microgd.nn`): inputs x1, x2 and target z (the columns of ``demos/tutorial2.csv``), hidden
units h1, h2, h3 with weighted sums s_h1, s_h2, s_h3, the output y with its sum s_y, the loss L; weights
w_h1_1, w_h1_2, b_h1, ..., w_y_3, b_y (weight j of unit u: w_u_j).

    >>> import tempfile
    >>> from microgd.app.demo import run_tutorial2
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = run_tutorial2(folder, epochs=50, seed=0, verbose=False)
    ...     [path.name for path in written]
    ['tutorial2_graph.svg', 'tutorial2_backprop.html', 'tutorial2_trained_mlp.svg', 'tutorial2_loss.png']
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

from .. import checks
from ..data import MinMaxScaler, tutorial2_table
from ..engine import Value, gradients, no_grad
from ..explain import explain
from ..losses import half_squared_error
from ..nn import MLP
from ..optim import SGD
from ..plot import plot_history
from ..rules import PRODUCT
from ..stepper import backprop_html
from ..table import table, visible
from ..train import fit
from ..viz import RendererNotFound, draw_graph, draw_mlp, save

__all__ = ["run_tutorial2", "tutorial2_network", "TUTORIAL2_WEIGHTS", "TUTORIAL2_ETA", "OUT", "EPOCHS", "LR"]

TUTORIAL2_WEIGHTS = [[[-0.5, -1.0, 0.5], [-0.5, 0.5, 0.5], [1.0, 0.0, 0.5]],  # h1, h2, h3: [w1, w2, b]
                     [[0.5, -1.0, 0.0, 0.5]]]                                 # y: [w1, w2, w3, b]
TUTORIAL2_ETA = 0.1
OUT, EPOCHS, LR = "microgd-out", 2000, 0.5  # run_tutorial2's folder, epochs and learning rate (microgd demo's)
# tutorial 2's printed min-max scaling of its table, column by column
TUTORIAL2_SCALED = {(0.0, 1.0): [["1.0", "0.5555", "0.8888", "0.0"], ["1.0", "0.5806", "0.0", "0.9032"]],
                (-1.0, 1.0): [["1.0", "-0.1111", "0.7777", "-1.0"], ["1.0", "0.1613", "-1.0", "0.8064"]]}


def tutorial2_network() -> MLP:
    """Tutorial 2's 2-3-1 sigmoid network with its initial weights."""
    return MLP(2, [3, 1], activation="sigmoid", weights=TUTORIAL2_WEIGHTS)


def run_tutorial2(out: str | os.PathLike = OUT, epochs: int = EPOCHS, lr: float = LR,
                  seed: int | None = None, verbose: bool = True) -> list[Path]:
    """Reproduce tutorial 2 in folder ``out`` (created if missing); return the files written.

    Prints (unless ``verbose`` is False) the tutorial's min-max scaling and worked example (forward
    values, deltas, one update with eta = 0.1) beside the engine's numbers, then trains the network
    from the tutorial's weights for ``epochs`` of per-sample SGD at rate ``lr`` (rows shuffled with
    ``seed``) and prints the denormalised predictions. Writes the worked example's graph (SVG), its
    backward step-through (HTML), the trained network (SVG) and the loss per epoch (PNG); without a
    Graphviz renderer only the graph's DOT source, without matplotlib no loss plot (a note says so).
    Ctrl-C during training raises KeyboardInterrupt once ``fit`` has stopped.
    """
    checks.whole(epochs, "run_tutorial2: epochs", 1)
    checks.number(lr, "run_tutorial2: lr", above=0)
    say: Callable[..., None] = print if verbose else (lambda *_: None)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    X, y = tutorial2_table()
    say("Tutorial 2, the MLP worked example: a 2-3-1 sigmoid network (hidden units h1, h2, h3, output y) "
        "trained on its table (inputs x1, x2, target z; the tutorial's I0, I1, Z0).\n")
    say(_scaling(X))
    x_scaler, y_scaler = MinMaxScaler(), MinMaxScaler()
    Xs, ys = x_scaler.fit_transform(X), y_scaler.fit_transform(y)
    say(_worked_example(Xs[0], ys[0], y[0]))

    say(f"\nTraining from the tutorial's weights on the 4 scaled rows: {epochs} epochs, SGD one sample at a "
        f"time, learning rate {lr}")
    model = tutorial2_network()
    history = fit(model, Xs, ys, loss=half_squared_error, optimizer=SGD(model.parameters(), lr=lr),
                  epochs=epochs, seed=seed, verbose=verbose)
    if history.interrupted:
        raise KeyboardInterrupt
    say(f"mean loss per epoch: {history[0]:.6f} (epoch 1) -> {history[-1]:.6f} (epoch {len(history)})")
    predictions = y_scaler.inverse_transform([_output(model, row).data for row in Xs])
    say(table(("x1", "x2", "target z", "prediction", "error"),
              [(f"{r[0]:g}", f"{r[1]:g}", f"{t:g}", f"{p:.2f}", f"{p - t:+.2f}")
               for r, t, p in zip(X, y, predictions)]))

    say()
    written = _pictures(folder, Xs[0], ys[0], model, say)
    for path in written:
        say(f"wrote {visible(str(path))}")
    try:
        plot_history(history, folder / "tutorial2_loss.png", title="Tutorial 2's network: mean loss per epoch")
        written.append(folder / "tutorial2_loss.png")
        say(f"wrote {visible(str(written[-1]))}")
    except ModuleNotFoundError as error:
        say(f"(no loss plot: {error})")
    return written


def _match(printed: str | None, value: float) -> str:
    """Does ``value``, rounded like the tutorial's number, give the tutorial's number?"""
    if printed is None:
        return "(not given)"
    decimals = len(printed.partition(".")[2])
    if f"{value:.{decimals}f}" == printed:
        return "yes"
    if f"{math.trunc(value * 10 ** decimals) / 10 ** decimals:.{decimals}f}" == printed:
        return "no: cut off, not rounded"
    return "no"


def _scaling(X: list) -> str:
    """The tutorial's min-max scaled table beside the engine's, for the ranges [0, 1] and [-1, 1]."""
    rows = []
    for feature_range, printed in TUTORIAL2_SCALED.items():
        scaled = MinMaxScaler(feature_range).fit_transform(X)
        for j, column in enumerate(printed):
            for i, text in enumerate(column):
                value = scaled[i][j]
                rows.append((f"[{feature_range[0]:g}, {feature_range[1]:g}]", f"x{j + 1} = {X[i][j]:g}", text,
                             f"{value:.6f}", _match(text, value)))
    return ("Min-max scaling of the inputs (the tutorial's table 70,98 / 50,85 / 65,67 / 25,95):\n"
            + table(("range", "input", "tutorial", "engine", "match"), rows))


def _worked_example(x: list, z: float, z_raw: float) -> str:
    """The tutorial's forward pass, deltas and one SGD update on row ``x``, beside the tutorial's numbers."""
    model = tutorial2_network()
    hidden, output = model.layers
    a = cast(list[Value], hidden(x))
    y = cast(Value, output(a))
    loss = half_squared_error(y, z)
    loss.backward()
    s_h, s_y = [v.parents[0] for v in a], y.parents[0]  # the weighted sums under the sigmoids
    delta_raw = gradients(half_squared_error(y, z_raw), [s_y])[0]
    w_y = [w.data for w in output.neurons[0].w]
    w_y_names = [w.label for w in output.neurons[0].w]  # w_y_1, w_y_2, w_y_3
    lines = [f"\nThe worked example: the 2-3-1 sigmoid network with the tutorial's initial weights, on row 1 "
             f"scaled to [0, 1]:\nx = ({x[0]:g}, {x[1]:g}), target z = {z:g} (the raw target {z_raw:g} scaled "
             f"like the inputs); loss L = 1/2 (y - z)^2\ns_h1, s_h2, s_h3, s_y: each unit's weighted sum w . x + b"]
    rows = []
    for j, (given_s, given_a) in enumerate((("-1.0", "0.2689"), ("0.5", "0.6225"), ("1.5", "0.8176")), 1):
        s, h = s_h[j - 1], a[j - 1]
        rows.append((s.label, given_s, f"{s.data:.6f}", _match(given_s, s.data)))
        rows.append((f"{h.label} = sigmoid({s.label})", given_a, f"{h.data:.6f}", _match(given_a, h.data)))
    product = a[0].data * w_y[0]
    rows.append((f"{a[0].label} * {w_y_names[0]}", "0.1345", f"{product:.6f}", _match("0.1345", product)))
    rows.append((s_y.label, "0.0120", f"{s_y.data:.6f}", _match("0.0120", s_y.data)))
    rows.append((f"{y.label} = sigmoid({s_y.label})", "0.5030", f"{y.data:.6f}", _match("0.5030", y.data)))
    rows.append(("target z", "91", f"{z:g}", "no: the tutorial puts the raw target beside scaled inputs"))
    slope = y.data * (1 - y.data)
    rows.append(("y (1 - y)", "0.2494", f"{slope:.6f}", _match("0.2494", slope)))
    rows.append(("y - z", "-90.4970", f"{y.data - z:.6f}", "no: raw target"))
    rows.append(("delta_y = dL/ds_y", "-22.56", f"{s_y.grad:.6f}", "no: raw target"))
    rows.append((f"delta_y with z = {z_raw:g}", "-22.56", f"{delta_raw:.6f}",
                 _match("-22.56", delta_raw) + ": the tutorial's y (1 - y) is off"))
    for j, s in enumerate(s_h, 1):
        by_hand = a[j - 1].data * (1 - a[j - 1].data) * w_y[j - 1] * s_y.grad + 0.0  # h (1 - h) w_y_j delta_y
        rows.append((f"delta_h{j} = dL/ds_h{j}", "-", f"{s.grad:.6f}", f"tutorial's formula: {by_hand:.6f}"))
    lines.append(table(("quantity", "tutorial", "engine", "match"), rows))
    lines.append(_deltas(x, z))

    params = model.parameters()
    before = [(p.data, p.grad) for p in params]
    with no_grad():
        SGD(params, lr=TUTORIAL2_ETA).step()
    lines.append(f"\nOne update, w_new = w - eta * dL/dw with eta = {TUTORIAL2_ETA} (dL/dw = delta * input; the "
                 "tutorial leaves its update table at ??.0000):")
    lines.append(table(("parameter", "old", "dL/dw", "new"),
                       [(p.label, f"{old:g}", f"{g:.6f}", f"{p.data:.6f}") for (old, g), p in zip(before, params)]))
    lines.append(f"loss on row 1: {loss.data:.6f} before the update, "
                 f"{half_squared_error(_output(model, x), z).data:.6f} after")
    return "\n".join(lines)


def _deltas(x: list, z: float) -> str:
    """The deltas as the engine derives them (microgd.explain: the registry's rules run on symbols), each
    beside the tutorial's formula for it."""
    loss = half_squared_error(_output(tutorial2_network(), x), Value(z, label="z"))  # nodes named by MLP and loss
    tutorial = {"δ_s_y": "δ_o = (y − z)·y(1 − y)"} | {f"δ_s_h{j}": f"δ_h = a(1 − a)·w·δ_o, a = h{j}"
                                                      for j in range(1, 4)}
    rows = []
    for equation in explain(loss).equations:
        if equation.lhs in tutorial:
            (factors,) = equation.terms
            formula = " · ".join(f"({f.text})" if f.precedence < PRODUCT else f.text for f in factors if not f.is_one)
            rows.append((f"{equation.lhs} = {formula}", f"{equation.value:.6f}", tutorial[equation.lhs]))
    return ("\nThe deltas as the engine derives them (microgd.explain, from the same rules backward runs), "
            "beside the tutorial's formulas:\n" + table(("engine's derivation", "value", "tutorial"), rows))


def _pictures(folder: Path, x: list, z: float, model: MLP, say: Callable[..., None]) -> list[Path]:
    """The worked example's graph (SVG) and backward step-through (HTML) and the trained network (SVG);
    only the graph's DOT source when no Graphviz renderer is installed."""
    loss = half_squared_error(_output(tutorial2_network(), x), Value(z, label="z"))
    loss.backward()
    try:
        return [save(draw_graph(loss), folder / "tutorial2_graph.svg"),
                backprop_html(loss, folder / "tutorial2_backprop.html", title="Tutorial 2: one backward pass"),
                save(draw_mlp(model), folder / "tutorial2_trained_mlp.svg")]
    except RendererNotFound as error:
        say(f"(pictures as DOT source only: {error})")
        return [save(draw_graph(loss), folder / "tutorial2_graph.dot")]


def _output(model: MLP, x: list) -> Value:
    """The output of tutorial 2's network (one output unit) for ``x``."""
    return cast(Value, model(x))
