"""A two-moons classifier: a 2-8-8-1 MLP (tanh hidden layers, sigmoid output) trained with Adam on
binary cross-entropy, then its decision boundary drawn over the points.

    python demos/two_moons.py [--out DIR] [--epochs N] [--seed N]

Prints the mean loss at ten checkpoints and the training accuracy; writes DIR/two_moons.png
(default ./microgd-out; needs matplotlib: pip install "microgd[plot]").
MICROGD_DEMO_FAST=1 trains for 40 epochs instead of 100 (smoke tests).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from microgd import no_grad
from microgd.data import two_moons
from microgd.losses import binary_cross_entropy
from microgd.nn import MLP
from microgd.optim import Adam
from microgd.plot import plot_decision_boundary
from microgd.train import fit

EPOCHS = 40 if os.environ.get("MICROGD_DEMO_FAST") == "1" else 100
POINTS, NOISE = 100, 0.1
LR, BATCH = 0.05, 10
CHECKPOINTS = 10


def accuracy(model: MLP, X: list, y: list) -> int:
    """How many points the model puts on the right side of 0.5."""
    with no_grad():
        return sum((model(x).data > 0.5) == (t == 1.0) for x, t in zip(X, y))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="microgd-out", metavar="DIR", help="folder for two_moons.png "
                        "(default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, metavar="N", help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and shuffling (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs {args.epochs}: train for at least 1 epoch")

    X, y = two_moons(POINTS, noise=NOISE, seed=0)
    model = MLP(2, [8, 8, 1], activations=["tanh", "tanh", "sigmoid"], init="xavier", seed=args.seed)
    print(f"Two moons: {POINTS} points, noise {NOISE}; a 2-8-8-1 MLP ({', '.join(model.activations)}), "
          f"{len(model.parameters())} parameters, xavier init")
    print(f"Adam, learning rate {LR}, batches of {BATCH}, binary cross-entropy, {args.epochs} epochs")
    history = fit(model, X, y, loss=binary_cross_entropy, optimizer=Adam(model.parameters(), lr=LR),
                  epochs=args.epochs, batch_size=BATCH, seed=args.seed)
    if history.interrupted:
        sys.exit(130)
    every = max(1, args.epochs // CHECKPOINTS)
    for epoch in sorted({1, *range(every, args.epochs + 1, every), args.epochs}):
        print(f"  epoch {epoch:4d}  mean loss {history[epoch - 1]:.6f}")
    right = accuracy(model, X, y)
    print(f"training accuracy: {right / len(y):.2f} ({right} of {len(y)} points on the right side of 0.5)")

    try:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "two_moons.png"
        title = f"Two moons, 2-8-8-1 MLP: training accuracy {right / len(y):.0%}"
        plot_decision_boundary(model, X, y, path, title=title)
    except ImportError:
        print('(no decision-boundary plot: it needs matplotlib, pip install "microgd[plot]")')
    except OSError as error:
        parser.error(f"--out {args.out}: {error.strerror or error}")
    else:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
