"""The second seed end to end (what ``microgd demo`` prints): its worked example beside the seed's
printed numbers with a match column, training its 2-3-1 sigmoid network on the seed's table, and
pictures of one backward pass.

    >>> import tempfile
    >>> from microgd.demo import run_seed2
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = run_seed2(folder, epochs=50, seed=0, verbose=False)
    ...     [path.name for path in written]
    ['seed2_graph.svg', 'seed2_backprop.html', 'seed2_trained_mlp.svg', 'seed2_loss.png']
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Union

from .data import MinMaxScaler, seed_table
from .engine import gradients, no_grad
from .losses import half_squared_error
from .nn import MLP
from .optim import SGD
from .plot import plot_history
from .stepper import backprop_html
from .table import table
from .train import fit
from .viz import RendererNotFound, draw_graph, draw_mlp, save

__all__ = ["run_seed2", "SEED2_WEIGHTS", "SEED2_ETA"]

SEED2_WEIGHTS = [[[-0.5, -1.0, 0.5], [-0.5, 0.5, 0.5], [1.0, 0.0, 0.5]],  # hidden: [w_1, w_2, b] per neuron
                 [[0.5, -1.0, 0.0, 0.5]]]                                 # output: [w_1, w_2, w_3, b]
SEED2_ETA = 0.1
# the second seed's printed min-max scaling of its table, column by column
SEED2_SCALED = {(0.0, 1.0): [["1.0", "0.5555", "0.8888", "0.0"], ["1.0", "0.5806", "0.0", "0.9032"]],
                (-1.0, 1.0): [["1.0", "-0.1111", "0.7777", "-1.0"], ["1.0", "0.1613", "-1.0", "0.8064"]]}


def run_seed2(out: Union[str, os.PathLike] = "microgd-out", epochs: int = 2000, lr: float = 0.5,
              seed: int | None = None, verbose: bool = True) -> list[Path]:
    """Reproduce the second seed in folder ``out`` (created if missing); return the files written.

    Prints (unless ``verbose`` is False) the seed's min-max scaling and worked example (forward
    values, deltas, one update with eta = 0.1) beside the engine's numbers, then trains the network
    from the seed's weights for ``epochs`` of per-sample SGD at rate ``lr`` (rows shuffled with
    ``seed``) and prints the denormalised predictions. Writes the worked example's graph (SVG), its
    backward step-through (HTML), the trained network (SVG) and the loss per epoch (PNG); without a
    Graphviz renderer only the graph's DOT source, without matplotlib no loss plot (a note says so).
    Ctrl-C during training raises KeyboardInterrupt once ``fit`` has stopped.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"run_seed2: epochs must be a whole number >= 1, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"run_seed2: lr must be a finite number > 0, got {lr!r}")
    say: Callable[..., None] = print if verbose else (lambda *_: None)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    X, y = seed_table()
    say("The second seed: a 2-3-1 sigmoid MLP trained on its table (inputs I0, I1, target Z0).\n")
    say(_scaling(X))
    x_scaler, y_scaler = MinMaxScaler(), MinMaxScaler()
    Xs, ys = x_scaler.fit_transform(X), y_scaler.fit_transform(y)
    say(_worked_example(Xs[0], ys[0], y[0]))

    say(f"\nTraining from the seed's weights on the 4 scaled rows: {epochs} epochs, SGD one sample at a "
        f"time, learning rate {lr}")
    model = MLP(2, [3, 1], weights=SEED2_WEIGHTS)
    history = fit(model, Xs, ys, loss=half_squared_error, optimizer=SGD(model.parameters(), lr=lr),
                  epochs=epochs, seed=seed, verbose=verbose)
    if history.interrupted:
        raise KeyboardInterrupt
    say(f"mean loss per epoch: {history[0]:.6f} (epoch 1) -> {history[-1]:.6f} (epoch {len(history)})")
    predictions = y_scaler.inverse_transform([model(row).data for row in Xs])
    say(table(("I0", "I1", "target Z0", "prediction", "error"),
              [(f"{r[0]:g}", f"{r[1]:g}", f"{t:g}", f"{p:.2f}", f"{p - t:+.2f}")
               for r, t, p in zip(X, y, predictions)]))

    say()
    written = _pictures(folder, Xs[0], ys[0], model, say)
    for path in written:
        say(f"wrote {path}")
    try:
        plot_history(history, folder / "seed2_loss.png", title="The second seed's network: mean loss per epoch")
        written.append(folder / "seed2_loss.png")
        say(f"wrote {written[-1]}")
    except ModuleNotFoundError as error:
        say(f"(no loss plot: {error})")
    return written


def _match(printed: str | None, value: float) -> str:
    """Does ``value``, rounded like the seed's number, give the seed's number?"""
    if printed is None:
        return "(not given)"
    decimals = len(printed.partition(".")[2])
    if f"{value:.{decimals}f}" == printed:
        return "yes"
    if f"{math.trunc(value * 10 ** decimals) / 10 ** decimals:.{decimals}f}" == printed:
        return "no: cut off, not rounded"
    return "no"


def _scaling(X: list) -> str:
    """The seed's min-max scaled table beside the engine's, for the ranges [0, 1] and [-1, 1]."""
    rows = []
    for feature_range, printed in SEED2_SCALED.items():
        scaled = MinMaxScaler(feature_range).fit_transform(X)
        for j, column in enumerate(printed):
            for i, seed_text in enumerate(column):
                value = scaled[i][j]
                rows.append((f"[{feature_range[0]:g}, {feature_range[1]:g}]", f"I{j} = {X[i][j]:g}", seed_text,
                             f"{value:.6f}", _match(seed_text, value)))
    return ("Min-max scaling of the inputs (the seed's table 70,98 / 50,85 / 65,67 / 25,95):\n"
            + table(("range", "input", "seed", "engine", "match"), rows))


def _worked_example(x: list, z: float, z_raw: float) -> str:
    """The seed's forward pass, deltas and one SGD update on row ``x``, beside the seed's numbers."""
    model = MLP(2, [3, 1], weights=SEED2_WEIGHTS)
    hidden, output = model.layers
    a = hidden(x)
    y = output(a)[0]
    loss = half_squared_error(y, z)
    loss.backward()
    s_h, s_o = [v.parents[0] for v in a], y.parents[0]  # the weighted sums under the sigmoids
    delta_raw = gradients(half_squared_error(y, z_raw), [s_o])[0]
    w_o = [w.data for w in output.neurons[0].w]
    lines = [f"\nThe worked example: the 2-3-1 sigmoid network with the seed's initial weights, on row 1 scaled "
             f"to [0, 1]:\nx = ({x[0]:g}, {x[1]:g}), target z = {z:g} (the raw target {z_raw:g} scaled like the "
             f"inputs); loss L = 1/2 (y - z)^2"]
    rows = []
    for j, (seed_s, seed_a) in enumerate((("-1.0", "0.2689"), ("0.5", "0.6225"), ("1.5", "0.8176"))):
        rows.append((f"s_h{j}", seed_s, f"{s_h[j].data:.6f}", _match(seed_s, s_h[j].data)))
        rows.append((f"a_h{j} = sigmoid(s_h{j})", seed_a, f"{a[j].data:.6f}", _match(seed_a, a[j].data)))
    product = a[0].data * w_o[0]
    rows.append(("a_h0 * w_o0", "0.1345", f"{product:.6f}", _match("0.1345", product)))
    rows.append(("s_o", "0.0120", f"{s_o.data:.6f}", _match("0.0120", s_o.data)))
    rows.append(("y = sigmoid(s_o)", "0.5030", f"{y.data:.6f}", _match("0.5030", y.data)))
    rows.append(("target z", "91", f"{z:g}", "no: the seed puts the raw target beside scaled inputs"))
    slope = y.data * (1 - y.data)
    rows.append(("y (1 - y)", "0.2494", f"{slope:.6f}", _match("0.2494", slope)))
    rows.append(("y - z", "-90.4970", f"{y.data - z:.6f}", "no: raw target"))
    rows.append(("delta_o = dL/ds_o", "-22.56", f"{s_o.grad:.6f}", "no: raw target"))
    rows.append((f"delta_o with z = {z_raw:g}", "-22.56", f"{delta_raw:.6f}",
                 _match("-22.56", delta_raw) + ": the seed's y (1 - y) is off"))
    for j, s in enumerate(s_h):
        by_hand = a[j].data * (1 - a[j].data) * w_o[j] * s_o.grad + 0.0  # the seed's a (1 - a) w delta_o
        rows.append((f"delta_h{j} = dL/ds_h{j}", "-", f"{s.grad:.6f}", f"seed's formula: {by_hand:.6f}"))
    lines.append(table(("quantity", "seed", "engine", "match"), rows))

    names = [f"wh[0][{j}][{i}]" if i < 2 else f"bh[0][{j}]" for j in range(3) for i in range(3)]
    names += [f"wo[0][{j}]" for j in range(3)] + ["bo[0]"]
    params = model.parameters()
    before = [(p.data, p.grad) for p in params]
    with no_grad():
        SGD(params, lr=SEED2_ETA).step()
    lines.append(f"\nOne update, w_new = w - eta * dL/dw with eta = {SEED2_ETA} (dL/dw = delta * input; the seed "
                 "leaves its update table at ??.0000):")
    lines.append(table(("parameter", "old", "dL/dw", "new"),
                       [(n, f"{old:g}", f"{g:.6f}", f"{p.data:.6f}") for n, (old, g), p in zip(names, before, params)]))
    lines.append(f"loss on row 1: {loss.data:.6f} before the update, "
                 f"{half_squared_error(model(x), z).data:.6f} after")
    return "\n".join(lines)


def _pictures(folder: Path, x: list, z: float, model: MLP, say: Callable[..., None]) -> list[Path]:
    """The worked example's graph (SVG) and backward step-through (HTML) and the trained network (SVG);
    only the graph's DOT source when no Graphviz renderer is installed."""
    loss = half_squared_error(MLP(2, [3, 1], weights=SEED2_WEIGHTS)(x), z)
    loss.backward()
    try:
        return [save(draw_graph(loss), folder / "seed2_graph.svg"),
                backprop_html(loss, folder / "seed2_backprop.html", title="The second seed: one backward pass"),
                save(draw_mlp(model), folder / "seed2_trained_mlp.svg")]
    except RendererNotFound as error:
        say(f"(pictures as DOT source only: {error})")
        return [save(draw_graph(loss), folder / "seed2_graph.dot")]
