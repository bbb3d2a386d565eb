"""microgd.train.fit: tutorial 2's network learns its table, XOR and two moons are solved, batches
average gradients, Ctrl-C keeps the last completed step, the progress bar shows only on a terminal."""

import io
import math
import sys

import pytest

from microgd import DomainError
from microgd.data import MinMaxScaler, tutorial2_table, two_moons, xor
from microgd.losses import binary_cross_entropy, half_squared_error
from microgd.nn import MLP
from microgd.optim import SGD, Adam
from microgd.train import History, fit

TUTORIAL2_WEIGHTS = [[[-0.5, -1.0, 0.5], [-0.5, 0.5, 0.5], [1.0, 0.0, 0.5]], [[0.5, -1.0, 0.0, 0.5]]]


def data(model):
    return [p.data for p in model.parameters()]


def mean_loss(model, X, y):
    return sum(half_squared_error(model(x), t).data for x, t in zip(X, y)) / len(X)


def accuracy(model, X, y):
    return sum((model(x).data > 0.5) == (t > 0.5) for x, t in zip(X, y)) / len(X)


# -- learning --------------------------------------------------------------------------------------

def test_tutorial2_network_learns_its_normalised_table():
    X, y = tutorial2_table()
    X, y = MinMaxScaler().fit_transform(X), MinMaxScaler().fit_transform(y)
    model = MLP(2, [3, 1], activation="sigmoid", weights=TUTORIAL2_WEIGHTS)  # as in tutorial 2
    before = mean_loss(model, X, y)
    history = fit(model, X, y, optimizer=SGD(model.parameters(), lr=1.0), epochs=1000, seed=0, verbose=False)
    after = mean_loss(model, X, y)
    assert len(history) == 1000 and history.steps == 4000 and not history.interrupted
    assert after <= before / 10, (before, after)
    assert history[-1] < history[0] / 10


def test_xor_is_learned_to_full_accuracy():
    X, y = xor()
    model = MLP(2, [4, 1], activations=["tanh", "sigmoid"], init="xavier", seed=0)
    assert accuracy(model, X, y) < 1.0
    fit(model, X, y, loss=binary_cross_entropy, optimizer=Adam(model.parameters(), lr=0.05), epochs=300, seed=0,
        verbose=False)
    assert accuracy(model, X, y) == 1.0


def test_two_moons_are_separated():
    X, y = two_moons(100, noise=0.1, seed=0)
    model = MLP(2, [8, 8, 1], activations=["tanh", "tanh", "sigmoid"], init="xavier", seed=0)
    # a rate that separates the moons from each of 8 seeds tried, so no rounding detail decides the test
    history = fit(model, X, y, loss=binary_cross_entropy, optimizer=Adam(model.parameters(), lr=0.02), epochs=120,
                  seed=0, verbose=False)
    assert accuracy(model, X, y) >= 0.97
    assert history[-1] < history[0]


# -- what a step is --------------------------------------------------------------------------------

def test_history_is_the_mean_loss_seen_in_each_epoch():
    seen = []

    def recording_loss(pred, target):
        loss = half_squared_error(pred, target)
        seen.append(loss.data)
        return loss

    model = MLP(2, [2, 1], seed=0)
    history = fit(model, [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [1.0, 1.0, 0.0], loss=recording_loss,
                  optimizer=SGD(model.parameters(), lr=0.5), epochs=2, seed=0, verbose=False)
    assert isinstance(history, History) and history.steps == 6
    assert history == pytest.approx([sum(seen[:3]) / 3, sum(seen[3:]) / 3], rel=1e-15)


def test_a_batch_step_uses_the_mean_gradient():
    X, y = [[0.2, 0.9], [0.7, 0.1], [0.5, 0.5]], [1.0, 0.0, 0.3]
    model, reference = MLP(2, [3, 1], seed=1), MLP(2, [3, 1], seed=1)
    params = reference.parameters()
    mean_grad = [0.0] * len(params)
    for x, t in zip(X, y):
        reference.zero_grad()
        half_squared_error(reference(x), t).backward()
        mean_grad = [m + p.grad / len(X) for m, p in zip(mean_grad, params)]
    history = fit(model, X, y, optimizer=SGD(model.parameters(), lr=0.3), epochs=1, batch_size=len(X),
                  shuffle=False, verbose=False)
    assert history.steps == 1
    assert data(model) == pytest.approx([p.data - 0.3 * g for p, g in zip(params, mean_grad)], rel=1e-13)


def test_shuffling_is_seeded():
    X, y = two_moons(12, seed=1)
    runs = []
    for seed in (5, 5, 6):
        model = MLP(2, [3, 1], seed=0)
        fit(model, X, y, optimizer=SGD(model.parameters(), lr=0.5), epochs=3, seed=seed, verbose=False)
        runs.append(data(model))
    assert runs[0] == runs[1] != runs[2]


def test_several_outputs_sum_the_loss_over_outputs():
    model = MLP(1, [2], activation="linear", weights=[[[1.0, 0.0], [2.0, 0.0]]])
    history = fit(model, [[1.0]], [[0.0, 0.0]], optimizer=SGD(model.parameters(), lr=1e-3), epochs=1,
                  verbose=False)
    assert history == [0.5 * 1.0**2 + 0.5 * 2.0**2]
    with pytest.raises(ValueError, match="the model has 2 outputs, so each target must list 2 numbers, got 0.0"):
        fit(model, [[1.0]], [0.0], epochs=1, verbose=False)


def test_the_default_optimizer_is_sgd():
    model = MLP(1, [1], activation="linear", weights=[[[0.0, 0.0]]])
    fit(model, [[1.0]], [1.0], epochs=1, verbose=False)
    assert data(model) == pytest.approx([0.1, 0.1], rel=1e-15)  # w, b <- 0 - 0.1 * (0 - 1)


@pytest.mark.parametrize("X, y, kwargs, message", [
    ([[1.0]], [1.0, 2.0], {}, "fit: 1 input rows but 2 targets"),
    ([], [], {}, "fit: no training data"),
    ([[1.0]], [1.0], dict(epochs=-1), "fit: epochs must be a whole number >= 0, got -1"),
    ([[1.0]], [1.0], dict(batch_size=0), "fit: batch_size must be a whole number >= 1, got 0"),
    ([[1.0, 2.0]], [1.0], {}, "MLP expected 1 inputs, got 2"),
])
def test_bad_arguments(X, y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit(MLP(1, [1], seed=0), X, y, verbose=False, **kwargs)


def test_a_loss_must_return_a_value():
    with pytest.raises(TypeError, match="fit: loss.prediction, target. must return a Value, got float"):
        fit(MLP(1, [1], seed=0), [[1.0]], [1.0], loss=lambda p, t: 0.5, verbose=False)


def test_a_non_finite_loss_is_an_error_not_a_silent_nan():
    model = MLP(1, [1], activation="linear", weights=[[[1e200, 0.0]]])
    with pytest.raises(DomainError, match=r"fit: epoch 1, sample 0: weighted_sum: the result is inf"):
        fit(model, [[1e200]], [0.0], epochs=1, verbose=False)


# -- Ctrl-C ----------------------------------------------------------------------------------------

class RecordingSGD(SGD):
    """SGD that remembers the parameters after every completed step."""

    def __init__(self, params, lr):
        super().__init__(params, lr)
        self.after = []

    def step(self):
        super().step()
        self.after.append([p.data for p in self.params])


def test_ctrl_c_in_the_loss_returns_the_history_so_far(capsys):
    X, y = two_moons(10, seed=0)
    model = MLP(2, [3, 1], seed=0)
    optimizer = RecordingSGD(model.parameters(), lr=0.5)
    calls = 0

    def loss(pred, target):
        nonlocal calls
        calls += 1
        if calls == 25:  # the 5th sample of epoch 3
            raise KeyboardInterrupt
        return half_squared_error(pred, target)

    history = fit(model, X, y, loss=loss, optimizer=optimizer, epochs=10, seed=0)
    assert history.interrupted and len(history) == 2 and history.steps == 24 == len(optimizer.after)
    assert data(model) == optimizer.after[-1]
    assert "interrupted after 2 epoch(s), 24 step(s)" in capsys.readouterr().err


def test_ctrl_c_halfway_through_a_step_restores_the_last_completed_step():
    X, y = two_moons(10, seed=0)
    model = MLP(2, [3, 1], seed=0)

    class HalfwayInterrupted(RecordingSGD):
        def step(self):
            if len(self.after) == 7:
                for p in self.params[:5]:
                    p.data += 1.0
                raise KeyboardInterrupt
            super().step()

    optimizer = HalfwayInterrupted(model.parameters(), lr=0.5)
    history = fit(model, X, y, optimizer=optimizer, epochs=3, seed=0, verbose=False)
    assert history.interrupted and history.steps == 7 and len(history) == 0
    assert data(model) == optimizer.after[-1]


# -- the progress bar ------------------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self):
        return True


def small_fit(verbose):
    model = MLP(1, [1], activation="linear", weights=[[[0.0, 0.0]]])
    return fit(model, [[1.0]], [1.0], epochs=3, verbose=verbose)


def test_progress_bar_on_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    small_fit(verbose=True)
    shown = terminal.getvalue()
    assert "training" in shown and "3/3" in shown and "loss=" in shown


@pytest.mark.parametrize("tty, verbose", [(True, False), (False, True)])
def test_quiet_off_a_terminal_or_when_not_verbose(monkeypatch, tty, verbose):
    stream = Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    small_fit(verbose)
    assert stream.getvalue() == ""


def test_history_repr():
    history = small_fit(verbose=False)
    assert repr(history).startswith("History([") and "steps=3, interrupted=False" in repr(history)
    assert all(math.isfinite(h) for h in history)
