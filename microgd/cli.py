"""The ``microgd`` command (also ``python -m microgd``): demo, train, predict, graph, check.

    microgd demo --out microgd-out
    microgd train data.csv --target price --hidden 4,3 --epochs 500 --save model.json --plot loss.png
    microgd predict model.json new.csv --out predictions.csv
    microgd graph "sigmoid(w*x + b)" --var w=0.5 --var x=1.0 --var b=0 --out neuron.svg
    microgd check "(sigmoid(w*x) - t)**2" --wrt w --domain t=0:1 \\
        --formula "2*(sigmoid(w*x) - t) * sigmoid(w*x)*(1 - sigmoid(w*x)) * x"

Exit status: 0 done, 1 check found a counterexample, 2 a mistake in the input (one line
``microgd: error: ...`` on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import math
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .engine import DomainError, Value, no_grad
from .formula import FormulaError, compile, functions

__all__ = ["main", "UsageError"]

GRAPH_SUFFIXES = (".svg", ".png", ".dot", ".gv", ".html", ".htm")
DEFAULT_INTERVAL = (-3.0, 3.0)
FORMULA_HELP = ("Formulas use numbers, variables, + - * / ** and unary -, ( ) and exp log tanh sigmoid relu abs.\n"
                "A formula starting with '-' goes last, after '--': microgd graph --var x=2 -- '-x**2'")
DEMO_HELP = ("The second seed end to end: its worked example beside the seed's numbers, training the 2-3-1\n"
             "network on the seed's table, a graph picture and a step-through page of one backward pass.")
TRAIN_HELP = "Train an MLP on a numeric CSV file (a header row, then numbers)."
PREDICT_HELP = ("Predict with a model saved by 'microgd train --save' on a numeric CSV file: the model's input\n"
                "columns, in any order, scaled as in training; predictions in the target's units. When the\n"
                "file also has the target column, the error is printed too.")
GRAPH_HELP = ("Draw the graph of a formula after backward: .svg .png .dot .gv (a picture) or .html (a page\n"
              "stepping through the backward pass).\n\n" + FORMULA_HELP)
CHECK_HELP = (f"Search a domain for a point where FORMULA is not the derivative of EXPR (with hypothesis).\n"
              f"Variables without --domain range over [{DEFAULT_INTERVAL[0]:g}, {DEFAULT_INTERVAL[1]:g}]. "
              f"Exit status 1 when a counterexample is found.\n\n" + FORMULA_HELP)


class UsageError(Exception):
    """A mistake in what the user typed or pointed at: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage mistakes reported on one line (the full usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _assignment(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    name = name.strip()
    if not equals or not name.isidentifier() or not value.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE (e.g. w=0.5)")
    return name, value.strip()


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{what}: {text!r} is not a finite number")
    return value


def _variable(text: str) -> tuple[str, float]:
    """``--var x=1.5`` -> ("x", 1.5)."""
    name, value = _assignment(text)
    if name in functions():
        raise argparse.ArgumentTypeError(f"{name!r} is a function name, pick another variable name")
    return name, _number(value, name)


def _interval(text: str) -> tuple[str, tuple[float, float]]:
    """``--domain w=-3:3`` -> ("w", (-3.0, 3.0))."""
    name, value = _assignment(text)
    low, colon, high = value.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=LOW:HIGH (e.g. w=-3:3)")
    low, high = _number(low, f"{name} low end"), _number(high, f"{name} high end")
    if low > high:
        raise argparse.ArgumentTypeError(f"{text!r}: the low end {low:g} is above the high end {high:g}")
    return name, (low, high)


def _rate(text: str) -> float:
    """``--lr 0.5`` -> 0.5; a learning rate must be above 0."""
    value = _number(text, "the learning rate")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the learning rate {text!r} must be above 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _unique(pairs: Sequence[tuple], option: str) -> dict:
    found: dict = {}
    for name, value in pairs:
        if name in found:
            raise UsageError(f"{option} {name} is given twice")
        found[name] = value
    return found


def _compiled(text: str, where: str):
    try:
        return compile(text)
    except FormulaError as error:
        raise UsageError(f"{where}: {error}") from None


# -- graph --------------------------------------------------------------------------------------

def _graph(args: argparse.Namespace) -> int:
    """Draw the graph of a formula, after backward, to .svg/.png/.dot (viz) or .html (stepper)."""
    out = Path(args.out)
    if out.suffix.lower() not in GRAPH_SUFFIXES:
        raise UsageError(f"--out {args.out!r}: the suffix must be one of {' '.join(GRAPH_SUFFIXES)}")
    variables = _unique(args.var, "--var")
    formula = _compiled(args.expr, "EXPR")
    missing = [name for name in formula.names if name not in variables]
    if missing:
        raise UsageError(f"EXPR uses {', '.join(missing)} but no --var gives a value: add "
                         + " ".join(f"--var {name}=VALUE" for name in missing))
    leaves = {name: Value(value, label=name) for name, value in variables.items()}
    root = formula(**leaves)
    root.backward()
    try:
        if out.suffix.lower() in (".html", ".htm"):
            from .stepper import backprop_html
            backprop_html(root, out, rankdir=args.rankdir, title=args.expr)
        else:
            from .viz import draw_graph, save
            save(draw_graph(root, rankdir=args.rankdir), out)
    except (ValueError, RuntimeError) as error:  # no renderer, renderer failed, graph too large
        raise UsageError(str(error)) from None
    print(f"{args.expr} = {root.data:.6g}")
    for name, leaf in leaves.items():
        print(f"  d/d{name} = {leaf.grad:.6g}")
    print(f"wrote {out}")
    return 0


# -- check --------------------------------------------------------------------------------------

def _check(args: argparse.Namespace) -> int:
    """Search a domain for a point where FORMULA is not d EXPR / d wrt (microgd.check.check_formula)."""
    from .check import FormulaMismatch, check_formula

    f = _compiled(args.expr, "EXPR")
    derivative = _compiled(args.formula, "--formula")
    given = _unique(args.domain, "--domain")
    domain = {name: given.get(name, DEFAULT_INTERVAL) for name in (*f.names, *derivative.names, *given)}
    wrt = args.wrt
    if wrt is None:
        if len(f.names) != 1:
            raise UsageError(f"say which derivative with --wrt NAME (EXPR has the variables {', '.join(f.names)})")
        wrt = f.names[0]
    if wrt not in f.names:
        raise UsageError(f"--wrt {wrt}: EXPR has no variable {wrt!r} (its variables: {', '.join(f.names) or 'none'})")

    def formula(**point):
        with no_grad():
            return derivative(**point).data
    print(f"f({', '.join(domain)}) = {args.expr}")
    print(f"d f/d {wrt} by hand: {args.formula}")
    print("domain: " + ", ".join(f"{name} in [{lo:g}, {hi:g}]" for name, (lo, hi) in domain.items()))
    try:
        report = check_formula(f, formula, wrt=wrt, domain=domain, max_examples=args.examples,
                               rtol=args.rtol, atol=args.atol)
    except FormulaMismatch as mismatch:
        print(mismatch)
        return 1
    except ImportError as error:  # hypothesis is an extra
        raise UsageError(str(error)) from None
    except ValueError as error:  # e.g. EXPR undefined on the whole domain
        raise UsageError(str(error)) from None
    print(report)
    return 0


# -- demo ---------------------------------------------------------------------------------------

def _demo(args: argparse.Namespace) -> int:
    """The second seed end to end (microgd.demo.run_seed2): worked example, training, pictures."""
    from .demo import run_seed2

    run_seed2(args.out, epochs=args.epochs, lr=args.lr, seed=args.seed)
    return 0


# -- train --------------------------------------------------------------------------------------

def _sizes(text: str) -> list[int]:
    """``--hidden 3,3`` -> [3, 3]."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of layer sizes such as 3 or 4,3") from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: every layer needs at least 1 neuron")
    return sizes


def _writable(path: str, option: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Check an output path before the work that fills it."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {str(path)!r}: the suffix must be one of {' '.join(suffixes)}")
    if not path.parent.is_dir():
        raise UsageError(f"{option} {str(path)!r}: folder {str(path.parent)!r} does not exist")
    return path


def _train(args: argparse.Namespace) -> int:
    """Train an MLP on a numeric CSV file."""
    from .data import MinMaxScaler, load_csv
    from .table import table
    from .losses import half_squared_error
    from .nn import MLP
    from .optim import SGD
    from .train import fit

    save = _writable(args.save, "--save") if args.save else None
    plot = _writable(args.plot, "--plot", (".png", ".svg")) if args.plot else None
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise UsageError('--plot needs matplotlib: pip install "microgd[plot]"')
    try:
        X, y, names = load_csv(args.data, target=args.target)
    except ValueError as error:  # malformed file, not a number, unknown column: the message names it
        raise UsageError(str(error)) from None
    if not names:
        raise UsageError(f"{args.data}: no input columns besides the target {args.target!r}")
    twice = [name for name in names if names.count(name) > 1]
    if save is not None and twice:
        raise UsageError(f"{args.data}: {twice[0]!r} names two columns; --save records the names: make them distinct")
    for j, name in enumerate([*names, args.target]):
        column = [row[j] for row in X] if j < len(names) else y
        if min(column) == max(column):
            raise UsageError(f"{args.data}: column {name!r} is constant ({column[0]:g}): nothing to learn from or "
                             "scale; drop it")
    feature_range = (0.0, 1.0) if args.normalize == "0-1" else (-1.0, 1.0)
    x_scaler, y_scaler = MinMaxScaler(feature_range), MinMaxScaler(feature_range)
    Xs, ys = x_scaler.fit_transform(X), y_scaler.fit_transform(y)
    output = "sigmoid" if args.normalize == "0-1" else "tanh"  # its range covers the scaled target's
    model = MLP(len(names), [*args.hidden, 1], activations=[args.activation] * len(args.hidden) + [output],
                seed=args.seed)
    print(f"{args.data}: {len(X)} rows, inputs {', '.join(names)} -> target {args.target}, "
          f"all scaled to [{feature_range[0]:g}, {feature_range[1]:g}]")
    print(f"model: {model}, {len(model.parameters())} parameters; {args.epochs} epochs of SGD, "
          f"learning rate {args.lr}, one sample at a time")
    try:
        history = fit(model, Xs, ys, loss=half_squared_error, optimizer=SGD(model.parameters(), lr=args.lr),
                      epochs=args.epochs, seed=args.seed)
    except FloatingPointError as error:  # the loss overflowed: the learning rate is too large
        raise UsageError(str(error)) from None
    if history.interrupted:
        return 130
    predictions = y_scaler.inverse_transform([model(row).data for row in Xs])
    rmse = math.sqrt(sum((p - t) ** 2 for p, t in zip(predictions, y)) / len(y))
    print(f"mean loss per epoch: {history[0]:.6g} (epoch 1) -> {history[-1]:.6g} (epoch {len(history)})")
    print(f"root mean squared error on the training rows: {rmse:.6g} (in {args.target}'s units)")
    shown = min(len(y), 10)
    print(table((args.target, "prediction"), [(f"{t:g}", f"{p:.6g}") for t, p in zip(y[:shown], predictions)]))
    if shown < len(y):
        print(f"  ... {len(y) - shown} more rows")
    if save is not None:
        model.scaling = {"inputs": x_scaler, "target": y_scaler}
        model.columns = {"inputs": names, "target": args.target}
        model.save(save)
        print(f"wrote {save} (with its scaling and column names: microgd predict {save} DATA.csv)")
    if plot is not None:
        from .plot import plot_history

        plot_history(history, plot, title=f"{Path(args.data).name}: mean loss per epoch")
        print(f"wrote {plot}")
    return 0


# -- predict ------------------------------------------------------------------------------------

def _predict(args: argparse.Namespace) -> int:
    """Predict with a saved model on a CSV file, in the data's own units when the model stores its scaling."""
    from .data import load_csv
    from .table import table
    from .files import write_atomic
    from .nn import MLP

    out = _writable(args.out, "--out", (".csv",)) if args.out else None
    if out is not None and out.resolve() in (Path(args.data).resolve(), Path(args.model).resolve()):
        raise UsageError(f"--out {args.out!r} would overwrite the model or data file it reads")
    try:
        model = MLP.load(args.model)
        header, rows = load_csv(args.data)
    except ValueError as error:  # a malformed model (StateError) or CSV file: the message names file and place
        raise UsageError(str(error)) from None
    nin, nout = model.sizes[0], model.sizes[-1]
    if nout != 1:
        raise UsageError(f"{args.model}: the model has {nout} outputs; microgd predict needs a model with one")
    if model.columns is None:
        if len(header) < nin:
            raise UsageError(f"{args.data}: {len(header)} columns, but the model takes {nin} inputs")
        inputs, target = header[:nin], None
    else:
        inputs, target = model.columns["inputs"], model.columns["target"]
        for name in inputs:
            if header.count(name) != 1:
                found = "has no column" if name not in header else "has more than one column"
                raise UsageError(f"{args.data} {found} {name!r} (the model's inputs: {', '.join(inputs)}; "
                                 f"the file's columns: {', '.join(header)})")
    if out is not None and "prediction" in header:
        raise UsageError(f"{args.data} already has a column 'prediction', the one --out adds")

    print(f"{args.data}: {len(rows)} rows; {args.model}: {model}, inputs {', '.join(inputs)}")
    if model.columns is None:
        print(f"{args.model} names no columns: its inputs are the file's first {nin}")
    where = [header.index(name) for name in inputs]
    X = [[row[j] for j in where] for row in rows]
    if model.scaling is None:
        print(f"{args.model} stores no scaling: the raw inputs go in, the raw outputs come out")
    else:
        X = model.scaling["inputs"].transform(X)
    with no_grad():
        predictions = [model(x).data for x in X]
    if model.scaling is not None:
        predictions = model.scaling["target"].inverse_transform(predictions)

    shown = len(rows) if out is None else min(len(rows), 10)
    if target is None or header.count(target) != 1:
        print(table(("row", "prediction"), [(i, f"{p:.12g}") for i, p in enumerate(predictions[:shown], 1)]))
    else:
        truth = [row[header.index(target)] for row in rows]
        print(table(("row", target, "prediction", "error"),
                    [(i, f"{t:.12g}", f"{p:.12g}", f"{p - t:+.6g}")
                     for i, (t, p) in enumerate(zip(truth[:shown], predictions), 1)]))
        rmse = math.sqrt(sum((p - t) ** 2 for p, t in zip(predictions, truth)) / len(rows))
        print(f"root mean squared error against the file's {target}: {rmse:.6g}")
    if shown < len(rows):
        print(f"  ... {len(rows) - shown} more rows in {out}")
    if out is not None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(
            [[*header, "prediction"], *([*map(repr, row), repr(p)] for row, p in zip(rows, predictions))])
        write_atomic(out, text.getvalue())
        print(f"wrote {out}")
    return 0


# -- the command line ---------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="microgd", description="microgd: see, check and train backpropagation.",
                     epilog="Run 'microgd COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"microgd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    demo = commands.add_parser("demo", help="the second seed's 2-3-1 network, end to end", formatter_class=raw,
                               description=DEMO_HELP)
    demo.add_argument("--out", default="microgd-out", metavar="DIR",
                      help="folder for the graph picture and the step-through page (default: %(default)s)")
    demo.add_argument("--epochs", type=_positive_int, default=2000, metavar="N",
                      help="training epochs (default: %(default)s)")
    demo.add_argument("--lr", type=_rate, default=0.5, metavar="ETA",
                      help="learning rate of the training (default: %(default)s; the worked update uses the "
                           "seed's 0.1)")
    demo.add_argument("--seed", type=int, default=0, help="shuffling of the rows (default: %(default)s)")
    demo.set_defaults(run=_demo)

    train = commands.add_parser("train", help="train an MLP on a numeric CSV file", formatter_class=raw,
                                description=TRAIN_HELP)
    train.add_argument("data", metavar="DATA.csv", help="a CSV file with a header row and numbers")
    train.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    train.add_argument("--hidden", type=_sizes, default=[3], metavar="SIZES",
                       help="hidden layer sizes, e.g. 3,3 (default: 3)")
    train.add_argument("--activation", default="sigmoid", choices=("sigmoid", "tanh", "relu"),
                       help="hidden activation (default: %(default)s)")
    train.add_argument("--epochs", type=_positive_int, default=1000, metavar="N", help="default: %(default)s")
    train.add_argument("--lr", type=_rate, default=0.5, metavar="ETA",
                       help="learning rate (default: %(default)s)")
    train.add_argument("--normalize", default="0-1", choices=("0-1", "-1-1"),
                       help="min-max scaling range of inputs and target (default: %(default)s)")
    train.add_argument("--seed", type=int, default=0, help="initial weights and shuffling (default: %(default)s)")
    train.add_argument("--save", metavar="MODEL.json", help="write the trained model here")
    train.add_argument("--plot", metavar="LOSS.png", help="plot the loss per epoch here (needs matplotlib)")
    train.set_defaults(run=_train)

    predict = commands.add_parser("predict", help="predict with a saved model on a numeric CSV file",
                                  formatter_class=raw, description=PREDICT_HELP)
    predict.add_argument("model", metavar="MODEL.json", help="a model written by 'microgd train --save'")
    predict.add_argument("data", metavar="DATA.csv", help="a CSV file with a header row and numbers")
    predict.add_argument("--out", metavar="PREDICTIONS.csv", help="also write the rows and their predictions here")
    predict.set_defaults(run=_predict)

    graph = commands.add_parser(
        "graph", help="draw the graph of a formula, with its gradients", formatter_class=raw,
        description=GRAPH_HELP,
    )
    graph.add_argument("expr", metavar="EXPR", help="e.g. 'sigmoid(w*x + b)'")
    graph.add_argument("--var", action="append", type=_variable, default=[], metavar="NAME=VALUE",
                       help="a variable's value; repeat for each variable")
    graph.add_argument("--out", default="graph.svg", metavar="FILE",
                       help="where to draw: .svg .png .dot .gv, or .html to step through backward "
                            "(default: %(default)s)")
    graph.add_argument("--rankdir", default="LR", choices=("LR", "TB", "RL", "BT"),
                       help="layout direction (default: %(default)s)")
    graph.set_defaults(run=_graph)

    check = commands.add_parser(
        "check", help="test a hand-derived derivative against the engine", formatter_class=raw,
        description=CHECK_HELP,
    )
    check.add_argument("expr", metavar="EXPR", help="the function, e.g. '(sigmoid(w*x) - t)**2'")
    check.add_argument("--formula", required=True, metavar="FORMULA", help="your derivative of EXPR")
    check.add_argument("--wrt", metavar="NAME", help="the variable to differentiate by (needed if EXPR has several)")
    check.add_argument("--domain", action="append", type=_interval, default=[], metavar="NAME=LOW:HIGH",
                       help="the interval a variable is drawn from; repeat for each variable")
    check.add_argument("--examples", type=_positive_int, default=200, metavar="N",
                       help="points to try at most (default: %(default)s)")
    check.add_argument("--rtol", type=lambda t: _number(t, "--rtol"), default=1e-7, help="default: %(default)g")
    check.add_argument("--atol", type=lambda t: _number(t, "--atol"), default=1e-9, help="default: %(default)g")
    check.set_defaults(run=_check)
    return parser


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.strerror}: {error.filename}"
    return " ".join(str(error).split())


def _join_normalize(argv: Sequence[str]) -> list[str]:
    """``--normalize -1-1`` as ``--normalize=-1-1``: argparse would take ``-1-1`` for an option."""
    joined: list[str] = []
    for arg in argv:
        if arg == "-1-1" and joined and joined[-1] == "--normalize":
            joined[-1] = "--normalize=-1-1"
        else:
            joined.append(arg)
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``microgd`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    try:
        args = _parser().parse_args(_join_normalize(sys.argv[1:] if argv is None else argv))
    except SystemExit as done:  # --help, --version, or a usage mistake argparse has reported
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("microgd: interrupted", file=sys.stderr)
        return 130
    except (UsageError, FormulaError, DomainError, OSError) as error:
        print(f"microgd: error: {_one_line(error)}", file=sys.stderr)
        return 2
