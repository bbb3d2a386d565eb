"""fit(engine="fused"): the parameters and the optimizer's state live in numpy arrays while fit runs, and come
back to the Values and the optimizer at the end, on Ctrl-C and on an error. The weights, the history, the
optimizer's state and the last gradients are "batch"'s to FUSED_RELATIVE_ERROR_PER_STEP (a fused program's matrix
products add in their own order), whatever the loss, the optimizer,
the parameters it holds and the batch size; "auto" chooses it from 8 samples a batch."""

import io
import math
import sys

import numpy as np
import pytest
from test_train import ENGINE_CASES, RecordingSGD, Terminal, data, labelled, regression

import microgd.train
from microgd import DomainError, Value
from microgd.losses import cross_entropy, half_squared_error
from microgd.nn import MLP
from microgd.optim import SGD, Adam, AdamArrays
from microgd.tape import Tape
from microgd.train import ENGINES, fit

FUSED_RELATIVE_ERROR_PER_STEP = 1e-12
"""How far "fused" may stray from "batch", relative, for each step taken (0 would ask for the same floats)."""

OPTIMIZERS = {
    "adam": lambda ps: Adam(ps, lr=0.05),
    "sgd": lambda ps: SGD(ps, lr=0.1),
    "momentum": lambda ps: SGD(ps, lr=0.1, momentum=0.9),
}


def after_an_error(outcome):
    """An outcome without the gradients, which an interrupted or refused step leaves in ``.grad`` on the batch
    engine (the fused engine leaves the last completed step's there)."""
    return {**outcome, "grad": []}


def outcome(model, optimizer, history):
    """What a run leaves behind: the weights, the optimizer's parameters' last gradients (the others' add up
    on the batch engine, steps after steps), the optimizer's state, the history."""
    state = {name: list(getattr(optimizer, name)) for name in ("velocity", "m", "v") if hasattr(optimizer, name)}
    return {"data": data(model), "grad": [p.grad for p in optimizer.params], **state,
            "t": getattr(optimizer, "t", None), "history": list(history), "steps": history.steps,
            "interrupted": history.interrupted}


def assert_same(fused, batch):
    """``fused`` is ``batch``: equal floats (0.0 and -0.0 apart), or within the relative error allowed a step."""
    steps = batch["steps"]
    assert fused["steps"] == steps and fused["t"] == batch["t"] and fused["interrupted"] == batch["interrupted"]
    for key in batch:
        if isinstance(batch[key], list):
            if FUSED_RELATIVE_ERROR_PER_STEP == 0.0:
                assert [x.hex() for x in fused[key]] == [x.hex() for x in batch[key]], key
            else:
                assert fused[key] == pytest.approx(batch[key], rel=FUSED_RELATIVE_ERROR_PER_STEP * max(steps, 1),
                                                   abs=0.0), key


def run(case, engine, batch_size, make, epochs=3, **options):
    loss, activations, nout, (X, y) = ENGINE_CASES[case]
    model = MLP(len(X[0]), [4, nout], activations=activations, seed=1)
    optimizer = make(model.parameters())
    history = fit(model, X, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size, seed=3,
                  verbose=False, engine=engine, **options)
    return outcome(model, optimizer, history)


def test_fused_is_an_engine():
    assert "fused" in ENGINES


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("batch_size", [1, 5, 23])
@pytest.mark.parametrize("case", ENGINE_CASES)
def test_fused_gives_the_batch_engines_weights_and_optimizer_state(case, batch_size, optimizer):
    assert_same(run(case, "fused", batch_size, OPTIMIZERS[optimizer]),
                run(case, "batch", batch_size, OPTIMIZERS[optimizer]))


def test_fused_on_a_digits_sized_network():
    X, y = labelled(200, 16, list(range(10)))
    outcomes = {}
    for engine in ("batch", "fused"):
        model = MLP(16, [12, 10], activations=["relu", "linear"], init="he", seed=0)
        optimizer = Adam(model.parameters(), lr=0.01)
        history = fit(model, X, y, loss=cross_entropy, optimizer=optimizer, epochs=3, batch_size=32, seed=0,
                      verbose=False, engine=engine)
        outcomes[engine] = outcome(model, optimizer, history)
    assert_same(outcomes["fused"], outcomes["batch"])


def test_an_optimizer_holding_some_parameters_and_others_the_loss_does_not_use():
    X, y = regression(23, 3, 1)
    outcomes = {}
    for engine in ("batch", "fused"):
        model = MLP(3, [4, 1], activations=["tanh", "linear"], seed=1)
        unused = Value(0.5, label="unused")  # the loss never reads it: its gradient is 0, but momentum moves it
        unused.grad = 1.0
        optimizer = SGD([unused, *model.parameters()[16:]], lr=0.1, momentum=0.9)  # the first layer frozen
        history = fit(model, X, y, optimizer=optimizer, epochs=3, batch_size=5, seed=3, verbose=False,
                      engine=engine)
        outcomes[engine] = {**outcome(model, optimizer, history), "unused": [unused.data, unused.grad]}
    assert_same(outcomes["fused"], outcomes["batch"])
    assert outcomes["fused"]["data"][:16] == data(MLP(3, [4, 1], activations=["tanh", "linear"], seed=1))[:16]


def test_an_optimizer_with_a_step_of_its_own_is_called_at_every_step():
    X, y = regression(23, 3, 1)
    runs = {}
    for engine in ("batch", "fused"):
        model = MLP(3, [4, 1], seed=1)
        optimizer = RecordingSGD(model.parameters(), lr=0.1)
        history = fit(model, X, y, optimizer=optimizer, epochs=2, batch_size=5, seed=3, verbose=False,
                      engine=engine)
        runs[engine] = outcome(model, optimizer, history), optimizer.after
    assert_same(runs["fused"][0], runs["batch"][0])
    assert len(runs["fused"][1]) == 10
    for fused, batch in zip(runs["fused"][1], runs["batch"][1]):  # the numbers after each step
        assert fused == pytest.approx(batch, rel=FUSED_RELATIVE_ERROR_PER_STEP * 10, abs=0.0)


def forgetful(monkeypatch):
    """Make the gradient function scribble over the captured Values after its work (done or failed), as a
    gradient that keeps the numbers elsewhere may leave them: fit must neither read them nor leave them so."""
    made = microgd.train._fused_gradient

    def gradient_of(tape, X, Y):
        gradient = made(tape, X, Y)

        def scribbling(batch, params):
            try:
                return gradient(batch, params)
            finally:
                for p in tape.captured:
                    p.data, p.grad = 1e300, math.nan
        return scribbling

    monkeypatch.setattr(microgd.train, "_fused_gradient", gradient_of)


def test_fit_reads_the_parameters_off_the_arrays_not_the_values(monkeypatch):
    batch = run("cross-entropy, 4 classes", "batch", 5, OPTIMIZERS["adam"])
    forgetful(monkeypatch)
    assert_same(run("cross-entropy, 4 classes", "fused", 5, OPTIMIZERS["adam"]), batch)


def test_the_gradient_function_gets_the_batch_engines_numbers_in_the_tapes_order(monkeypatch):
    X, y = regression(10, 3, 1)
    seen: dict[str, list] = {"batch": [], "fused": []}
    made, batch = microgd.train._fused_gradient, Tape.batch

    def gradient_of(tape, X, Y):
        gradient = made(tape, X, Y)

        def recording(indices, params):
            assert isinstance(params, np.ndarray) and params.dtype == np.float64 and params.shape == (21,)
            seen["fused"].append((indices, params.tolist()))
            return gradient(indices, params)
        return recording

    def recording_batch(tape, *arrays, **options):
        seen["batch"].append((None, [p.data for p in tape.captured]))
        return batch(tape, *arrays, **options)

    with monkeypatch.context() as patch:
        patch.setattr(Tape, "batch", recording_batch)
        fit(MLP(3, [4, 1], seed=0), X, y, epochs=2, batch_size=4, seed=0, verbose=False, engine="batch")
    monkeypatch.setattr(microgd.train, "_fused_gradient", gradient_of)
    fit(MLP(3, [4, 1], seed=0), X, y, epochs=2, batch_size=4, seed=0, verbose=False, engine="fused")
    assert len(seen["fused"]) == len(seen["batch"]) == 6
    for step, ((_, fused), (_, batch)) in enumerate(zip(seen["fused"], seen["batch"])):
        assert fused == pytest.approx(batch, rel=FUSED_RELATIVE_ERROR_PER_STEP * max(step, 1), abs=0.0)
    assert [len(indices) for indices, _ in seen["fused"]] == [4, 4, 2] * 2


# -- stopping: Ctrl-C, errors ------------------------------------------------------------------------------

def interrupt_gradient_at(monkeypatch, call):
    """The fused engine's gradient function raises KeyboardInterrupt on its ``call``-th call."""
    made, calls = microgd.train._fused_gradient, 0

    def gradient_of(tape, X, Y):
        gradient = made(tape, X, Y)

        def interrupted(batch, params):
            nonlocal calls
            calls += 1
            if calls == call:
                raise KeyboardInterrupt
            return gradient(batch, params)
        return interrupted

    monkeypatch.setattr(microgd.train, "_fused_gradient", gradient_of)


def interrupt_batch_at(monkeypatch, call):
    """The batch engine's batched replay raises KeyboardInterrupt on its ``call``-th call."""
    batch, calls = Tape.batch, 0

    def interrupted(tape, *arrays, **options):
        nonlocal calls
        calls += 1
        if calls == call:
            raise KeyboardInterrupt
        return batch(tape, *arrays, **options)

    monkeypatch.setattr(Tape, "batch", interrupted)


def interrupted_run(engine, make, capsys):
    X, y = regression(23, 3, 1)
    model = MLP(3, [4, 1], activations=["tanh", "linear"], seed=1)
    optimizer = make(model.parameters())
    history = fit(model, X, y, optimizer=optimizer, epochs=4, batch_size=5, seed=3, engine=engine)
    return outcome(model, optimizer, history), capsys.readouterr().err, optimizer


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_ctrl_c_leaves_the_model_and_the_optimizer_at_the_last_completed_step(monkeypatch, capsys, optimizer):
    with monkeypatch.context() as patch:
        interrupt_batch_at(patch, 8)  # the 3rd step of epoch 2
        batch, batch_said, reference = interrupted_run("batch", OPTIMIZERS[optimizer], capsys)
    interrupt_gradient_at(monkeypatch, 8)
    fused, fused_said, optimizer = interrupted_run("fused", OPTIMIZERS[optimizer], capsys)
    assert fused["interrupted"] and fused["steps"] == 7 and len(fused["history"]) == 1
    assert_same(after_an_error(fused), after_an_error(batch))
    assert fused_said == batch_said == ("\ninterrupted after 1 epoch(s), 7 step(s); the model holds its last "
                                        "completed step\n")
    for p, q in zip(optimizer.params, reference.params):  # and the scalar steps go on alike from there
        p.grad = q.grad = 0.25
    optimizer.step()
    reference.step()
    assert [p.data for p in optimizer.params] == pytest.approx([q.data for q in reference.params],
                                                               rel=FUSED_RELATIVE_ERROR_PER_STEP * 8, abs=0.0)


def test_ctrl_c_inside_the_array_step_leaves_the_last_completed_step(monkeypatch, capsys):
    with monkeypatch.context() as patch:
        interrupt_batch_at(patch, 8)
        batch, _, _ = interrupted_run("batch", OPTIMIZERS["adam"], capsys)
    real_sqrt, calls = np.sqrt, 0

    def sqrt(x):  # Adam's step takes one square root (of an array), halfway through its arithmetic
        nonlocal calls
        calls += 1
        if calls == 8:
            raise KeyboardInterrupt
        return real_sqrt(x)

    monkeypatch.setattr(np, "sqrt", sqrt)
    fused, _, _ = interrupted_run("fused", OPTIMIZERS["adam"], capsys)
    assert_same(after_an_error(fused), after_an_error(batch))


def test_a_ctrl_c_while_the_arrays_are_written_back_writes_them_again(monkeypatch):
    expected = run("hinge, relu", "fused", 5, OPTIMIZERS["adam"])
    write_back, calls = AdamArrays.write_back, 0

    def cut_short(self):
        nonlocal calls
        calls += 1
        if calls == 1:
            self.optimizer.params[0].data = math.nan  # half written
            raise KeyboardInterrupt
        write_back(self)

    monkeypatch.setattr(AdamArrays, "write_back", cut_short)
    assert_same(run("hinge, relu", "fused", 5, OPTIMIZERS["adam"]), expected)
    assert calls == 2


def test_a_domain_error_midway_names_the_sample_and_leaves_the_last_completed_step():
    X, y = [[1.0], [2.0], [3.0], [-40.0]], [0.0] * 4
    outcomes = {}
    for engine in ("batch", "fused"):  # the weights fall as the model learns, until log meets a negative sum
        model = MLP(1, [1], activation="log", weights=[[[0.1, 0.5]]])
        optimizer = Adam(model.parameters(), lr=0.01)
        with pytest.raises(DomainError, match=r"fit: epoch \d+, sample 3: log: operand must be > 0"):
            fit(model, X, y, optimizer=optimizer, epochs=100, batch_size=2, shuffle=False, verbose=False,
                engine=engine)
        outcomes[engine] = after_an_error(outcome(model, optimizer, microgd.train.History()))
    assert outcomes["fused"]["t"] > 0
    assert_same(outcomes["fused"], outcomes["batch"])


def test_a_domain_error_is_named_on_the_arrays_numbers_not_the_values_stale_ones(monkeypatch):
    forgetful(monkeypatch)
    test_a_domain_error_midway_names_the_sample_and_leaves_the_last_completed_step()


def test_a_step_too_large_is_refused_and_the_model_keeps_the_last_completed_step():
    X, y = [[0.0], [1.0]], [1e-160, -1e153]  # step 1 moves the bias a little; step 2 would take w to inf
    outcomes = {}
    for engine in ("batch", "fused"):
        model = MLP(1, [1], activation="linear", weights=[[[1.0, 0.0]]])
        optimizer = SGD(model.parameters(), lr=1e156)
        with pytest.raises(FloatingPointError, match=r"SGD: the step would make parameter 0 -inf \(learning rate"):
            fit(model, X, y, optimizer=optimizer, epochs=3, batch_size=1, shuffle=False, verbose=False,
                engine=engine)
        outcomes[engine] = after_an_error(outcome(model, optimizer, microgd.train.History()))
    assert outcomes["fused"]["data"] == [1.0, 1e-160 * 1e156]
    assert_same(outcomes["fused"], outcomes["batch"])


# -- what does not change --------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size, fused", [(1, False), (7, False), (8, True), (32, True)])
def test_auto_chooses_fused_from_8_samples_a_batch(monkeypatch, batch_size, fused):
    made, original = [], microgd.train._fused

    def spy(*args):
        made.append(args)
        return original(*args)

    monkeypatch.setattr(microgd.train, "_fused", spy)
    X, y = regression(40, 2, 1)
    fit(MLP(2, [3, 1], seed=0), X, y, epochs=1, batch_size=batch_size, verbose=False)
    assert bool(made) == fused


def test_the_progress_bar_shows_as_with_the_other_engines(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fit(MLP(1, [1], activation="linear", weights=[[[0.0, 0.0]]]), [[1.0]], [1.0], epochs=3, engine="fused")
    shown = terminal.getvalue()
    assert "training" in shown and "3/3" in shown and "loss=" in shown


@pytest.mark.parametrize("tty, verbose", [(True, False), (False, True)])
def test_quiet_off_a_terminal_or_when_not_verbose(monkeypatch, tty, verbose):
    stream = Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    fit(MLP(1, [1], seed=0), [[1.0], [0.5]], [1.0, 0.0], epochs=3, batch_size=2, verbose=verbose, engine="fused")
    assert stream.getvalue() == ""


def test_without_numpy_fused_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(ImportError, match=r'fit: engine="fused" needs numpy: pip install "microgd\[fast\]"'):
        fit(MLP(1, [1], seed=0), [[1.0]], [1.0], verbose=False, engine="fused")


def test_zero_epochs_touch_nothing():
    model = MLP(1, [1], seed=0)
    before = data(model)
    history = fit(model, [[1.0]], [1.0], epochs=0, verbose=False, engine="fused")
    assert history == [] and history.steps == 0 and data(model) == before


def test_a_model_of_values_is_refused_as_by_the_batch_engine():
    with pytest.raises(TypeError, match="fit: engine='fused' replays a tape on numbers"):
        fit(MLP(1, [1], seed=0), [[Value(1.0)]], [1.0], verbose=False, engine="fused")


def test_the_loss_is_checked_on_a_second_sample_for_a_model_of_its_own():
    def clipped(pred, target):
        return (pred - target) ** 2 if pred.data > 0 else -pred
    model = MLP(1, [1], activation="linear", weights=[[[1.0, 0.0]]])
    with pytest.raises(ValueError, match=r"fit: the loss's graph changes with the data"):
        fit(model, [[1.0], [-1.0]], [0.0, 0.0], loss=clipped, shuffle=False, verbose=False, engine="fused")
    assert data(model) == [1.0, 0.0]


def test_the_default_loss_and_optimizer():
    runs = []
    for engine in ("batch", "fused"):
        model = MLP(2, [3, 1], seed=0)
        fit(model, [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], [0.0, 1.0, 0.5], loss=half_squared_error, epochs=5,
            batch_size=2, seed=0, verbose=False, engine=engine)
        runs.append(data(model))
    assert runs[0] == runs[1]
