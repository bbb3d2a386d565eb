"""The ``microgd`` command (also ``python -m microgd``): demo, train, predict, graph, check, explain, playground.

    microgd demo --out microgd-out
    microgd train data.csv --target price --hidden 4,3 --epochs 500 --save model.json --plot loss.png
    microgd predict model.json new.csv --out predictions.csv
    microgd graph "sigmoid(w*x + b)" --var w=0.5 --var x=1.0 --var b=0 --out neuron.svg
    microgd check "(sigmoid(w*x) - t)**2" --wrt w --domain t=0:1 \\
        --formula "2*(sigmoid(w*x) - t) * sigmoid(w*x)*(1 - sigmoid(w*x)) * x"
    microgd explain "(sigmoid(w*x) - t)**2" --wrt w --var w=0.5 --var x=0.1 --var t=0.3 [--latex]
    microgd playground [--record run.html --steps 300 --every 5] [--dataset moons --hidden 16,16 --lr 0.1]

It parses arguments and prints; the work lives in functions tests call directly: the CSV pipeline
(:mod:`microgd.app.pipeline`), tutorial 2's demo (:mod:`microgd.app.demo`), the formula parser
(:mod:`microgd.app.formula`), the pictures and :func:`microgd.check.check_formula`.

Exit status: 0 done, 1 check found a counterexample, 2 a mistake in the input (one line
``microgd: error: ...`` on stderr, before any work when it is about a path to write), 130 interrupted
(Ctrl-C during ``train --save`` saves the model at its last completed step first), 141 stdout closed
by its reader (``| head``) with the files asked for written.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

from .. import __version__
from ..check import DEFAULT_INTERVAL, FORMULA_ATOL, FORMULA_RTOL, MAX_EXAMPLES, RTOL_LIMIT
from ..drawing import MAX_NODES, RANKDIR, RANKDIRS, RENDER_TIMEOUT, GraphTooLarge, RenderError, RenderTimeout
from ..engine import DomainError, Value, no_grad
from ..explain import MAX_EQUATIONS
from ..files import DestinationError, check_distinct, check_folder, check_writable, write_atomic
from ..table import number, table, visible
from ..train import History
from . import demo, pipeline
from .formula import FormulaError, compile, functions, normal_name
from .modelfile import MAX_PARAMETERS, NetworkTooLarge, parameter_count
from .pipeline import (
    HIDDEN_ACTIVATIONS,
    NORMALIZE,
    OUTPUT_ACTIVATIONS,
    DataError,
    Training,
    describe,
    output_activation,
    predict_csv,
    prepare_training,
    rmse,
)

__all__ = ["main", "UsageError"]

GRAPH_SUFFIXES = (".svg", ".png", ".dot", ".gv", ".html", ".htm")
DEMO_HELP = ("Tutorial 2 (the MLP worked example) end to end: its worked example beside the tutorial's numbers,\n"
             "training its 2-3-1 sigmoid network on its table, a graph picture and a step-through page of one\n"
             "backward pass.")
TRAIN_HELP = ("Train an MLP on a numeric CSV file (a header row, then numbers): every column scaled min-max to\n"
              "--normalize's range, hidden layers of --activation, one output unit of --output-activation.\n"
              "Numbers are printed with 6 significant digits; the file's own numbers as they are written.")
PREDICT_HELP = ("Predict with a model saved by 'microgd train --save' on a numeric CSV file: the model's input\n"
                "columns, in any order, scaled as in training; predictions in the target's units. When the\n"
                "file also has the target column, the error is printed too.")
GRAPH_HELP = ("Draw the graph of a formula after backward: .svg .png .dot .gv (a picture) or .html (a page\n"
              "stepping through the backward pass).")
EXPLAIN_HELP = ("Write out the chain rule for the derivative of EXPR by each --wrt variable (every variable\n"
                "by default): the local derivatives as formulas, from the same rules backward runs, with the\n"
                "engine's numbers beside them. --formula adds each closed form in the formula language, ready\n"
                "for 'microgd check --formula'.")
PLAYGROUND_HELP = ("Train a small network on 2-D data in the browser and watch every number: the decision\n"
                   "boundary, the loss, every weight and gradient, a sample's computation graph and a weight's\n"
                   "derivation. Starts a local server (127.0.0.1, a free port) and opens its page; Ctrl-C stops it.\n"
                   "--record FILE.html trains without a browser and writes a page that replays the run.\n"
                   'Needs the playground extra: pip install "microgd[playground]".')
CHECK_HELP = (f"Search a domain for a point where FORMULA is not the derivative of EXPR (with hypothesis).\n"
              f"Variables without --domain range over [{DEFAULT_INTERVAL[0]:g}, {DEFAULT_INTERVAL[1]:g}]. "
              f"Exit status 1 when a counterexample is found.")


def _formula_help() -> str:
    """What a formula may contain; the functions come from the op registry, so a defined op is listed too."""
    return (f"Formulas use numbers, variables, + - * / ** and unary -, ( ) and the functions\n"
            f"{' '.join(functions())}.\n"
            "A formula starting with '-' goes last, after '--': microgd graph --var x=2 -- '-x**2'")


class UsageError(Exception):
    """A mistake in what the user typed or pointed at: reported as one line, exit status 2."""


@dataclass(frozen=True)
class Destination:
    """A path a command writes (``--save``): checked, with all the command's paths, before any of its work."""

    option: str
    attribute: str
    suffixes: tuple[str, ...] = ()
    folder: bool = False


class _Parser(argparse.ArgumentParser):
    """argparse, with usage mistakes reported on one line (the full usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {visible(message)} (see '{self.prog} --help')\n")


def _assignment(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    name = name.strip()
    if not equals or not name.isidentifier() or not value.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE (e.g. w=0.5)")
    if normal_name(name) != name:  # two names would be one in the formula: ｘ is x
        raise argparse.ArgumentTypeError(f"{name!r} is read by Python as {normal_name(name)!r} in a formula "
                                         "(Unicode NFKC normalisation): use that name")
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
    low_text, colon, high_text = value.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=LOW:HIGH (e.g. w=-3:3)")
    low, high = _number(low_text, f"{name} low end"), _number(high_text, f"{name} high end")
    if low > high:
        raise argparse.ArgumentTypeError(f"{text!r}: the low end {low:g} is above the high end {high:g}")
    return name, (low, high)


def _atol(text: str) -> float:
    """The type of ``--atol``: a finite number >= 0."""
    value = _number(text, "a tolerance")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _rtol(text: str) -> float:
    """The type of ``--rtol``: a finite number >= 0 and below RTOL_LIMIT (from there on, twice the derivative
    passes; at 1 and above, anything does)."""
    value = _number(text, "a tolerance")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0 and below {RTOL_LIMIT:g}")
    if value >= RTOL_LIMIT:
        accepted = "any formula" if value >= 1 else f"a formula {1 / (1 - value):.3g} times the derivative"
        raise argparse.ArgumentTypeError(f"{text!r} would accept {accepted} (a relative tolerance r accepts anything "
                                         f"within a factor 1/(1 - r)): use one below {RTOL_LIMIT:g}, which tells a "
                                         "formula from twice its value")
    return value


def _rate(text: str) -> float:
    """``--lr 0.5`` -> 0.5; a learning rate must be above 0."""
    value = _number(text, "the learning rate")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the learning rate {text!r} must be above 0")
    return value


def _seconds(text: str) -> float:
    """``--timeout 90`` -> 90.0; a time limit must be above 0."""
    value = _number(text, "the time limit")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0 seconds")
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


def _evaluated(args: argparse.Namespace) -> tuple[Value, dict[str, Value]]:
    """EXPR built on its ``--var`` values: the root and the leaves, by name."""
    variables = _unique(args.var, "--var")
    formula = _compiled(args.expr, "EXPR")
    missing = [name for name in formula.names if name not in variables]
    if missing:
        raise UsageError(f"EXPR uses {', '.join(missing)} but no --var gives a value: add "
                         + " ".join(f"--var {name}=VALUE" for name in missing))
    leaves = {name: Value(value, label=name) for name, value in variables.items() if name in formula.names}
    return formula(**leaves), leaves


# -- graph --------------------------------------------------------------------------------------

def _graph(args: argparse.Namespace) -> int:
    """Draw the graph of a formula, after backward, to .svg/.png/.dot (viz) or .html (stepper)."""
    out = Path(args.out)
    root, leaves = _evaluated(args)
    root.backward()
    try:
        if out.suffix.lower() in (".html", ".htm"):
            from ..stepper import backprop_html
            backprop_html(root, out, rankdir=args.rankdir, title=args.expr, max_nodes=args.max_nodes,
                          timeout=args.timeout)
        else:
            from ..viz import draw_graph, save
            save(draw_graph(root, rankdir=args.rankdir, max_nodes=args.max_nodes), out, timeout=args.timeout)
    except GraphTooLarge as error:
        raise UsageError(f"EXPR's graph has {error.nodes} nodes, more than --max-nodes {error.limit}: a picture "
                         f"that large is hard to read; draw a smaller expression, or add --max-nodes {error.nodes}") \
            from None
    except RenderTimeout as error:
        raise UsageError(f"{error.program} took more than {error.seconds:g} s to lay out EXPR's graph and was stopped: "
                         f"draw a smaller graph, or allow more time with --timeout {2 * error.seconds:g}") from None
    print(f"{visible(args.expr)} = {number(root.data)}")
    for name, leaf in leaves.items():
        print(f"  d/d{name} = {number(leaf.grad)}")
    print(f"wrote {visible(str(out))}")
    return 0


# -- explain ------------------------------------------------------------------------------------

def _explain(args: argparse.Namespace) -> int:
    """Print the derivation of EXPR by each --wrt variable (microgd.explain)."""
    from ..explain import explain

    root, leaves = _evaluated(args)
    wanted = list(dict.fromkeys(args.wrt)) or list(leaves)
    for name in wanted:
        if name not in leaves:
            raise UsageError(f"--wrt {name}: EXPR has no variable {name!r} "
                             f"(its variables: {', '.join(leaves) or 'none'})")
    if not wanted:
        raise UsageError("EXPR has no variables: there is no derivative to explain")
    wrt = [leaves[name] for name in wanted]
    derivation = explain(root, wrt=wrt, max_equations=None if args.all else MAX_EQUATIONS)
    print(derivation.latex() if args.latex else derivation.text())
    if args.formula:
        print()
        for name in wanted:
            print(f"d f/d {name} = {derivation.formula(leaves[name])}")
    return 0


# -- check --------------------------------------------------------------------------------------

def _check(args: argparse.Namespace) -> int:
    """Search a domain for a point where FORMULA is not d EXPR / d wrt (microgd.check.check_formula)."""
    from ..check import FormulaMismatch, ToleranceError, check_formula

    f = _compiled(args.expr, "EXPR")
    derivative = _compiled(args.formula, "--formula")
    given = _unique(args.domain, "--domain")
    variables = f"its variables: {', '.join(f.names) or 'none'}"
    for name in given:
        if name not in f.names:
            raise UsageError(f"--domain {name}: EXPR has no variable {name!r} ({variables})")
    for name in derivative.names:
        if name not in f.names:
            raise UsageError(f"--formula uses {name!r}, which is not a variable of EXPR ({variables}): a derivative "
                             "of EXPR depends on EXPR's variables only")
    domain = {name: given.get(name, DEFAULT_INTERVAL) for name in f.names}
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
    print(f"f({', '.join(domain)}) = {visible(args.expr)}")
    print(f"d f/d {wrt} by hand: {visible(args.formula)}")
    print("domain: " + ", ".join(f"{name} in [{number(lo, None)}, {number(hi, None)}]"
                                 for name, (lo, hi) in domain.items()))
    try:
        report = check_formula(f, formula, wrt=wrt, domain=domain, max_examples=args.examples,
                               rtol=args.rtol, atol=args.atol)
    except FormulaMismatch as mismatch:
        print(mismatch)
        return 1
    except ToleranceError as error:
        raise UsageError(f"--atol {args.atol:g} would accept the derivative 0 at every point tried (the largest "
                         f"|d f/d {wrt}| there is {error.largest:.3g}): the check proves nothing; use --atol below "
                         f"{error.limit:.3g}") from None
    except ValueError as error:  # e.g. EXPR undefined on the whole domain
        raise UsageError(str(error)) from None
    print(report)
    return 0


# -- demo ---------------------------------------------------------------------------------------

def _demo(args: argparse.Namespace) -> int:
    """Tutorial 2 end to end (microgd.app.demo.run_tutorial2): worked example, training, pictures."""
    demo.run_tutorial2(args.out, epochs=args.epochs, lr=args.lr, seed=args.seed)
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
    least = parameter_count([1, *sizes, 1])  # one input, one output: whatever the data, no fewer
    if least > MAX_PARAMETERS:
        raise argparse.ArgumentTypeError(f"{text!r} asks for a network of at least {least:,} parameters, more than "
                                         f"microgd builds ({MAX_PARAMETERS:,})")
    return sizes


def _train(args: argparse.Namespace) -> int:
    """Train an MLP on a numeric CSV file (microgd.app.pipeline.prepare_training). The files asked for are
    written as soon as training ends, before anything is printed; Ctrl-C saves the last completed step."""
    save = Path(args.save) if args.save else None
    plot = Path(args.plot) if args.plot else None
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise UsageError('--plot needs matplotlib: pip install "microgd[plot]"')
    try:
        output = output_activation(args.normalize, args.output_activation, ("--output-activation", "--normalize"))
    except ValueError as error:  # an output that cannot reach the whole scaled target
        raise UsageError(str(error)) from None
    try:
        training = prepare_training(args.data, args.target, hidden=args.hidden, activation=args.activation,
                                    output=output, normalize=args.normalize, seed=args.seed,
                                    distinct_names=save is not None)
    except NetworkTooLarge as error:  # the file's columns make the network of --hidden too large
        raise UsageError(f"--hidden {','.join(map(str, args.hidden))}: {error}") from None
    lo, hi = NORMALIZE[args.normalize][0]
    print(f"{visible(args.data)}: {len(training.X)} rows, inputs {visible(', '.join(training.columns.inputs))} -> "
          f"target {visible(args.target)}, all scaled to [{lo:g}, {hi:g}]")
    print(f"model: {describe(training.model)}, {len(training.model.parameters())} parameters; {args.epochs} epochs "
          f"of SGD, learning rate {number(args.lr, None)}, one sample at a time")
    print(f"activations: hidden {args.activation}, output {_output_summary(output, args)}")
    if save is None and plot is None and _reader_gone():
        return 0  # nothing to write and no one to tell: stop, as a Unix tool does
    try:
        history = training.fit(epochs=args.epochs, lr=args.lr, seed=args.seed)
    except FloatingPointError as error:  # the loss overflowed: the learning rate is too large
        raise UsageError(str(error)) from None
    if history.interrupted:
        return _interrupted(training, history, save)
    if save is not None:
        training.save(save)
    if plot is not None:
        from ..plot import plot_history

        plot_history(history, plot, title=f"{visible(Path(args.data).name)}: mean loss per epoch")
    predictions, y = training.predictions(), training.y
    print(f"mean loss per epoch: {number(history[0])} (epoch 1) -> {number(history[-1])} (epoch {len(history)})")
    print(f"root mean squared error on the training rows: {number(rmse(predictions, y))} (in "
          f"{visible(args.target)}'s units)")
    shown = min(len(y), 10)
    print(table((args.target, "prediction"), [(number(t, None), number(p)) for t, p in zip(y[:shown], predictions)]))
    if shown < len(y):
        print(f"  ... {len(y) - shown} more rows")
    if save is not None:
        saved = visible(str(save))
        print(f"wrote {saved} (with its scaling and column names: microgd predict {saved} DATA.csv)")
    if plot is not None:
        print(f"wrote {visible(str(plot))}")
    return 0


def _output_summary(output: str, args: argparse.Namespace) -> str:
    """The output activation and why it is the one: never a silent choice."""
    if args.output_activation:
        return f"{output} (--output-activation)"
    return f"{output} (the default for --normalize {args.normalize}; change it with --output-activation)"


def _interrupted(training: Training, history: History, save: Path | None) -> int:
    """Ctrl-C stopped training: save the model at its last completed step (if a step completed), say so; 130."""
    if save is None:
        print("microgd: interrupted; nothing saved (no --save)", file=sys.stderr)
    elif history.steps == 0:
        print(f"microgd: interrupted before the first step; {visible(str(save))} not written", file=sys.stderr)
    else:
        training.save(save)
        print(f"microgd: interrupted; saved the model at its last completed step ({len(history)} epoch(s), "
              f"{history.steps} step(s)) to {visible(str(save))}", file=sys.stderr)
    return 130


# -- playground ---------------------------------------------------------------------------------

PLAYGROUND_MODULES = {"starlette", "uvicorn", "websockets", "numpy", "anyio", "h11", "click"}


def _port(text: str) -> int:
    """``--port 8000`` -> 8000; 0 means a free port."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535; 0: a free port)")
    return value


def _playground(args: argparse.Namespace) -> int:
    """Serve the playground (microgd.playground.server) until Ctrl-C, or with --record train without a browser
    and write a replay page (microgd.playground.record)."""
    options = {name: value for name, value in [
        ("dataset", args.dataset), ("hidden", args.hidden), ("activation", args.activation), ("loss", args.loss),
        ("optimizer", args.optimizer), ("lr", args.lr), ("batch", args.batch), ("seed", args.seed),
    ] if value is not None}
    if args.csv is not None:
        if args.record is not None:
            check_distinct([("--csv", args.csv)], [("--record", args.record)])
        options["dataset"] = "csv"
        options["csv"] = _csv_text(args.csv)
    if args.record is None:
        for option in ("steps", "every"):
            if getattr(args, option) is not None:
                raise UsageError(f"--{option} goes with --record (the steps of a recorded run)")
    try:
        if args.record is not None:
            return _record(args, options)
        return _serve(args, options)
    except ImportError as error:
        if (error.name or "").split(".")[0] not in PLAYGROUND_MODULES:
            raise
        raise UsageError('the playground needs its extra: pip install "microgd[playground]"') from None


def _csv_text(path: str) -> str:
    """The text of ``--csv``, read no further than the playground takes."""
    from ..playground.datasets import CSV_MAX_BYTES

    with open(path, "rb") as file:
        data = file.read(CSV_MAX_BYTES + 1)
    if len(data) > CSV_MAX_BYTES:
        raise UsageError(f"--csv {visible(path)}: more than the playground takes ({CSV_MAX_BYTES:,} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--csv {visible(path)}: not UTF-8 text") from None


def _record(args: argparse.Namespace, options: dict) -> int:
    from ..playground.record import record
    from ..playground.run import PlaygroundError

    shown = visible(args.record)
    try:
        done = record(args.record, options, steps=args.steps or 300, every=args.every or 5)
    except PlaygroundError as error:
        raise UsageError(str(error)) from None
    if done.interrupted:
        print(f"microgd: interrupted; wrote the {done.steps} step(s) done to {shown}", file=sys.stderr)
        return 130
    print(f"wrote {shown}: {done.steps} steps, {done.frames} frames; it opens in a browser, no server needed")
    return 0


def _serve(args: argparse.Namespace, options: dict) -> int:
    from ..playground import server
    from ..playground.run import PlaygroundError, validate

    try:
        validate(dict(options))
    except PlaygroundError as error:
        raise UsageError(str(error)) from None
    try:
        sock = server.bind(args.host, args.port)
    except OSError as error:
        raise UsageError(f"--host {args.host} --port {args.port}: {error.strerror or error}") from None
    url = server.url_of(sock, args.host)
    warning = server.exposure_warning(args.host, sock.getsockname()[1])
    if warning:
        print(f"microgd playground: {warning}", file=sys.stderr)
    print(f"microgd playground: {url} (Ctrl-C stops it)", flush=True)
    if not args.no_browser and not server.open_browser(url):
        print("microgd playground: no graphical browser here: open the address above in one", flush=True)
    app = server.create_app(options, allowed_hosts=server.allowed_hosts(args.host))
    with contextlib.suppress(KeyboardInterrupt):
        server.serve(app, sock)
    print("microgd playground: stopped")
    return 0


# -- predict ------------------------------------------------------------------------------------

def _predict(args: argparse.Namespace) -> int:
    """Predict with a saved model on a CSV file (microgd.app.pipeline.predict_csv)."""
    out = Path(args.out) if args.out else None
    result = predict_csv(args.model, args.data)
    if out is not None and "prediction" in result.header:
        raise UsageError(f"{args.data} already has a column 'prediction', the one --out adds")

    n = len(result.rows)
    print(f"{visible(args.data)}: {n} rows; {visible(args.model)}: {describe(result.model)}, inputs "
          f"{visible(', '.join(result.inputs))}")
    for note in result.notes:
        print(visible(note))
    shown = n if out is None else min(n, 10)
    if result.truth is None:
        print(table(("row", "prediction"), [(i, number(p)) for i, p in enumerate(result.predictions[:shown], 1)]))
    else:
        print(table(("row", result.target, "prediction", "error"),
                    [(i, number(t, None), number(p), number(p - t, "+.6g"))
                     for i, (t, p) in enumerate(zip(result.truth[:shown], result.predictions), 1)]))
        print(f"root mean squared error against the file's {visible(str(result.target))}: "
              f"{number(cast(float, result.rmse))}")
    if shown < n:
        print(f"  ... {n - shown} more rows in {visible(str(out))}")
    if out is not None:
        write_atomic(out, result.csv())
        print(f"wrote {visible(str(out))}")
    return 0


# -- the command line ---------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="microgd", description="microgd: see, check and train backpropagation.",
                     epilog="Run 'microgd COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"microgd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    tutorial = commands.add_parser("demo", help="tutorial 2 (the MLP worked example), end to end",
                                   formatter_class=raw, description=DEMO_HELP)
    tutorial.add_argument("--out", default=demo.OUT, metavar="DIR",
                          help="folder for the graph picture and the step-through page (default: %(default)s)")
    tutorial.add_argument("--epochs", type=_positive_int, default=demo.EPOCHS, metavar="N",
                          help="training epochs (default: %(default)s)")
    tutorial.add_argument("--lr", type=_rate, default=demo.LR, metavar="ETA",
                          help="learning rate of the training (default: %(default)s; the worked update uses the "
                               f"tutorial's {demo.TUTORIAL2_ETA})")
    tutorial.add_argument("--seed", type=int, default=0, help="shuffling of the rows (default: %(default)s)")
    tutorial.set_defaults(run=_demo, inputs=(), outputs=(Destination("--out", "out", folder=True),))

    train = commands.add_parser("train", help="train an MLP on a numeric CSV file", formatter_class=raw,
                                description=TRAIN_HELP)
    train.add_argument("data", metavar="DATA.csv", help="a CSV file with a header row and numbers")
    train.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    train.add_argument("--hidden", type=_sizes, default=list(pipeline.HIDDEN), metavar="SIZES",
                       help=f"hidden layer sizes, e.g. 3,3 (default: {','.join(map(str, pipeline.HIDDEN))})")
    train.add_argument("--activation", default=pipeline.ACTIVATION, choices=HIDDEN_ACTIVATIONS, metavar="NAME",
                       help=f"activation of the hidden layers: {', '.join(HIDDEN_ACTIVATIONS)} (default: "
                            "%(default)s)")
    train.add_argument("--output-activation", choices=tuple(OUTPUT_ACTIVATIONS), metavar="NAME",
                       help=f"activation of the output unit: {', '.join(OUTPUT_ACTIVATIONS)} (default: the one "
                            "whose range is the scaled target's: "
                            + ", ".join(f"{output} for --normalize {name}" for name, (_, output) in NORMALIZE.items())
                            + ")")
    train.add_argument("--epochs", type=_positive_int, default=pipeline.EPOCHS, metavar="N",
                       help="default: %(default)s")
    train.add_argument("--lr", type=_rate, default=pipeline.LR, metavar="ETA",
                       help="learning rate (default: %(default)s)")
    train.add_argument("--normalize", default=pipeline.SCALE, choices=tuple(NORMALIZE),
                       help="min-max scaling range of inputs and target (default: %(default)s)")
    train.add_argument("--seed", type=int, default=pipeline.SEED,
                       help="initial weights and shuffling (default: %(default)s)")
    train.add_argument("--save", metavar="MODEL.json", help="write the trained model here")
    train.add_argument("--plot", metavar="LOSS.png", help="plot the loss per epoch here (needs matplotlib)")
    train.set_defaults(run=_train, inputs=(("DATA.csv", "data"),),
                       outputs=(Destination("--save", "save"), Destination("--plot", "plot", (".png", ".svg"))))

    predict = commands.add_parser("predict", help="predict with a saved model on a numeric CSV file",
                                  formatter_class=raw, description=PREDICT_HELP)
    predict.add_argument("model", metavar="MODEL.json", help="a model written by 'microgd train --save'")
    predict.add_argument("data", metavar="DATA.csv", help="a CSV file with a header row and numbers")
    predict.add_argument("--out", metavar="PREDICTIONS.csv", help="also write the rows and their predictions here")
    predict.set_defaults(run=_predict, inputs=(("MODEL.json", "model"), ("DATA.csv", "data")),
                         outputs=(Destination("--out", "out", (".csv",)),))

    graph = commands.add_parser(
        "graph", help="draw the graph of a formula, with its gradients", formatter_class=raw,
        description=f"{GRAPH_HELP}\n\n{_formula_help()}",
    )
    _formula_at_a_point(graph, "e.g. 'sigmoid(w*x + b)'")
    graph.add_argument("--out", default="graph.svg", metavar="FILE",
                       help="where to draw: .svg .png .dot .gv, or .html to step through backward "
                            "(default: %(default)s)")
    graph.add_argument("--rankdir", default=RANKDIR, choices=RANKDIRS,
                       help="layout direction (default: %(default)s)")
    graph.add_argument("--max-nodes", type=_positive_int, default=MAX_NODES, metavar="N",
                       help="refuse a graph of more nodes than this (default: %(default)s)")
    graph.add_argument("--timeout", type=_seconds, default=RENDER_TIMEOUT, metavar="SECONDS",
                       help="stop the renderer after this long (default: %(default)g)")
    graph.set_defaults(run=_graph, inputs=(), outputs=(Destination("--out", "out", GRAPH_SUFFIXES),))

    check = commands.add_parser(
        "check", help="test a hand-derived derivative against the engine", formatter_class=raw,
        description=f"{CHECK_HELP}\n\n{_formula_help()}",
    )
    check.add_argument("expr", metavar="EXPR", help="the function, e.g. '(sigmoid(w*x) - t)**2'")
    check.add_argument("--formula", required=True, metavar="FORMULA", help="your derivative of EXPR")
    check.add_argument("--wrt", metavar="NAME", help="the variable to differentiate by (needed if EXPR has several)")
    check.add_argument("--domain", action="append", type=_interval, default=[], metavar="NAME=LOW:HIGH",
                       help="the interval a variable is drawn from; repeat for each variable")
    check.add_argument("--examples", type=_positive_int, default=MAX_EXAMPLES, metavar="N",
                       help="points to try at most (default: %(default)s)")
    check.add_argument("--rtol", type=_rtol, default=FORMULA_RTOL,
                       help=f"relative tolerance, in [0, {RTOL_LIMIT:g}): from {RTOL_LIMIT:g} up it would pass twice "
                            "the derivative (default: %(default)g)")
    check.add_argument("--atol", type=_atol, default=FORMULA_ATOL,
                       help="absolute tolerance, >= 0; one that would pass the derivative 0 at every point tried "
                            "is an error (default: %(default)g)")
    check.set_defaults(run=_check, inputs=(), outputs=())

    explain = commands.add_parser(
        "explain", help="write out the chain rule for a formula's derivatives", formatter_class=raw,
        description=f"{EXPLAIN_HELP}\n\n{_formula_help()}",
    )
    _formula_at_a_point(explain, "e.g. '(sigmoid(w*x) - t)**2'")
    explain.add_argument("--wrt", action="append", default=[], metavar="NAME",
                         help="a variable to differentiate by; repeat for several (default: every variable)")
    explain.add_argument("--latex", action="store_true", help="print LaTeX (an aligned block) instead of text")
    explain.add_argument("--formula", action="store_true",
                         help="also print each closed form in the formula language")
    explain.add_argument("--all", action="store_true", help=f"print every equation, not the first {MAX_EQUATIONS}")
    explain.set_defaults(run=_explain, inputs=(), outputs=())

    playground = commands.add_parser("playground", help="train a small network in the browser, watching every "
                                     "number", formatter_class=raw, description=PLAYGROUND_HELP)
    playground.add_argument("--host", default="127.0.0.1",
                            help="address to serve on (default: %(default)s, this machine only; another address "
                                 "lets others reach it, with a warning)")
    playground.add_argument("--port", type=_port, default=0, help="port to serve on (default: a free one)")
    playground.add_argument("--no-browser", action="store_true", help="print the address, do not open a browser")
    playground.add_argument("--record", metavar="RUN.html",
                            help="train without a browser and write a page replaying the run here, then exit")
    playground.add_argument("--steps", type=_positive_int, metavar="N", help="with --record: steps (default: 300)")
    playground.add_argument("--every", type=_positive_int, metavar="N",
                            help="with --record: a frame every N steps (default: 5)")
    playground.add_argument("--dataset", metavar="NAME",
                            help="moons, circles, xor, spiral or tutorial2 (default: moons)")
    playground.add_argument("--csv", metavar="DATA.csv",
                            help="train on this file instead: a header row, then x1, x2 and the target")
    playground.add_argument("--hidden", type=_sizes, metavar="SIZES",
                            help="hidden layer sizes, at most 4 layers of 32 (default: 8,8)")
    playground.add_argument("--activation", metavar="NAME",
                            help="of the hidden layers: tanh, relu, sigmoid or linear (default: tanh)")
    playground.add_argument("--loss", metavar="NAME",
                            help="binary_cross_entropy, hinge, half_squared_error or squared_error (default: "
                                 "binary_cross_entropy for two classes, else half_squared_error)")
    playground.add_argument("--optimizer", metavar="NAME", help="sgd, momentum or adam (default: sgd)")
    playground.add_argument("--lr", type=_rate, metavar="ETA", help="learning rate (default: 0.1)")
    playground.add_argument("--batch", type=_positive_int, metavar="N", help="samples per step (default: 16)")
    playground.add_argument("--seed", type=int, metavar="N", help="data, initial weights, batches (default: 0)")
    playground.set_defaults(run=_playground, inputs=(),
                            outputs=(Destination("--record", "record", (".html", ".htm")),))
    return parser


def _formula_at_a_point(command: argparse.ArgumentParser, example: str) -> None:
    """EXPR and its --var values: what graph and explain build a graph from (:func:`_evaluated`)."""
    command.add_argument("expr", metavar="EXPR", help=example)
    command.add_argument("--var", action="append", type=_variable, default=[], metavar="NAME=VALUE",
                         help="a variable's value; repeat for each variable")


def _check_destinations(args: argparse.Namespace) -> None:
    """Every path the command will write, checked before any of its work: the suffix, a place that takes
    the file (microgd.files), and no output the same file as an input or as another output."""
    given = [(d, getattr(args, d.attribute)) for d in args.outputs if getattr(args, d.attribute)]
    for destination, text in given:
        suffixes = destination.suffixes
        if suffixes and Path(text).suffix.lower() not in suffixes:
            raise UsageError(f"{destination.option} {text!r}: the suffix must be one of {' '.join(suffixes)}")
        (check_folder if destination.folder else check_writable)(text, destination.option)
    check_distinct([(name, getattr(args, attribute)) for name, attribute in args.inputs],
                   [(destination.option, text) for destination, text in given])


def _one_line(error: BaseException) -> str:
    """The error's message as one line, with every character a terminal would obey (a line break, ESC) shown
    escaped: names from files and arguments are printed as they are spelled, never acted on."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.strerror}: {visible(str(error.filename))}"
    return visible(str(error))


def _join_normalize(argv: Sequence[str]) -> list[str]:
    """``--normalize -1-1`` as ``--normalize=-1-1``: argparse would take ``-1-1`` for an option."""
    joined: list[str] = []
    for arg in argv:
        if arg == "-1-1" and joined and joined[-1] == "--normalize":
            joined[-1] = "--normalize=-1-1"
        else:
            joined.append(arg)
    return joined


class _Stdout:
    """``sys.stdout`` while a command runs: when its reader goes away (``| head``), printing stops, the work
    does not, so every file asked for is still written."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.gone = stream, False

    def write(self, text: str) -> int:
        self._quietly(self.stream.write, text)
        return len(text)

    def flush(self) -> None:
        self._quietly(self.stream.flush)

    def _quietly(self, call: Callable, *args: str) -> None:
        if not self.gone:
            try:
                call(*args)
            except BrokenPipeError:
                self.gone = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _reader_gone() -> bool:
    """True once nobody reads what the command prints (stdout was a pipe, now closed)."""
    return isinstance(sys.stdout, _Stdout) and sys.stdout.gone


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``microgd`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    A closed stdout (``microgd train ... --save m.json | head -2``) stops the printing, not the work: the
    files asked for are written, nothing is said on stderr, and the status is 141 (128 + SIGPIPE, as for a
    Unix tool stopped by a closed pipe) unless the command failed.
    """
    if sys.stdout is None:  # started with stdout closed (>&-): print() writes nothing and the work goes on
        return _run(argv)
    stdout = sys.stdout = _Stdout(sys.stdout)
    try:
        status = _run(argv)
        stdout.flush()
    finally:
        sys.stdout = stdout.stream
    if not stdout.gone:
        return status
    with contextlib.suppress(OSError, ValueError):  # what is still buffered goes nowhere, without a complaint
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.stream.fileno())
    return status or 141  # 128 + SIGPIPE


def _run(argv: Sequence[str] | None) -> int:
    """Parse ``argv``, check the command's destinations, run it: its status, or 2 and one line, or 130."""
    try:
        args = _parser().parse_args(_join_normalize(sys.argv[1:] if argv is None else argv))
    except SystemExit as done:  # --help, --version, or a usage mistake argparse has reported
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 2
    try:
        _check_destinations(args)
        return args.run(args)
    except KeyboardInterrupt:
        print("microgd: interrupted", file=sys.stderr)
        return 130
    except (UsageError, DataError, DestinationError, FormulaError, DomainError, RenderError, OSError) as error:
        print(f"microgd: error: {_one_line(error)}", file=sys.stderr)
        return 2
