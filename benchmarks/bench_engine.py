"""microgd beside hand-written Python floats, micrograd 0.1.0 and PyTorch (0-d float64 tensors), in one process.

    pip install -e ".[bench]"          # micrograd 0.1.0 and numpy; PyTorch is used when installed
    python benchmarks/bench_engine.py --repeat 9 [--baseline PATH_TO_ANOTHER_CHECKOUT]

Rows (each a median over ``--repeat`` runs; the engines of a row take turns run by run, in a new order every
repetition, so a drift in the machine's speed reaches them alike; garbage collector on unless the row says off):

(a) one training step of a 2-16-16-1 tanh MLP (linear output) on 64 points: forward, mean squared
    error, backward, SGD update. Columns: hand-written floats (the row's reference), microgd's
    ``nn.MLP`` on the eager engine, the same step as a tape (``trace`` once, then one call a step),
    the numpy-batched tape (the tape's lines on whole arrays), the fused batch (the tape's fused program: each
    layer one matrix product, SGD on arrays), micrograd 0.1.0, PyTorch 0-d tensors;
(b) the same step with micrograd's own ``nn`` code on each engine's Value (2n scalar nodes a neuron),
    garbage collector off: the per-op cost of the engines (reference: micrograd);
(c) per-sample time of the forward and backward of the step's loss at 10,000 samples: hand-written
    floats against the numpy-batched tape and the fused batch;
(d) backward of a 100,000-node chain; (e) bytes per graph node (tracemalloc, a mul/add/tanh chain).

micrograd 0.1.0 has no tanh: we add one in micrograd's own closure style, as its lecture does.
``--baseline PATH`` adds columns for another checkout of microgd to compare against (your changed copy against
an unchanged one, say), found at PATH: its eager engine in rows (a), (b) and (d), its tape in row (a); the goals
then also say whether this microgd lost any speed against it.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import json
import math
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable

POINTS, SIZES, CHAIN, LARGE = 64, [2, 16, 16, 1], 100_000, 10_000
OTHER, OTHER_TAPE = "other microgd", "other microgd tape"  # the columns of --baseline PATH
LR = 0.05


def dataset(n: int = POINTS, seed: int = 0) -> tuple[list[list[float]], list[float]]:
    rng = random.Random(seed)
    xs = [[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(n)]
    return xs, [1.0 if x0 * x1 > 0 else -1.0 for x0, x1 in xs]


def initial_weights(seed: int = 1) -> list[list[list[float]]]:
    """Per layer, per neuron, [w_1, ..., w_n, b]: the same start for every engine."""
    rng = random.Random(seed)
    return [[[rng.uniform(-1, 1) for _ in range(nin)] + [0.0] for _ in range(nout)]
            for nin, nout in itertools.pairwise(SIZES)]


# -- the engines of row (a) ------------------------------------------------------------------------------------

class HandWritten:
    """The step as plain Python floats, written the way a person would: loops over layers and neurons."""

    name = "hand-written floats"

    def __init__(self, xs, ys):
        self.W, self.xs, self.ys = initial_weights(), xs, ys

    def step(self) -> float:
        W, n = self.W, len(self.xs)
        grads = [[[0.0] * len(neuron) for neuron in layer] for layer in W]
        total = 0.0
        for x, y in zip(self.xs, self.ys):
            activations = [x]
            for li, layer in enumerate(W):
                a, out = activations[-1], []
                for neuron in layer:
                    s = neuron[-1]
                    for w, v in zip(neuron, a):
                        s += w * v
                    out.append(math.tanh(s) if li < len(W) - 1 else s)
                activations.append(out)
            prediction = activations[-1][0]
            total += (prediction - y) ** 2
            delta = [2.0 * (prediction - y) / n]  # dL/ds of the output neuron
            for li in range(len(W) - 1, -1, -1):
                a, back = activations[li], [0.0] * len(activations[li])
                for neuron, g, d in zip(W[li], grads[li], delta):
                    for k, v in enumerate(a):
                        g[k] += d * v
                        back[k] += d * neuron[k]
                    g[-1] += d
                delta = [b * (1.0 - t * t) for b, t in zip(back, a)]  # through the tanh of the layer below
        for layer, layer_grads in zip(W, grads):
            for neuron, g in zip(layer, layer_grads):
                for k in range(len(neuron)):
                    neuron[k] -= LR * g[k]
        return total / n


def load_microgd(path: str | None):
    """microgd from ``path`` (a checkout) under another module name, or the installed one."""
    if path is None:
        import microgd

        return microgd
    spec = importlib.util.spec_from_file_location(
        "microgd_other", f"{path}/microgd/__init__.py", submodule_search_locations=[f"{path}/microgd"])
    module = importlib.util.module_from_spec(spec)
    sys.modules["microgd_other"] = module
    spec.loader.exec_module(module)
    return module


class Eager:
    """microgd's nn.MLP on the eager engine."""

    def __init__(self, xs, ys, package=None, name="microgd eager"):
        package = package or load_microgd(None)
        nn = importlib.import_module(f"{package.__name__}.nn")
        self.name = name
        self.model = nn.MLP(SIZES[0], SIZES[1:], activations=["tanh", "tanh", "linear"], weights=initial_weights())
        self.params, self.xs, self.ys = self.model.parameters(), xs, ys

    def loss(self):
        return sum((self.model(x) - y) ** 2 for x, y in zip(self.xs, self.ys)) * (1.0 / len(self.xs))

    def step(self) -> float:
        loss = self.loss()
        for p in self.params:
            p.grad = 0.0
        loss.backward()
        for p in self.params:
            p.data -= LR * p.grad
        return loss.data


class Tape(Eager):
    """The same step traced once; each step is one call of the tape and the SGD update."""

    def __init__(self, xs, ys, package=None, name="microgd tape"):
        package = package or load_microgd(None)
        super().__init__(xs, ys, package, name=name)
        trace = importlib.import_module(f"{package.__name__}.tape").trace
        self.tape = trace(lambda xs, ys: sum((self.model(x) - y) ** 2 for x, y in zip(xs, ys)) * (1.0 / len(xs)),
                          xs, ys)

    def step(self) -> float:
        for p in self.params:
            p.grad = 0.0
        loss = self.tape(self.xs, self.ys)
        for p in self.params:
            p.data -= LR * p.grad
        return loss


class Batched(Eager):
    """A per-sample loss traced once, replayed on the whole batch with numpy."""

    def __init__(self, xs, ys):
        super().__init__(xs, ys, name="microgd numpy batch")
        import numpy

        from microgd.tape import trace

        scale = 1.0 / len(xs)
        self.tape = trace(lambda x, y: (self.model(x) - y) ** 2 * scale, xs[0], ys[0])
        self.X, self.Y = numpy.array(xs), numpy.array(ys)

    def step(self) -> float:
        for p in self.params:
            p.grad = 0.0
        loss = float(self.tape.batch(self.X, self.Y).sum())
        for p in self.params:
            p.data -= LR * p.grad
        return loss


class Fused(Batched):
    """The same per-sample loss, its tape's fused program (each layer one matrix product) on the whole batch,
    the parameters and SGD's state in numpy arrays."""

    def __init__(self, xs, ys):
        super().__init__(xs, ys)
        from microgd.optim import SGD

        self.name = "microgd fused batch"
        self.fused = self.tape.fused()
        self.state = SGD(self.params, lr=LR).arrays(self.tape.captured)

    def step(self) -> float:
        losses, grads = self.fused.run((self.X, self.Y), self.state.data)
        self.state.step(grads)
        return float(losses.sum())


def micrograd_modules():
    """micrograd 0.1.0's Value (with a tanh in its own closure style) and nn."""
    import micrograd.nn as mnn
    from micrograd.engine import Value as MValue

    if not hasattr(MValue, "tanh"):
        def tanh(self):
            t = math.tanh(self.data)
            out = MValue(t, (self,), "tanh")

            def _backward():
                self.grad += (1 - t * t) * out.grad

            out._backward = _backward
            return out

        MValue.tanh = tanh
    return MValue, mnn


def karpathy_mlp(Value, mnn):
    """micrograd's own nn.MLP, its Values made by ``Value``, with tanh neurons and our initial weights."""

    class TanhNeuron(mnn.Neuron):
        def __call__(self, x):
            act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
            return act.tanh() if self.nonlin else act

    original = mnn.Value
    mnn.Value = Value  # micrograd's nn makes its Values through this name
    try:
        model = mnn.MLP(SIZES[0], SIZES[1:])
    finally:
        mnn.Value = original
    for layer, layer_weights in zip(model.layers, initial_weights()):
        for neuron, row in zip(layer.neurons, layer_weights):
            neuron.__class__ = TanhNeuron
            for w, x in zip(neuron.w, row):
                w.data = x
            neuron.b.data = row[-1]
    return model


class KarpathyNN(Eager):
    """micrograd's nn code (scalar + and * nodes) on a given Value class."""

    def __init__(self, xs, ys, Value, name):
        _, mnn = micrograd_modules()
        self.name, self.xs, self.ys = name, xs, ys
        self.model = karpathy_mlp(Value, mnn)
        self.params = self.model.parameters()


class Torch(Eager):
    """micrograd's MLP written with 0-d float64 tensors: one scalar op per graph node."""

    def __init__(self, xs, ys):
        import torch

        self.torch, self.xs, self.ys = torch, xs, ys
        self.name = f"torch {torch.__version__.split('+')[0]} (0-d)"
        leaf = lambda x: torch.tensor(x, dtype=torch.float64, requires_grad=True)  # noqa: E731
        self.layers = [[([leaf(w) for w in row[:-1]], leaf(row[-1])) for row in layer] for layer in initial_weights()]
        self.params = [p for layer in self.layers for w, b in layer for p in (*w, b)]

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            outs = [sum((wi * xi for wi, xi in zip(w, x)), b) for w, b in layer]
            x = [o.tanh() for o in outs] if i < len(self.layers) - 1 else outs
        return x[0]

    def step(self) -> float:
        loss = sum((self.forward(x) - y) ** 2 for x, y in zip(self.xs, self.ys)) * (1.0 / len(self.xs))
        for p in self.params:
            p.grad = None
        loss.backward()
        with self.torch.no_grad():
            for p in self.params:
                p -= LR * p.grad
        return loss.item()


# -- measuring ----------------------------------------------------------------------------------------------------

MIN_RUN = 0.02
"""Seconds each timed run lasts at least: a run shorter than that (a fused step takes 0.1 ms) repeats its work
often enough to fill it, and its time is divided by the repetitions, so a timer's resolution and the first
call's cold caches do not decide the figure."""


def interleaved_medians(runs: dict[str, Callable[[], object]], repeat: int, collect: bool = True) -> dict[str, float]:
    """Median seconds of one call of each run, the runs taking turns after one warm-up each, in a new order every
    repetition (seeded), so that no engine always runs after the same one (a fixed place in the turn moved an
    engine's figure by up to 4%). Each timed run starts after a full collection, so no engine pays for the
    garbage another one left behind, and calls its run as often as the warm-up says fills :data:`MIN_RUN`."""
    calls = {}
    for name, run in runs.items():
        start = time.perf_counter()
        run()
        calls[name] = max(1, math.ceil(MIN_RUN / max(time.perf_counter() - start, 1e-9)))
    times: dict[str, list[float]] = {name: [] for name in runs}
    rounds = random.Random(0)
    try:
        for _ in range(repeat):
            for name in rounds.sample(list(runs), len(runs)):
                run, n = runs[name], calls[name]
                gc.collect()
                if not collect:
                    gc.disable()
                start = time.perf_counter()
                for _ in range(n):
                    run()
                times[name].append((time.perf_counter() - start) / n)
                gc.enable()
    finally:
        gc.enable()
    return {name: statistics.median(t) for name, t in times.items()}


def optional(make: Callable[[], object], what: str) -> list:
    try:
        return [make()]
    except ImportError as missing:
        print(f"({what} not installed: {missing.name}; its column is left out)", file=sys.stderr)
        return []


def row_a(repeat: int, other: str | None, collect: bool) -> dict[str, float]:
    xs, ys = dataset()
    engines = [HandWritten(xs, ys), Eager(xs, ys), Tape(xs, ys), *optional(lambda: Batched(xs, ys), "numpy"),
               *optional(lambda: Fused(xs, ys), "numpy")]
    if other is not None:
        package = load_microgd(other)
        engines += [Eager(xs, ys, package, name=OTHER), Tape(xs, ys, package, name=OTHER_TAPE)]
    engines += optional(lambda: KarpathyNN(xs, ys, micrograd_modules()[0], "micrograd 0.1.0"), "micrograd")
    engines += optional(lambda: Torch(xs, ys), "torch")
    return interleaved_medians({e.name: e.step for e in engines}, repeat, collect)


def row_b(repeat: int, other: str | None) -> dict[str, float]:
    from microgd import Value

    xs, ys = dataset()
    engines = [KarpathyNN(xs, ys, Value, "microgd eager")]
    if other is not None:
        engines.append(KarpathyNN(xs, ys, load_microgd(other).Value, OTHER))
    engines += optional(lambda: KarpathyNN(xs, ys, micrograd_modules()[0], "micrograd 0.1.0"), "micrograd")
    return interleaved_medians({e.name: e.step for e in engines}, repeat, collect=False)


def row_c(repeat: int) -> dict[str, float]:
    """Per-sample seconds at LARGE samples (one pass of forward and backward of the loss, no update)."""
    xs, ys = dataset(LARGE)
    hand, batched, fused = HandWritten(xs, ys), Batched(xs[:POINTS], ys[:POINTS]), Fused(xs[:POINTS], ys[:POINTS])
    import numpy

    X, Y = numpy.array(xs), numpy.array(ys)
    params = fused.state.data
    runs = {hand.name: lambda: hand.step(), batched.name: lambda: batched.tape.batch(X, Y),
            fused.name: lambda: fused.fused.run((X, Y), params)}
    return {name: t / LARGE for name, t in interleaved_medians(runs, max(3, repeat // 3)).items()}


def row_d(repeat: int, other: str | None) -> dict[str, float | str]:
    from microgd import Value

    engines: dict[str, object] = {"microgd eager": Value}
    if other is not None:
        engines[OTHER] = load_microgd(other).Value
    for cls in optional(lambda: micrograd_modules()[0], "micrograd"):
        engines["micrograd 0.1.0"] = cls
    figures: dict[str, float | str] = {}
    for name, V in engines.items():
        def backward(V=V) -> float:
            x = V(1.0)
            y = x
            for _ in range(CHAIN):
                y = y + x
            start = time.perf_counter()
            y.backward()
            return time.perf_counter() - start
        try:
            figures[name] = statistics.median(backward() for _ in range(repeat))
        except RecursionError:
            figures[name] = "RecursionError"
    return figures


def row_e() -> dict[str, float]:
    from microgd import Value

    engines: dict[str, object] = {"microgd eager": Value}
    for cls in optional(lambda: micrograd_modules()[0], "micrograd"):
        engines["micrograd 0.1.0"] = cls
    figures = {}
    for name, V in engines.items():
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        x = V(0.5)
        y = x
        for _ in range(10_000):
            y = (y * x + x).tanh()
        figures[name] = (tracemalloc.get_traced_memory()[0] - before) / 30_000
        tracemalloc.stop()
        del x, y
    return figures


def ratio(figure: float, reference: float | None) -> str:
    if reference is None or reference == figure:
        return " (reference)" if reference == figure else ""
    return f" ({reference / figure:.2f}x faster)" if figure < reference else f" ({figure / reference:.2f}x slower)"


ROWS = {  # name: (title, how to measure, the row's reference column, scale, unit)
    "a": ("(a) MLP step 2-16-16-1, 64 points", lambda a: row_a(a.repeat, a.other, True), "hand-written floats",
          1e3, "ms"),
    "a-gc-off": ("(a) the same, garbage collector off", lambda a: row_a(a.repeat, a.other, False),
                 "hand-written floats", 1e3, "ms"),
    "b": ("(b) micrograd's nn on each Value, GC off", lambda a: row_b(a.repeat, a.other), "micrograd 0.1.0",
          1e3, "ms"),
    "c": (f"(c) per sample at {LARGE:,} samples", lambda a: row_c(a.repeat), "hand-written floats", 1e6, "µs"),
    "d": (f"(d) backward, {CHAIN:,}-node chain", lambda a: row_d(a.repeat, a.other), "micrograd 0.1.0", 1e3, "ms"),
    "e": ("(e) bytes per graph node", lambda a: row_e(), "micrograd 0.1.0", 1, "B"),
}


def measure_row(name: str, args: argparse.Namespace) -> dict:
    """One row's figures, measured in a fresh process: the engines of a row share one process (they take
    turns), rows do not, so no row runs on a heap another row left behind."""
    command = [sys.executable, __file__, "--row", name, "--repeat", str(args.repeat)]
    if args.other:
        command += ["--baseline", args.other]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"row {name} failed:\n{done.stderr}")
    sys.stderr.write(done.stderr)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="repetitions per figure (median reported)")
    parser.add_argument("--baseline", dest="other", metavar="PATH",
                        help="another checkout of microgd to compare against, added as columns")
    parser.add_argument("--row", choices=ROWS, help=argparse.SUPPRESS)  # one row, as JSON (what main runs)
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    if args.row:
        print(json.dumps(ROWS[args.row][1](args)))
        return
    figures = {name: measure_row(name, args) for name in ROWS}
    for name, (title, _, base, scale, unit) in ROWS.items():
        print(title)
        reference = figures[name].get(base)
        reference = reference if isinstance(reference, float) else None
        for engine, figure in figures[name].items():
            if isinstance(figure, str):
                print(f"    {engine:24} {figure}")
            elif unit == "B":
                share = f" ({figure / reference:.2f}x)" if reference and engine != base else ""
                print(f"    {engine:24} {figure:,.1f} {unit}{share}")
            else:
                print(f"    {engine:24} {figure * scale:,.2f} {unit}{ratio(figure, reference)}")
    print(f"\nmedians of {args.repeat} runs taking turns; each row in a fresh process; ratios against the row's "
          "reference")
    print("\ngoals:")
    for line in goals(figures, args.other):
        print(f"    {line}")


SAME_SPEED = 1.05
"""A figure "stays where it is" within this ratio of the other checkout's (the machine's run-to-run noise)."""


def goals(figures: dict[str, dict], other: str | None) -> list[str]:
    """Each speed goal with this run's figure: met or missed. With ``--baseline`` (another checkout to compare
    against), also that the eager engine and the tape lost no speed against it."""
    hand, found = "hand-written floats", []
    step, step_gc_off, per_op, large, chain = (figures[k] for k in ("a", "a-gc-off", "b", "c", "d"))
    checks = [
        ("tape step <= 1.2x hand-written", step, "microgd tape", hand, lambda r: r <= 1.2, "x hand-written"),
        ("numpy batch at 64 samples >= 2x faster than hand-written", step, "microgd numpy batch", hand,
         lambda r: 1 / r >= 2.0, None),
        (f"numpy batch >= 30x faster per sample at {LARGE:,}", large, "microgd numpy batch", hand,
         lambda r: 1 / r >= 30.0, None),
        ("fused batch at 64 samples >= 5x faster than the numpy batch", step, "microgd fused batch",
         "microgd numpy batch", lambda r: 1 / r >= 5.0, None),
        (f"fused batch >= 5x faster than the numpy batch per sample at {LARGE:,}", large, "microgd fused batch",
         "microgd numpy batch", lambda r: 1 / r >= 5.0, None),
        ("eager per op >= 1.5x faster than micrograd, GC off", per_op, "microgd eager", "micrograd 0.1.0",
         lambda r: 1 / r >= 1.5, None),
    ]
    if other is not None:
        same, theirs = (lambda r: r <= SAME_SPEED), "x the other's"
        checks += [
            ("nn.MLP eager step no slower than the other checkout's", step, "microgd eager", OTHER, same, theirs),
            ("the same, GC off", step_gc_off, "microgd eager", OTHER, same, theirs),
            ("tape step no slower than the other checkout's", step, "microgd tape", OTHER_TAPE, same, theirs),
            ("the same, GC off", step_gc_off, "microgd tape", OTHER_TAPE, same, theirs),
            ("eager per op no slower than the other checkout's, GC off", per_op, "microgd eager", OTHER, same,
             theirs),
            (f"backward of the {CHAIN:,}-node chain no slower than the other checkout's", chain, "microgd eager",
             OTHER, same, theirs),
        ]
    for what, row, name, against, met, unit in checks:
        if not isinstance(row.get(name), float) or not isinstance(row.get(against), float):
            found.append(f"{what}: not measured ({name if name not in row else against} missing)")
            continue
        r = row[name] / row[against]
        shown = f"{r:.2f}{unit}" if unit else f"{1 / r:.2f}x faster"
        found.append(f"{what}: {shown}, {'met' if met(r) else 'MISSED'}")
    return found


if __name__ == "__main__":
    main()
