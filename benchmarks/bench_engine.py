"""microgd beside micrograd 0.1.0 and PyTorch (0-d float64 tensors), side by side in one process.

    pip install -e ".[bench]"          # micrograd 0.1.0; PyTorch is used when installed
    python benchmarks/bench_engine.py  # --repeat 9 for tighter medians

(a) one training step of a 2-16-16-1 tanh MLP (linear output) on 64 points: forward, mean squared
    error, backward, SGD update; (b) backward of a 100,000-node chain; (c) bytes per graph node
    (tracemalloc, a chain of mul/add/tanh) and bytes of the whole step-(a) graph.
Times are medians over repetitions with Python's defaults (garbage collector on). Ratios are against
micrograd: for times how many times faster, for bytes the fraction of micrograd's.
micrograd 0.1.0 has no tanh: we add one in micrograd's own closure style, as its lecture does.
"""

import argparse
import gc
import math
import random
import statistics
import sys
import time
import tracemalloc

from microgd import Value
from microgd.nn import MLP

POINTS, SIZES, CHAIN = 64, [2, 16, 16, 1], 100_000


def dataset(seed=0):
    rng = random.Random(seed)
    xs = [[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(POINTS)]
    return xs, [1.0 if x0 * x1 > 0 else -1.0 for x0, x1 in xs]


class Engine:
    """One engine's way to build an MLP, a leaf and a loss, so every benchmark runs the same code."""

    name = "?"

    def step(self, model, xs, ys, lr=0.05):
        loss = sum((model(x) - y) ** 2 for x, y in zip(xs, ys)) * (1.0 / len(xs))
        self.zero_grad(model)
        loss.backward()
        self.update(model, lr)
        return loss

    def zero_grad(self, model):
        model.zero_grad()

    def update(self, model, lr):
        for p in model.parameters():
            p.data -= lr * p.grad


class Microgd(Engine):
    name = "microgd"

    def leaf(self, x):
        return Value(x)

    def mlp(self, rng):
        return MLP(SIZES[0], SIZES[1:], activations=["tanh", "tanh", "linear"], rng=rng)

class Micrograd(Engine):
    name = "micrograd 0.1.0"

    def __init__(self):
        from micrograd import nn
        from micrograd.engine import Value as MValue

        def tanh(self):  # micrograd's closure style
            t = math.tanh(self.data)
            out = MValue(t, (self,), "tanh")

            def _backward():
                self.grad += (1 - t * t) * out.grad

            out._backward = _backward
            return out

        MValue.tanh = tanh

        class TanhNeuron(nn.Neuron):
            def __call__(self, x):
                act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
                return act.tanh() if self.nonlin else act

        self.value, self.nn, self.neuron = MValue, nn, TanhNeuron

    def leaf(self, x):
        return self.value(x)

    def mlp(self, rng):
        state = random.getstate()
        random.seed(rng.random())  # micrograd draws from the global generator
        model = self.nn.MLP(SIZES[0], SIZES[1:])
        random.setstate(state)
        for layer in model.layers:
            for neuron in layer.neurons:
                neuron.__class__ = self.neuron  # the same neuron, with tanh for its nonlinearity
        return model

class Torch(Engine):
    def __init__(self):
        import torch

        self.torch = torch
        self.name = f"torch {torch.__version__.split('+')[0]} (0-d)"

    def leaf(self, x):
        return self.torch.tensor(x, dtype=self.torch.float64, requires_grad=True)

    def mlp(self, rng):
        layers = []
        for i, (nin, nout) in enumerate(zip(SIZES, SIZES[1:])):
            neurons = [([self.leaf(rng.uniform(-1, 1)) for _ in range(nin)], self.leaf(0.0)) for _ in range(nout)]
            layers.append((neurons, i < len(SIZES) - 2))
        return TorchMLP(layers)

    def zero_grad(self, model):
        for p in model.parameters():
            p.grad = None

    def update(self, model, lr):
        with self.torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad


class TorchMLP:
    """micrograd's MLP, written with 0-d tensors: one scalar op per graph node."""

    def __init__(self, layers):
        self.layers = layers

    def __call__(self, x):
        for neurons, nonlinear in self.layers:
            outs = []
            for w, b in neurons:
                act = sum((wi * xi for wi, xi in zip(w, x)), b)
                outs.append(act.tanh() if nonlinear else act)
            x = outs
        return x[0]

    def parameters(self):
        return [p for neurons, _ in self.layers for w, b in neurons for p in (*w, b)]


def median_seconds(run, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_step(engine, repeat):
    xs, ys = dataset()
    model = engine.mlp(random.Random(1))
    engine.step(model, xs, ys)  # warm-up
    return median_seconds(lambda: engine.step(model, xs, ys), repeat)


def bench_step_without_gc(engine, repeat):
    """(a) again with the cyclic garbage collector off: what is left when reference cycles cost nothing."""
    gc.disable()
    try:
        return bench_step(engine, repeat)
    finally:
        gc.enable()


def bench_chain(engine, repeat):
    def build():
        x = engine.leaf(1.0)
        y = x
        for _ in range(CHAIN):
            y = y + x
        return y

    def backward():
        y = build()
        start = time.perf_counter()
        y.backward()
        return time.perf_counter() - start

    try:
        return statistics.median(backward() for _ in range(repeat))
    except RecursionError:
        return "RecursionError"


def traced_bytes(build):
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    return used


def bench_node_bytes(engine):
    steps = 10_000  # three nodes a step: mul, add, tanh

    def build():
        x = engine.leaf(0.5)
        y = x
        for _ in range(steps):
            y = (y * x + x).tanh()
        return y

    return traced_bytes(build) / (3 * steps)


def bench_graph_bytes(engine):
    xs, ys = dataset()
    model = engine.mlp(random.Random(1))
    return traced_bytes(lambda: sum((model(x) - y) ** 2 for x, y in zip(xs, ys)))


def available_engines():
    engines = [Microgd()]
    for make in (Micrograd, Torch):
        try:
            engines.append(make())
        except ImportError as missing:
            print(f"({make.__name__} not installed: {missing.name}; its column is left out)", file=sys.stderr)
    return engines


def speedup(baseline, figure):
    """How many times faster (or slower) than micrograd."""
    return f" ({baseline / figure:.1f}x faster)" if figure <= baseline else f" ({figure / baseline:.1f}x slower)"


def fraction(baseline, figure):
    """this engine's bytes over micrograd's: below 1 is smaller."""
    return f" ({figure / baseline:.2f}x)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="repetitions per figure (median reported)")
    args = parser.parse_args(argv)
    engines = available_engines()
    torch = next((e for e in engines if isinstance(e, Torch)), None)
    if torch is not None:
        torch.torch.set_num_threads(1)

    rows = [
        ("(a) MLP step 2-16-16-1, 64 points", lambda e: bench_step(e, args.repeat), 1e3, "ms", speedup),
        ("(a) the same, garbage collector off", lambda e: bench_step_without_gc(e, args.repeat), 1e3, "ms", speedup),
        (f"(b) backward, {CHAIN:,}-node chain", lambda e: bench_chain(e, args.repeat), 1e3, "ms", speedup),
        ("(c) bytes per graph node", bench_node_bytes, 1, "B", fraction),
        ("(c) bytes of the step-(a) graph", bench_graph_bytes, 1e-6, "MB", fraction),
    ]
    header = ["benchmark", *(e.name for e in engines)]
    table = []
    for title, measure, scale, unit, compare in rows:
        figures = {}
        for engine in engines:
            untraced = isinstance(engine, Torch) and unit in ("B", "MB")
            figures[engine.name] = "n/a (C++ memory)" if untraced else measure(engine)
        baseline = figures.get(Micrograd.name)
        cells = []
        for engine in engines:
            value = figures[engine.name]
            if isinstance(value, str):
                cells.append(value)
                continue
            text = f"{value * scale:,.1f} {unit}"
            if engine.name == Micrograd.name:
                text += " (baseline)"
            elif isinstance(baseline, (int, float)):
                text += compare(baseline, value)
            cells.append(text)
        table.append([title, *cells])
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    print(f"\nmedians of {args.repeat} runs, garbage collector on unless said; ratios against micrograd 0.1.0")


if __name__ == "__main__":
    main()
