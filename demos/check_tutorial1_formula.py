"""check_formula catches tutorial 1's chain-rule error and passes the corrected formula.

Tutorial 1 trains one sigmoid neuron by gradient descent, error = (sigmoid(w * x) - target)^2, with
grad = g3 * g2 * g1. Its code computes g2 = activation_sop_deriv(predicted): the sigmoid's
derivative taken at the prediction instead of at the sum of products (sop = w * x).

    python demos/check_tutorial1_formula.py        (MICROGD_DEMO_FAST=1 searches fewer points)
"""

import math
import os

from microgd.check import FormulaMismatch, check_formula

EXAMPLES = 20 if os.environ.get("MICROGD_DEMO_FAST") == "1" else 200


def sigmoid(sop):
    return 1.0 / (1.0 + math.exp(-sop))


def error(w, x, t):
    """Tutorial 1's forward pass on Values: sop, predicted, squared error."""
    return ((w * x).sigmoid() - t) ** 2


def tutorial_gradient(w, x, t):
    """Tutorial 1's backward pass as written: g2 = activation_sop_deriv(predicted)."""
    predicted = sigmoid(w * x)
    g1 = 2 * (predicted - t)
    g2 = sigmoid(predicted) * (1.0 - sigmoid(predicted))  # wrong: evaluated at `predicted`
    g3 = x
    return g3 * g2 * g1


def corrected_gradient(w, x, t):
    """The same chain with g2 evaluated at the sop, where the sigmoid was applied."""
    sop = w * x
    predicted = sigmoid(sop)
    g1 = 2 * (predicted - t)
    g2 = sigmoid(sop) * (1.0 - sigmoid(sop))  # equals predicted * (1 - predicted)
    g3 = x
    return g3 * g2 * g1


def main() -> None:
    print("Tutorial 1, one sigmoid neuron: error = (sigmoid(w*x) - t)^2, grad = g3 * g2 * g1")
    print(f"Searching w, x in [-3, 3], t in [0, 1] with hypothesis ({EXAMPLES} points at most)\n")
    print("1. The tutorial's formula, g2 = activation_sop_deriv(predicted):")
    try:
        check_formula(error, tutorial_gradient, wrt="w", max_examples=EXAMPLES)
    except FormulaMismatch as mismatch:
        print(mismatch)
        w, x, t = 0.5, 0.1, 0.3  # the tutorial's own x and target, at w = 0.5
        print(f"At the tutorial's own numbers (w={w}, x={x}, target={t}): the tutorial computes "
              f"{tutorial_gradient(w, x, t):.6f}, the true gradient is {corrected_gradient(w, x, t):.6f}")
    else:
        raise SystemExit("check_formula should have caught the tutorial's error")
    print("\n2. The corrected formula, g2 = activation_sop_deriv(sop):")
    print(check_formula(error, corrected_gradient, wrt="w", max_examples=EXAMPLES))


if __name__ == "__main__":
    main()
