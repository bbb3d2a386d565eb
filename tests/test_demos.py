"""Every demo runs (MICROGD_DEMO_FAST=1) and prints numbers that independent arithmetic confirms."""

import importlib.util
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from microgd.losses import cross_entropy
from microgd.optim import Adam
from microgd.train import fit

DEMOS = Path(__file__).resolve().parent.parent / "demos"


def run_demo(name, *args, env=None):
    environment = {k: v for k, v in os.environ.items() if k != "MICROGD_DEMO_OUT"}
    environment.update({"MICROGD_DEMO_FAST": "1", **(env or {})})
    done = subprocess.run([sys.executable, str(DEMOS / name), *args], capture_output=True, text=True,
                          env=environment, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def number(pattern, text):
    return float(re.search(pattern, text).group(1))


def sigmoid(s):
    return 1 / (1 + math.exp(-s))


# -- tutorial 1: one sigmoid neuron ---------------------------------------------------------------------------

X, TARGET = 0.1, 0.3


def descend(weights, inputs, rate, iterations):
    """Plain-float gradient descent with the corrected chain rule: dE/dw_i = 2 (p - t) p (1 - p) x_i."""
    for _ in range(iterations):
        p = sigmoid(sum(w * x for w, x in zip(weights, inputs)))
        weights = [w - rate * 2 * (p - TARGET) * p * (1 - p) * x for w, x in zip(weights, inputs)]
    return weights, sigmoid(sum(w * x for w, x in zip(weights, inputs)))


@pytest.fixture(scope="module")
def tutorial1():
    return run_demo("tutorial1_one_neuron.py")


def test_tutorial1_one_step_shows_its_g2_and_the_engine_equals_the_corrected_chain(tutorial1):
    w0 = random.Random(0).random()
    assert number(r"initial weight w = (\S+)", tutorial1) == pytest.approx(w0, rel=1e-11)
    p = sigmoid(w0 * X)
    assert number(r"predicted = sigmoid\(sop\) = (\S+)", tutorial1) == pytest.approx(p, rel=1e-11)
    tutorial_g2 = sigmoid(p) * (1 - sigmoid(p))
    assert number(r"activation_sop_deriv\(predicted\) = (\S+)", tutorial1) == pytest.approx(tutorial_g2, rel=1e-11)
    assert number(r"activation_sop_deriv\(sop\)\s+= (\S+)", tutorial1) == pytest.approx(p * (1 - p), rel=1e-11)
    corrected = 2 * (p - TARGET) * p * (1 - p) * X
    assert number(r"corrected grad\s+= g1\*g2\*g3\s+= (\S+)", tutorial1) == pytest.approx(corrected, rel=1e-11)
    assert number(r"engine's w.grad\s+= (\S+)", tutorial1) == pytest.approx(corrected, rel=1e-11)
    assert number(r"the tutorial's grad = g1\*g2\*g3\s+= (\S+)", tutorial1) == pytest.approx(
        2 * (p - TARGET) * tutorial_g2 * X, rel=1e-11)
    assert abs(number(r"engine - corrected = (\S+);", tutorial1)) < 1e-15


def test_tutorial1_prints_the_engines_derivation_and_names_g1_g2_g3_against_it(tutorial1):
    w0 = random.Random(0).random()
    p = sigmoid(w0 * X)
    assert "∂error/∂w = ∂error/∂predicted · ∂predicted/∂sop · ∂sop/∂w" in tutorial1
    assert "= 2(predicted − target) · predicted(1 − predicted) · x" in tutorial1
    g1 = number(r"tutorial's g1 is ∂error/∂predicted = 2\(predicted − target\) = (\S+)", tutorial1)
    g2 = number(r"tutorial's g2 is ∂predicted/∂sop = predicted\(1 − predicted\) = (\S+)", tutorial1)
    g3 = number(r"tutorial's g3 is ∂sop/∂w = x = (\S+)", tutorial1)
    assert (g1, g2, g3) == pytest.approx((2 * (p - TARGET), p * (1 - p), X), abs=5e-7)


def test_tutorial1_says_what_the_listings_get_wrong(tutorial1):
    assert "update_w has lost its header" in tutorial1
    assert "Neither listing ever calls update_w" in tutorial1


def test_tutorial1_runs_match_plain_float_descent(tutorial1):
    w0 = random.Random(0).random()
    runs = re.findall(r"learning rate (\S+), (\d+) iterations\n(?:.*\n)*?   final: w = (\S+), predicted = (\S+),",
                      tutorial1)
    assert [(float(r), int(n)) for r, n, _, _ in runs] == [(0.01, 500), (0.5, 100)]  # fast mode
    for rate, n, w, predicted in runs:
        (w_ref,), p_ref = descend([w0], [X], float(rate), int(n))
        assert (float(w), float(predicted)) == (pytest.approx(w_ref, abs=1e-9), pytest.approx(p_ref, abs=1e-9))


def test_tutorial1_counts_the_iterations_the_target_really_needs(tutorial1):
    w0 = random.Random(0).random()
    needed = [int(n) for n in re.findall(r"within 0.001 of the target at rate \S+: (\d+)", tutorial1)]
    for rate, count in zip((0.01, 0.5), needed):
        (w,), _ = descend([w0], [X], rate, count - 1)
        assert abs(sigmoid(w * X) - TARGET) >= 0.001  # one step short: not yet
        (w,), _ = descend([w0], [X], rate, count)
        assert abs(sigmoid(w * X) - TARGET) < 0.001
    assert needed[0] > 50000  # the tutorial's "50000 iterations at 0.01" is far too few


def test_tutorial1_two_inputs(tutorial1):
    part = tutorial1[tutorial1.index("4. Two inputs"):]
    for engine, chain in re.findall(r"engine (\S+), chain rule g1\*g2\*x\d = (\S+)", part):
        assert float(engine) == pytest.approx(float(chain), rel=1e-11)
    rng = random.Random(0)
    rng.random()
    weights = [rng.random(), rng.random()]
    (w1, w2), p = descend(weights, [0.1, 0.4], 0.5, 100)
    final = re.search(r"final: w1 = (\S+), w2 = (\S+), predicted = (\S+)", part).groups()
    assert [float(v) for v in final] == [pytest.approx(v, abs=1e-9) for v in (w1, w2, p)]


def test_tutorial1_plots(tmp_path):
    out = run_demo("tutorial1_one_neuron.py", env={"MICROGD_DEMO_OUT": str(tmp_path)})
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"tutorial1_{run}_{kind}.png" for run in ("lr0.01", "lr0.5", "two_inputs")
                             for kind in ("prediction", "error"))
    assert all((tmp_path / name).read_bytes().startswith(b"\x89PNG") for name in written)
    assert out.count("plots: ") == 3


# -- tutorial 2's gradient-descent table -------------------------------------------------------

# (step, column, what the tutorial printed, the exact value): x_k = 3 * 0.8^k, y_k = 4 * 0.8^k, f_k = 25 * 0.64^k
TUTORIAL2_ERRATA = [
    (6, "df/dx", "1.9660", 2 * 3 * 0.8 ** 5),
    (6, "f(x_new, y_new)", "1.7179", 25 * 0.64 ** 6),
    (7, "df/dx", "1.5728", 2 * 3 * 0.8 ** 6),
    (8, "df/dx", "1.2582", 2 * 3 * 0.8 ** 7),
    (8, "df/dy", "1.6778", 2 * 4 * 0.8 ** 7),
    (8, "f(x_new, y_new)", "0.7140", 25 * 0.64 ** 8),
    (9, "f(x_new, y_new)", "0.3579", 25 * 0.64 ** 9),
    (10, "df/dx", "0.8054", 2 * 3 * 0.8 ** 9),
    (10, "x_new", "0.3222", 3 * 0.8 ** 10),
    (10, "df/dy", "1.0738", 2 * 4 * 0.8 ** 9),
    (10, "f(x_new, y_new)", "0.2294", 25 * 0.64 ** 10),
]


@pytest.fixture(scope="module")
def tutorial2():
    return run_demo("tutorial2_gradient_descent.py")


def test_tutorial2_table_is_exact_descent(tutorial2):
    rows = re.findall(r"^\s+(\d+)\s+((?:\s*\d+\.\d{4}){3,7})\s", tutorial2, re.M)
    assert [int(k) for k, _ in rows] == list(range(11))
    for k, cells in rows:
        k, cells = int(k), [float(c) for c in cells.split()]
        x, y = 3 * 0.8 ** k, 4 * 0.8 ** k
        x_old, y_old = x / 0.8, y / 0.8
        expected = [x_old, 2 * x_old, x, y_old, 2 * y_old, y, x * x + y * y] if k else [x, y, x * x + y * y]
        assert cells == [pytest.approx(e, abs=5.1e-5) for e in expected]


def test_tutorial2_lists_every_wrong_cell_with_the_correct_value(tutorial2):
    found = re.findall(r"step\s+(\d+) (.+?)\s+tutorial (\S+)  correct (\S+) \((\S+)\): (.+)", tutorial2)
    assert [(int(k), c, s) for k, c, s, *_ in found] == [(k, c, s) for k, c, s, _ in TUTORIAL2_ERRATA]
    for (_, _, _, correct, rounded, why), (_, _, printed, exact) in zip(found, TUTORIAL2_ERRATA):
        assert float(correct) == pytest.approx(exact, abs=5e-9)
        assert rounded == f"{exact:.4f}" != printed
        assert why in ("wrong", "cut off after 4 decimals instead of rounded",
                       "rounding carried over from the tutorial's own 4-decimal cells")
    whys = {(int(k), c): why for k, c, _, _, _, why in found}
    assert [key for key, why in whys.items() if why == "wrong"] == [(8, "f(x_new, y_new)"), (9, "f(x_new, y_new)"),
                                                                    (10, "f(x_new, y_new)")]
    assert whys[(6, "f(x_new, y_new)")] == "cut off after 4 decimals instead of rounded"
    assert "11 of the tutorial's 73 numbers differ" in tutorial2


def test_tutorial2_closed_form(tutorial2):
    assert number(r"x = (\S+)  \(3", tutorial2) == pytest.approx(3 * 0.8 ** 10, abs=1e-10)
    assert number(r"f = (\S+)  \(25", tutorial2) == pytest.approx(25 * 0.64 ** 10, abs=1e-10)


# -- tutorial 2's MLP worked example ----------------------------------------------------------------------

def test_tutorial2_mlp_worked_example_training_and_pictures(tmp_path):
    out = run_demo("tutorial2_mlp.py", "--out", str(tmp_path))
    a = [sigmoid(-1.0), sigmoid(0.5), sigmoid(1.5)]  # the tutorial's h1, h2, h3 for row 1 scaled to (1, 1)
    w_y = [0.5, -1.0, 0.0]
    y = sigmoid(sum(w * h for w, h in zip(w_y, a)) + 0.5)
    for j, printed in enumerate(("0.2689", "0.6225", "0.8176"), 1):
        assert number(rf"h{j} = sigmoid\(s_h{j}\)\s+{printed}\s+(\S+)\s+yes", out) == pytest.approx(a[j - 1], abs=5e-7)
    assert number(r"y = sigmoid\(s_y\)\s+0\.5030\s+(\S+)\s+yes", out) == pytest.approx(y, abs=5e-7)
    delta_y = (y - 1.0) * y * (1 - y)  # target 91 scaled to 1
    for j in range(1, 4):
        delta_h = a[j - 1] * (1 - a[j - 1]) * w_y[j - 1] * delta_y
        assert number(rf"delta_h{j} = dL/ds_h{j}\s+-\s+(\S+)", out) == pytest.approx(delta_h, abs=5e-7)
        assert number(rf"(?m)^\s+b_h{j}\s+\S+\s+\S+\s+(\S+)", out) == pytest.approx(0.5 - 0.1 * delta_h, abs=5e-7)
        updated = w_y[j - 1] - 0.1 * delta_y * a[j - 1]
        assert number(rf"(?m)^\s+w_y_{j}\s+\S+\s+\S+\s+(\S+)", out) == pytest.approx(updated, abs=5e-7)
    loss = re.search(r"mean loss per epoch: (\S+) \(epoch 1\) -> (\S+) \(epoch (\d+)\)", out)
    assert int(loss.group(3)) == 300 and float(loss.group(2)) < float(loss.group(1)) / 5
    assert re.search(r"(?m)^\s+x1\s+x2\s+target z\s+prediction\s+error$", out)  # the data file's names
    assert re.search(r"\[-1, 1\]\s+x1 = 50\s+-0\.1111\s+0\.111111\s+no", out)
    assert re.search(r"(?m)^\s+h1 \* w_y_1\s+0\.1345\s", out)
    assert re.search(r"δ_s_h1 = δ_s_y · w_y_1 · h1\(1 − h1\)", out)
    old_names = r"\b(I0|I1|Z0)\b|\b[hy]\d?\.[wb]|\by_w\d"  # the table's and the old labels' spellings
    assert not re.search(old_names, out.replace("the tutorial's I0, I1, Z0", ""))
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+\.\d\d)\s+([-+]\d+\.\d\d)$", out, re.M)
    assert [r[:3] for r in rows] == [("70", "98", "91"), ("50", "85", "82"), ("65", "67", "80"), ("25", "95", "68")]
    assert all(float(e) == pytest.approx(float(p) - float(z), abs=0.011) for _, _, z, p, e in rows)
    for name in ("tutorial2_graph.svg", "tutorial2_backprop.html", "tutorial2_trained_mlp.svg", "tutorial2_loss.png"):
        assert f"wrote {tmp_path / name}" in out and (tmp_path / name).stat().st_size > 0


# -- two moons ------------------------------------------------------------------------------------

def test_two_moons_learns_the_moons_and_draws_the_boundary(tmp_path):
    out = run_demo("two_moons.py", "--out", str(tmp_path))
    checkpoints = [(int(e), float(v)) for e, v in re.findall(r"epoch\s+(\d+)  mean loss (\S+)", out)]
    assert [e for e, _ in checkpoints] == [1, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40]  # fast mode: 40 epochs
    assert checkpoints[-1][1] < checkpoints[0][1] / 10
    accuracy, right, total = re.search(r"training accuracy: (\S+) \((\d+) of (\d+) points", out).groups()
    assert int(total) == 100 and float(accuracy) == pytest.approx(int(right) / 100)
    assert float(accuracy) >= 0.97
    picture = tmp_path / "two_moons.png"
    assert f"wrote {picture}" in out
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


# -- handwritten digits -------------------------------------------------------------------------------

def import_demo(name):
    spec = importlib.util.spec_from_file_location(f"demo_{name}", DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_learns_far_above_chance_in_two_epochs():
    out = run_demo("digits.py")
    losses = [float(v) for v in re.findall(r"epoch\s+\d+  mean loss (\S+)", out)]
    assert len(losses) == 2 and losses[1] < losses[0] / 2  # fast mode: 2 epochs
    accuracy, right, total = re.search(r"held-out accuracy: (\S+) \((\d+) of (\d+) images", out).groups()
    assert int(total) == 360 and float(accuracy) == pytest.approx(int(right) / 360, abs=5e-4)
    assert float(accuracy) >= 0.85  # chance is 0.1; the full 20 epochs reach 0.975
    assert "90 steps" in out  # 1,437 images in batches of 32: 45 steps an epoch
    wrong = re.search(r"a held-out (\d) the model reads as (\d):\n((?:    \|.{16}\|\n){8})", out)
    assert wrong and wrong.group(1) != wrong.group(2)


@pytest.mark.parametrize("engine", ["batch", "fused"])
def test_digits_batched_step_is_the_eager_engines(engine):
    digits = import_demo("digits")
    X_train, _, y_train, _ = digits.load()
    assert (len(X_train), len(X_train[0]), sorted(set(y_train))) == (1437, 64, list(range(10)))
    weights = []
    for each in (engine, "eager"):
        model = digits.build()
        fit(model, X_train[:64], y_train[:64], loss=cross_entropy, optimizer=Adam(model.parameters(), lr=digits.LR),
            epochs=1, batch_size=64, shuffle=False, verbose=False, engine=each)
        weights.append([p.data for p in model.parameters()])
    # cross-entropy's exp and log: numpy's may differ from Python's in the last bit (see test_train); the fused
    # engine's matrix products add in their own order
    assert weights[0] == pytest.approx(weights[1], rel=1e-12, abs=0.0)
    assert weights[0] != [p.data for p in digits.build().parameters()]
