"""microgd's engines beside hand-written Python floats and PyTorch on two networks' training steps, in one process.

    pip install -e ".[bench,torch]"          # micrograd, numpy, PyTorch; scikit-learn for row (h)
    python benchmarks/bench_fused.py --repeat 9

Rows (each figure a median over ``--repeat`` runs, the engines taking turns in a new order every repetition;
garbage collector on unless the row says off):

(f) one Adam step of the digits network (64-32-10, relu hidden units, ten linear scores, softmax cross-entropy)
    on a batch of 32 images: hand-written floats (the row's reference), microgd's eager engine, the tape replayed
    sample by sample, the numpy batch (the scalar tape's lines on whole arrays), the fused batch (layers as
    matrix products, parameters and Adam's state in arrays) and PyTorch (``to_torch()``'s module, float64,
    one thread);
(g) one SGD step of a 2-16-16-1 tanh network on 64 points (mean squared error), the same columns;
(h) the digits demo's whole training (20 epochs, batches of 32, Adam at 0.01, scikit-learn's 1,797 images,
    a fifth held out): ``fit(engine="fused")`` against PyTorch training the same network from ``to_torch()``
    with the same batches, in seconds, with both held-out accuracies.

PyTorch runs on one thread in float64, as microgd computes. Where a GPU is available, row (f) has a column for
the fused batch on CUDA tensors.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time

from bench_engine import interleaved_medians  # the same turn-taking medians as the engine benchmark

DIGITS, BATCH, LR, EPOCHS = (64, 32, 10), 32, 0.01, 20
SMALL, POINTS, SMALL_LR = (2, 16, 16, 1), 64, 0.05


# -- data and models -----------------------------------------------------------------------------------------

def digit_like_batch(seed: int = 0) -> tuple[list[list[float]], list[int]]:
    """32 rows of 64 pixels in [0, 1] with labels 0..9: the digits step's shapes (the timing does not depend on
    the pixels)."""
    rng = random.Random(seed)
    return [[rng.randrange(17) / 16.0 for _ in range(64)] for _ in range(BATCH)], [i % 10 for i in range(BATCH)]


def small_batch(seed: int = 0) -> tuple[list[list[float]], list[float]]:
    rng = random.Random(seed)
    xs = [[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(POINTS)]
    return xs, [1.0 if a * b > 0 else -1.0 for a, b in xs]


def digits_model(seed: int = 0):
    from microgd.nn import MLP

    return MLP(64, [32, 10], activations=["relu", "linear"], init="he", seed=seed)


def small_model(seed: int = 0):
    from microgd.nn import MLP

    return MLP(2, [16, 16, 1], activations=["tanh", "tanh", "linear"], seed=seed)


def weights_of(model) -> list[list[list[float]]]:
    """Per layer, per unit, [w_1, ..., w_n, b] as floats: every engine starts from the same numbers."""
    return [[[w.data for w in unit.w] + [unit.b.data] for unit in layer.neurons] for layer in model.layers]


# -- hand-written floats -------------------------------------------------------------------------------------

class HandWritten:
    """The step in plain Python floats, written as a person would: loops over layers and units, backward by hand,
    then the optimizer's update per number."""

    name = "hand-written floats"

    def __init__(self, model, xs, ys, digits: bool):
        self.W, self.xs, self.ys, self.digits = weights_of(model), xs, ys, digits
        self.m = [[[0.0] * len(u) for u in layer] for layer in self.W]
        self.v = [[[0.0] * len(u) for u in layer] for layer in self.W]
        self.t = 0

    def forward(self, x: list[float]) -> list[list[float]]:
        activations = [x]
        last = len(self.W) - 1
        for li, layer in enumerate(self.W):
            a, out = activations[-1], []
            for unit in layer:
                s = unit[-1]
                for w, v in zip(unit, a):
                    s += w * v
                out.append(s if li == last else (s if s > 0 else 0.0) if self.digits else math.tanh(s))
            activations.append(out)
        return activations

    def step(self) -> float:
        W, n = self.W, len(self.xs)
        grads = [[[0.0] * len(unit) for unit in layer] for layer in W]
        total = 0.0
        for x, y in zip(self.xs, self.ys):
            activations = self.forward(x)
            scores = activations[-1]
            if self.digits:  # softmax cross-entropy: d loss / d score_k = softmax_k - [k == y]
                top = max(scores)
                exps = [math.exp(s - top) for s in scores]
                z = sum(exps)
                total += math.log(z) + top - scores[y]
                delta = [e / z - (k == y) for k, e in enumerate(exps)]
            else:
                total += (scores[0] - y) ** 2
                delta = [2.0 * (scores[0] - y)]
            for li in range(len(W) - 1, -1, -1):
                a, back = activations[li], [0.0] * len(activations[li])
                for unit, g, d in zip(W[li], grads[li], delta):
                    for k, v in enumerate(a):
                        g[k] += d * v
                        back[k] += d * unit[k]
                    g[-1] += d
                if self.digits:  # through the relu of the layer below
                    delta = [b if t > 0 else 0.0 for b, t in zip(back, a)]
                else:
                    delta = [b * (1.0 - t * t) for b, t in zip(back, a)]
        self.update(grads, n)
        return total / n

    def update(self, grads, n: int) -> None:
        if not self.digits:
            for layer, layer_grads in zip(self.W, grads):
                for unit, g in zip(layer, layer_grads):
                    for k in range(len(unit)):
                        unit[k] -= SMALL_LR * g[k] / n
            return
        self.t += 1
        c1, c2 = 1.0 - 0.9**self.t, 1.0 - 0.999**self.t
        for layer, layer_grads, ms, vs in zip(self.W, grads, self.m, self.v):
            for unit, g, m, v in zip(layer, layer_grads, ms, vs):
                for k in range(len(unit)):
                    gk = g[k] / n
                    m[k] = 0.9 * m[k] + 0.1 * gk
                    v[k] = 0.999 * v[k] + 0.001 * gk * gk
                    unit[k] -= LR * (m[k] / c1) / (math.sqrt(v[k] / c2) + 1e-8)


# -- microgd ---------------------------------------------------------------------------------------------------

class MicrogdStep:
    """One training step of a microgd model on one engine: "eager", "tape", "batch" or "fused" (on numpy, or on
    torch tensors of a device)."""

    def __init__(self, model, xs, ys, digits: bool, engine: str, device: str | None = None):
        from microgd.losses import cross_entropy, squared_error
        from microgd.optim import SGD, Adam
        from microgd.tape import trace

        self.name = f"microgd {engine}" + (f" ({device})" if device else "")
        self.model, self.xs, self.ys, self.engine = model, xs, ys, engine
        self.params = model.parameters()
        self.loss = cross_entropy if digits else squared_error
        self.optimizer = Adam(self.params, lr=LR) if digits else SGD(self.params, lr=SMALL_LR)
        if engine == "eager":
            return
        self.tape = trace(lambda x, y: self.loss(model(x), y), xs[0], ys[0])
        if engine in ("batch", "fused"):
            import numpy

            self.X, self.Y = numpy.array(xs, dtype=float), numpy.array(ys, dtype=float)
        if engine == "fused":
            self.fused = self.tape.fused()
            self.state = self.optimizer.arrays(self.tape.captured)
            if device is not None:
                import torch

                self.X, self.Y = (torch.as_tensor(a, device=device) for a in (self.X, self.Y))

    def step(self) -> float:
        n = len(self.xs)
        if self.engine == "fused":
            losses, grads = self.fused.run((self.X, self.Y), self.state.data)
            self.state.step(grads / n)
            return float(losses.sum()) / n
        self.optimizer.zero_grad()
        if self.engine == "eager":
            total = 0.0
            for x, y in zip(self.xs, self.ys):
                loss = self.loss(self.model(x), y)
                loss.backward()
                total += loss.data
        elif self.engine == "tape":
            total = sum(self.tape.each(zip(self.xs, self.ys)))
        else:
            total = float(self.tape.batch(self.X, self.Y, in_order=True).sum())
        for p in self.params:
            p.grad /= n
        self.optimizer.step()
        return total / n


# -- PyTorch ---------------------------------------------------------------------------------------------------

class TorchStep:
    """The same network as ``to_torch()`` makes it (float64), the same loss and optimizer, one step a call."""

    def __init__(self, model, xs, ys, digits: bool, device: str = "cpu"):
        import torch

        self.torch = torch
        self.name = f"PyTorch {torch.__version__.split('+')[0]}" + (f" ({device})" if device != "cpu" else "")
        self.module = model.to_torch().to(device)
        self.X = torch.tensor(xs, dtype=torch.float64, device=device)
        if digits:
            self.Y = torch.tensor(ys, dtype=torch.long, device=device)
            self.loss = torch.nn.CrossEntropyLoss()
            self.optimizer = torch.optim.Adam(self.module.parameters(), lr=LR)
        else:
            self.Y = torch.tensor(ys, dtype=torch.float64, device=device)[:, None]
            self.loss = torch.nn.MSELoss()
            self.optimizer = torch.optim.SGD(self.module.parameters(), lr=SMALL_LR)

    def step(self) -> float:
        self.optimizer.zero_grad()
        loss = self.loss(self.module(self.X), self.Y)
        loss.backward()
        self.optimizer.step()
        return loss.item()


# -- rows --------------------------------------------------------------------------------------------------------

def engines_for(digits: bool) -> list:
    """Every engine of a step row, each with its own copy of the same initial network."""
    xs, ys = digit_like_batch() if digits else small_batch()
    make = digits_model if digits else small_model
    engines = [HandWritten(make(), xs, ys, digits)]
    engines += [MicrogdStep(make(), xs, ys, digits, engine) for engine in ("eager", "tape", "batch", "fused")]
    try:
        import torch
    except ImportError:
        print("(PyTorch not installed: its columns are left out)", file=sys.stderr)
        return engines
    engines.append(TorchStep(make(), xs, ys, digits))
    if torch.cuda.is_available():
        engines += [MicrogdStep(make(), xs, ys, digits, "fused", device="cuda"), TorchStep(make(), xs, ys, digits,
                                                                                         device="cuda")]
    return engines


def step_row(digits: bool, repeat: int, collect: bool) -> dict[str, float]:
    return interleaved_medians({e.name: e.step for e in engines_for(digits)}, repeat, collect)


def training_row() -> dict[str, float | str]:
    """The digits demo's training: seconds and held-out accuracy, microgd's fused fit against PyTorch."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from microgd import no_grad
    from microgd.losses import cross_entropy
    from microgd.optim import Adam
    from microgd.train import fit

    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split((digits.data / 16.0).tolist(), digits.target.tolist(),
                                                        test_size=0.2, random_state=0, stratify=digits.target)
    model = digits_model()
    module = model.to_torch()
    start = time.perf_counter()
    fit(model, X_train, y_train, loss=cross_entropy, optimizer=Adam(model.parameters(), lr=LR), epochs=EPOCHS,
        batch_size=BATCH, seed=0, verbose=False, engine="fused")
    ours = time.perf_counter() - start
    with no_grad():
        right = sum(max(range(10), key=lambda k: scores[k].data) == t
                    for scores, t in ((model(x), t) for x, t in zip(X_test, y_test)))

    X, Y = torch.tensor(X_train, dtype=torch.float64), torch.tensor(y_train)
    optimizer, loss = torch.optim.Adam(module.parameters(), lr=LR), torch.nn.CrossEntropyLoss()
    order = list(range(len(X_train)))
    rng = random.Random(0)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        rng.shuffle(order)
        for s in range(0, len(order), BATCH):
            batch = torch.tensor(order[s:s + BATCH])
            optimizer.zero_grad()
            loss(module(X[batch]), Y[batch]).backward()
            optimizer.step()
    theirs = time.perf_counter() - start
    with torch.no_grad():
        torch_right = int((module(torch.tensor(X_test, dtype=torch.float64)).argmax(1) == torch.tensor(y_test)).sum())
    return {"microgd fit(engine='fused')": ours, "PyTorch": theirs,
            "accuracy": f"microgd {right / len(y_test):.3f}, PyTorch {torch_right / len(y_test):.3f} held out"}


def ratio(figure: float, reference: float) -> str:
    if figure == reference:
        return " (reference)"
    return f" ({reference / figure:.2f}x faster)" if figure < reference else f" ({figure / reference:.2f}x slower)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="repetitions per figure (median reported)")
    parser.add_argument("--skip-training", action="store_true", help="leave out row (h), the whole digits training")
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    rows: list[tuple[str, dict, str]] = [
        ("(f) digits step: 64-32-10, 32 images, Adam", step_row(True, args.repeat, True), "ms"),
        ("(f) the same, garbage collector off", step_row(True, args.repeat, False), "ms"),
        ("(g) 2-16-16-1 step: 64 points, SGD", step_row(False, args.repeat, True), "ms"),
        ("(g) the same, garbage collector off", step_row(False, args.repeat, False), "ms"),
    ]
    for title, figures, unit in rows:
        print(title)
        reference = figures[HandWritten.name]
        for engine, seconds in figures.items():
            print(f"    {engine:28} {seconds * 1e3:9.3f} {unit}{ratio(seconds, reference)}")
    if not args.skip_training:
        figures = training_row()
        print(f"(h) digits training, {EPOCHS} epochs of batches of {BATCH}")
        torch_seconds = figures["PyTorch"]
        for engine, seconds in figures.items():
            if isinstance(seconds, float):
                print(f"    {engine:28} {seconds:9.2f} s{ratio(seconds, torch_seconds)}")
        print(f"    {figures['accuracy']}")
    print(f"\nmedians of {args.repeat} runs taking turns; ratios against the row's reference (hand-written floats; "
          "PyTorch in row h)")


if __name__ == "__main__":
    main()
