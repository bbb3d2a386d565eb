"""The way on to PyTorch: MLP.to_torch and MLP.from_torch keep weights, activations, outputs and gradients;
tape.batch runs on torch tensors and keeps them on their device."""

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgd import Value, define_op, gradients, rules
from microgd.losses import half_squared_error
from microgd.nn import MLP, Layer, Neuron, activation_names
from microgd.optim import SGD
from microgd.tape import trace
from microgd.testing import mlps

try:
    import torch
except ImportError:  # the torch extra is not installed: every test here skips, saying so (conftest's marker)
    torch = None

pytestmark = pytest.mark.requires_torch

# torch adds a layer's products in its own order (blocked, vectorised), microgd left to right: the sums agree
# to rounding, relative to the size of their terms (weights <= 2, inputs <= 1, a few terms), not to 0
REL, ABS = 1e-12, 1e-13


def close(a, b):
    return math.isclose(a, b, rel_tol=REL, abs_tol=ABS)


def torch_gradients(module):
    """The module's parameter gradients in microgd's order: per neuron its weights, then its bias."""
    linears = [m for m in module if isinstance(m, torch.nn.Linear)]
    return [g for linear in linears for row, b in zip(grad(linear.weight), grad(linear.bias)) for g in (*row, b)]


def grad(parameter):
    """Its gradient; torch leaves None where no path reaches it (behind a step), which microgd counts as 0."""
    return (parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)).tolist()


def loss_of_outputs(outputs, target):
    """1/2 sum (y_k - t_k)^2 on either side."""
    return sum(0.5 * (y - t) ** 2 for y, t in zip(outputs, target))


def compare(model, x, target):
    out = model(list(x))
    outputs = out if isinstance(out, list) else [out]
    loss = loss_of_outputs(outputs, target)
    grads = gradients(loss, model.parameters())
    module = model.to_torch()
    torch_outputs = module(torch.tensor(x, dtype=torch.float64))
    loss_of_outputs(torch_outputs, torch.tensor(target, dtype=torch.float64)).backward()
    assert all(close(a.data, b) for a, b in zip(outputs, torch_outputs.tolist()))
    assert all(close(a, b) for a, b in zip(grads, torch_gradients(module)))


@settings(max_examples=40)
@given(mlps(activations=("sigmoid", "tanh", "relu", "linear", "softplus", "abs")))
def test_to_torch_gives_microgds_outputs_and_gradients(net):
    compare(net.model, net.x, net.target)


ONE_INPUT_OPS = [name for name in activation_names() if name != "linear"]


@pytest.mark.parametrize("activation", ONE_INPUT_OPS)
def test_every_built_in_activation_runs_in_torch(activation):
    weights = [[[0.5, -0.25, 0.75], [-0.25, 0.5, 0.25]], [[0.5, 1.5, 0.25]]]  # sums > 0 at (0.5, 0.125)
    model = MLP(2, [2, 1], activations=[activation, "linear"], weights=weights)
    positive_only = rules._REGISTRY[activation].domain[0][0] >= 0  # log, sqrt
    compare(model, (0.5, 0.125) if positive_only else (0.5, -0.375), (0.25,))


def test_to_torch_keeps_weights_dtype_and_layers():
    model = MLP(3, [4, 2], activations=["tanh", "softplus"], seed=0)
    module = model.to_torch()
    assert [type(m).__name__ for m in module] == ["Linear", "Tanh", "Linear", "RegistryActivation"]
    assert repr(module[3]) == "RegistryActivation('softplus')"
    assert all(p.dtype == torch.float64 and p.requires_grad for p in module.parameters())
    flat = [x for layer in model.state_dict()["weights"] for row in layer for x in row]
    assert torch_flat(module) == flat  # copied exactly, not rounded through float32


def torch_flat(module):
    linears = [m for m in module if isinstance(m, torch.nn.Linear)]
    return [x for linear in linears for row, b in zip(linear.weight.tolist(), linear.bias.tolist()) for x in (*row, b)]


def test_neurons_and_layers_go_to_torch_too():
    neuron = Neuron(2, "sigmoid", weights=[1.0, -2.0, 0.5])
    assert neuron.to_torch()(torch.tensor([0.5, 0.25], dtype=torch.float64)).item() == pytest.approx(
        neuron([0.5, 0.25]).data, rel=1e-15)
    layer = Layer(2, 3, "linear", seed=1)
    assert len(layer.to_torch()) == 1 and layer.to_torch()[0].out_features == 3


def test_from_torch_round_trip_and_a_hand_made_float32_module():
    model = MLP(3, [5, 4, 2], activations=["relu", "neg", "sigmoid"], seed=3)
    assert MLP.from_torch(model.to_torch()).state_dict() == model.state_dict()
    torch.manual_seed(0)
    made = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 3), torch.nn.Identity(),
                               torch.nn.Linear(3, 1), torch.nn.Tanh())
    back = MLP.from_torch(made)
    assert back.sizes == [2, 3, 3, 1] and back.activations == ["relu", "linear", "tanh"]
    x = [0.25, -0.5]
    expected = made.double()(torch.tensor(x, dtype=torch.float64)).item()
    assert close(back(x).data, expected)


@pytest.mark.parametrize("module, error, message", [
    (lambda: torch.nn.Linear(2, 1), TypeError,
     "from_torch: expected a torch.nn.Sequential of Linear layers and activations, got Linear"),
    (lambda: torch.nn.Sequential(), ValueError, "from_torch: the Sequential holds no Linear layer"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Dropout(0.5)), ValueError,
     r"from_torch: item 1 \(Dropout\(p=0.5, inplace=False\)\) is not a Linear layer or an activation microgd has"),
    (lambda: torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(2, 3)), ValueError,
     r"from_torch: item 0 \(ReLU\(\)\) is an activation without a Linear layer right before it"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Tanh()), ValueError,
     r"from_torch: item 2 \(Tanh\(\)\) is an activation without a Linear layer right before it"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(4, 1)), ValueError,
     r"from_torch: item 1 \(Linear\(in_features=4, out_features=1, bias=True\)\) takes 4 inputs, but the layer "
     r"before it gives 3"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3, bias=False)), ValueError,
     r"from_torch: item 0 \(.*\) has no bias; a microgd neuron always has one"),
])
def test_from_torch_names_what_it_cannot_take(module, error, message):
    with pytest.raises(error, match=message):
        MLP.from_torch(module())


def test_an_op_made_with_define_op_goes_to_torch_through_its_array_form(forget_defined_ops):
    define_op("torch_test_square", forward=lambda x: x * x, vjp=lambda g, out, x: (2.0 * g * x,),
              array=lambda xp, x: x * x)
    model = MLP(2, [3, 1], activations=["torch_test_square", "linear"], seed=4)
    compare(model, (0.5, -0.75), (0.1,))
    assert MLP.from_torch(model.to_torch()).activations == ["torch_test_square", "linear"]
    define_op("torch_test_cube", forward=lambda x: x ** 3, vjp=lambda g, out, x: (3.0 * g * x * x,))
    with pytest.raises(ValueError, match=r"to_torch: activation 'torch_test_cube' has no array form, so PyTorch "
                                         r"cannot run it; define it with define_op\(..., array=lambda xp, x: ...\)"):
        MLP(2, [1], activation="torch_test_cube", seed=0).to_torch()


def test_an_ops_torch_module_is_read_from_its_registry_entry():
    assert [type(op.torch(torch)) for op in (rules.relu, rules.tanh, rules.sigmoid, rules.linear)] == [
        torch.nn.ReLU, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.Identity]
    assert [type(m).__name__ for m in MLP(2, [3, 1], activations=["sigmoid", "linear"], seed=0).to_torch()] == [
        "Linear", "Sigmoid", "Linear"]  # a linear layer is its Linear alone, as a linear neuron skips the identity
    made = torch.nn.Sequential(torch.nn.Linear(2, 1), rules.linear.torch(torch))
    assert MLP.from_torch(made).activations == ["linear"]


def test_an_op_made_with_define_op_and_a_torch_module_goes_to_torch_as_that_module(forget_defined_ops):
    define_op("torch_test_softsign", forward=lambda x: x / (1 + abs(x)),
              vjp=lambda g, out, x: (g / ((1 + abs(x)) * (1 + abs(x))),), torch=lambda torch: torch.nn.Softsign())
    model = MLP(2, [3, 1], activations=["torch_test_softsign", "linear"], seed=4)
    module = model.to_torch()
    assert type(module[1]) is torch.nn.Softsign
    compare(model, (0.5, -0.75), (0.1,))
    assert MLP.from_torch(module).activations == ["torch_test_softsign", "linear"]


def test_training_goes_on_in_torch_from_where_microgd_left_it():
    X = [[0.1, 0.9], [0.8, 0.2], [0.4, 0.4], [0.9, 0.7]]
    y = [1.0, 0.0, 0.5, 0.25]
    model = MLP(2, [4, 1], activations=["tanh", "sigmoid"], seed=5)
    module = model.to_torch()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    optimizer.zero_grad()
    prediction = module(torch.tensor(X, dtype=torch.float64)).squeeze(1)
    (0.5 * (prediction - torch.tensor(y, dtype=torch.float64)) ** 2).mean().backward()
    optimizer.step()
    reference = SGD(model.parameters(), lr=0.5)
    reference.zero_grad()
    for x, t in zip(X, y):
        (half_squared_error(model(x), t) * (1.0 / len(X))).backward()
    reference.step()
    assert all(close(a, b) for a, b in zip(torch_flat(module), [p.data for p in model.parameters()]))


# -- the tape on torch tensors ------------------------------------------------------------------------------

def test_tape_batch_on_torch_tensors_gives_numpys_values_and_gradients_on_their_device():
    model = MLP(3, [4, 2], activations=["tanh", "sigmoid"], seed=6)

    def loss(x, target):
        y1, y2 = model(x)
        return (y1 - target[0]) ** 2 + (y2 - target[1]) ** 2
    rng = random.Random(0)
    X = [[rng.uniform(-1, 1) for _ in range(3)] for _ in range(16)]
    T = [[rng.uniform(0, 1) for _ in range(2)] for _ in range(16)]
    tape = trace(loss, X[0], T[0])
    model.zero_grad()
    expected = tape.batch(np.array(X), np.array(T))
    expected_grads = [p.grad for p in model.parameters()]
    model.zero_grad()
    values = tape.batch(torch.tensor(X, dtype=torch.float64), T)  # a tensor and a list: both float64 on its device
    assert isinstance(values, torch.Tensor) and values.dtype == torch.float64 and values.device.type == "cpu"
    assert all(close(a, b) for a, b in zip(values.tolist(), expected.tolist()))
    assert all(close(p.grad, g) for p, g in zip(model.parameters(), expected_grads))


def test_tape_batch_on_torch_keeps_a_constant_output_on_the_device_and_names_a_bad_sample():
    w = Value(2.0)
    constant = trace(lambda x: w * 3.0 + x * 0.0, 1.0).batch(torch.zeros(4, dtype=torch.float64))
    assert constant.tolist() == [6.0] * 4 and constant.device == torch.zeros(1).device
    log = trace(lambda x: (w * x).log(), 1.0)
    with pytest.raises(Exception, match=r"tape.batch: sample 2: log: operand must be > 0, got -2.0"):
        log.batch(torch.tensor([1.0, 2.0, -1.0]))


@given(st.lists(st.floats(-3, 3), min_size=1, max_size=8))
def test_tape_batch_on_torch_equals_calls_one_by_one(xs):
    w = Value(0.75, label="w")
    tape = trace(lambda x: (w * x).tanh() * x + (x - w).relu(), 0.5)
    per_sample = [tape(x) for x in xs]
    summed = w.grad
    w.grad = 0.0
    batched = tape.batch(torch.tensor(xs, dtype=torch.float64)).tolist()
    assert all(close(a, b) for a, b in zip(batched, per_sample))
    assert close(w.grad, summed)
