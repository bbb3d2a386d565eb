"""Handwritten digits: a 64-32-10 MLP (ReLU hidden layer, ten linear scores) learns scikit-learn's 8x8 digits
(1,797 images) with softmax cross-entropy. One image's loss is traced once into a tape, and fit runs the
tape's fused program on each whole mini-batch: each layer one matrix product, forward and backward, the
parameters and Adam's state in numpy arrays (the eager engine's numbers to rounding), in under a second.

    pip install "microgd[demo]"          # scikit-learn and numpy
    python demos/digits.py [--epochs N] [--batch N] [--seed N]

Holds out a fifth of the images (the same share of every digit), trains on the rest with Adam (a
progress bar on a terminal), then prints the mean loss per epoch, the time taken and the held-out
accuracy, and draws one held-out digit the model gets wrong. MICROGD_DEMO_FAST=1 trains for 2 epochs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from microgd import no_grad
from microgd.losses import cross_entropy
from microgd.nn import MLP
from microgd.optim import Adam
from microgd.train import fit

EPOCHS = 2 if os.environ.get("MICROGD_DEMO_FAST") == "1" else 20
BATCH, LR, HIDDEN = 32, 0.01, 32
SHADES = " .:-=+*#%@"


def load(seed: int = 0) -> tuple[list[list[float]], list[list[float]], list[int], list[int]]:
    """Train and held-out images (64 pixels each, scaled from 0..16 to 0..1) and their digits."""
    digits = load_digits()
    X = (digits.data / 16.0).tolist()
    y = digits.target.tolist()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    return X_train, X_test, y_train, y_test


def build(seed: int = 0) -> MLP:
    """64 pixels -> 32 ReLU units -> 10 scores, He initialisation."""
    return MLP(64, [HIDDEN, 10], activations=["relu", "linear"], init="he", seed=seed)


def predict(model: MLP, x: list[float]) -> int:
    """The digit with the highest score."""
    with no_grad():
        scores = model(x)
    return max(range(10), key=lambda k: scores[k].data)


def picture(x: list[float]) -> list[str]:
    """An 8x8 image as 8 lines of text, darker characters for darker pixels."""
    return ["".join(SHADES[round(v * (len(SHADES) - 1))] * 2 for v in x[row * 8:row * 8 + 8]) for row in range(8)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS, metavar="N", help="default: %(default)s")
    parser.add_argument("--batch", type=int, default=BATCH, metavar="N", help="images a step (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights, split and shuffling (default: 0)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch < 1:
        parser.error("--epochs and --batch must be at least 1")

    X_train, X_test, y_train, y_test = load(args.seed)
    model = build(args.seed)
    print(f"Digits: {len(X_train) + len(X_test):,} 8x8 images, {len(X_train):,} to train on, {len(X_test)} held out; "
          f"a 64-{HIDDEN}-10 MLP (relu, linear), {len(model.parameters()):,} parameters")
    print(f"Adam, learning rate {LR}, batches of {args.batch}, softmax cross-entropy, {args.epochs} epochs, "
          "the loss traced once, its layers fused into matrix products")
    start = time.perf_counter()
    history = fit(model, X_train, y_train, loss=cross_entropy, optimizer=Adam(model.parameters(), lr=LR),
                  epochs=args.epochs, batch_size=args.batch, seed=args.seed, engine="fused")
    seconds = time.perf_counter() - start
    if history.interrupted:
        sys.exit(130)
    for epoch, loss in enumerate(history, 1):
        print(f"  epoch {epoch:3d}  mean loss {loss:.4f}")
    print(f"trained in {seconds:.1f} s ({seconds / len(history):.2f} s an epoch, {history.steps} steps)")

    guesses = [predict(model, x) for x in X_test]
    right = sum(g == t for g, t in zip(guesses, y_test))
    print(f"held-out accuracy: {right / len(y_test):.3f} ({right} of {len(y_test)} images; chance is 0.1)")
    train_right = sum(predict(model, x) == t for x, t in zip(X_train, y_train))
    print(f"training accuracy: {train_right / len(y_train):.3f}")
    wrong = [i for i, (g, t) in enumerate(zip(guesses, y_test)) if g != t]
    if wrong:
        i = wrong[0]
        print(f"a held-out {y_test[i]} the model reads as {guesses[i]}:")
        for line in picture(X_test[i]):
            print(f"    |{line}|")


if __name__ == "__main__":
    main()
