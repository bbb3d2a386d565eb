"""plot: loss per epoch and series per iteration (tutorial 1's figures) as PNG and SVG."""

import sys
import xml.etree.ElementTree as ET

import pytest

from microgd import Value
from microgd.plot import plot_decision_boundary, plot_history, plot_series

SVG = "{http://www.w3.org/2000/svg}"


def tutorial1_training(iterations=30, w=0.5, x=0.1, target=0.3, learning_rate=0.5):
    """Tutorial 1's loop: one sigmoid neuron, squared error, plain gradient descent on w."""
    w = Value(w)
    predictions, errors = [], []
    for _ in range(iterations):
        w.grad = 0.0
        predicted = (w * x).sigmoid()
        error = (predicted - target) ** 2
        error.backward()
        w.data -= learning_rate * w.grad
        predictions.append(predicted.data)
        errors.append(error.data)
    return predictions, errors


def svg_texts(path):
    return {t.text for t in ET.parse(path).getroot().iter(f"{SVG}text") if t.text}


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_history_plots_one_point_per_epoch(tmp_path):
    history = [0.25, 0.12, 0.07, 0.05]
    figure = plot_history(history, tmp_path / "loss.png")
    (line,) = figure.axes[0].lines
    assert list(line.get_xdata()) == [1, 2, 3, 4] and list(line.get_ydata()) == history
    assert figure.axes[0].get_xlabel() == "epoch" and figure.axes[0].get_ylabel() == "mean loss"
    assert png_size(tmp_path / "loss.png") == (700, 420)


def test_history_as_svg_keeps_its_words_as_text(tmp_path):
    plot_history([0.3, 0.2, 0.1], tmp_path / "loss.svg", title="XOR, 3 epochs", log_scale=True)
    assert {"XOR, 3 epochs", "epoch", "mean loss"} <= svg_texts(tmp_path / "loss.svg")


def test_tutorial1_prediction_and_error_per_iteration(tmp_path):
    predictions, errors = tutorial1_training()
    figure = plot_series({"prediction": predictions, "target": [0.3] * len(predictions)}, tmp_path / "prediction.svg",
                         ylabel="prediction", title="One sigmoid neuron")
    prediction, target = figure.axes[0].lines
    assert list(prediction.get_ydata()) == predictions and set(target.get_ydata()) == {0.3}
    assert predictions[-1] < predictions[0]  # descending towards the target 0.3
    assert {"prediction", "target", "iteration", "One sigmoid neuron"} <= svg_texts(tmp_path / "prediction.svg")
    plot_series({"error": errors}, tmp_path / "error.png", ylabel="squared error")
    assert png_size(tmp_path / "error.png") == (700, 420)


def test_diverged_or_empty_histories_are_refused_with_the_place(tmp_path):
    with pytest.raises(ValueError, match=r"loss at epoch 3 is nan: training diverged there; .*values\[:2\]"):
        plot_history([0.5, 0.4, float("nan")], tmp_path / "loss.png")
    with pytest.raises(ValueError, match="an empty list"):
        plot_history([], tmp_path / "loss.png")
    with pytest.raises(TypeError, match="'error' at iteration 2 is not a number: 'x'"):
        plot_series({"error": [0.1, "x"]}, tmp_path / "e.png")
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_series({}, tmp_path / "e.png")
    with pytest.raises(ValueError, match="log_scale needs every loss > 0"):
        plot_history([0.1, 0.0], tmp_path / "loss.png", log_scale=True)
    assert list(tmp_path.iterdir()) == []


def test_the_format_comes_from_the_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"suffix '.jpg'; use .png or .svg"):
        plot_history([0.1], tmp_path / "loss.jpg")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_history([0.1], tmp_path / "missing" / "loss.png")


def test_without_matplotlib_the_error_names_the_extra(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ModuleNotFoundError, match=r'pip install "microgd\[plot\]"'):
        plot_history([0.1], tmp_path / "loss.png")


def test_decision_boundary_of_a_classifier(tmp_path):
    from microgd.nn import MLP

    X, y = [[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]], [0.0, 1.0, 1.0]
    model = MLP(2, [1], activation="sigmoid", weights=[[[4.0, 4.0, -2.0]]])  # boundary x1 + x2 = 0.5
    figure = plot_decision_boundary(model, X, y, tmp_path / "boundary.png", resolution=20)
    assert (tmp_path / "boundary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = figure.axes[0]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("x1", "x2")  # the inputs as a network's pictures name them
    assert [len(c.get_offsets()) for c in axes.collections if hasattr(c, "get_offsets")][-2:] == [1, 2]
    with pytest.raises(ValueError, match="rows of 2 inputs"):
        plot_decision_boundary(model, [[0.0]], [0.0], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="use .png or .svg"):
        plot_decision_boundary(model, X, y, tmp_path / "boundary.jpg")


def test_text_is_drawn_as_it_is_never_read_as_mathematics(tmp_path):
    """matplotlib reads text between two $ as mathematics: a file or column name such as $\\frac$ was an error."""
    texts = {"title": r"$\frac$ and $5", "xlabel": "cost in $ (x_1)", "ylabel": r"$\sqrt{2}$", "name": r"a $\b$ c"}
    plot_series({texts["name"]: [0.3, 0.2], "$2$": [0.1, 0.1]}, tmp_path / "series.svg", xlabel=texts["xlabel"],
                ylabel=texts["ylabel"], title=texts["title"])
    assert {*texts.values(), "$2$"} <= svg_texts(tmp_path / "series.svg")
    plot_history([0.3, 0.2], tmp_path / "loss.svg", title=r"$\frac$.csv")
    from microgd.nn import MLP

    model = MLP(2, [1], activation="sigmoid", weights=[[[4.0, 4.0, -2.0]]])
    plot_decision_boundary(model, [[0.0, 0.0], [1.0, 1.0]], [0.0, 1.0], tmp_path / "boundary.svg", title="$x$",
                           resolution=4)
    assert {r"$\frac$.csv", "$x$"} <= svg_texts(tmp_path / "loss.svg") | svg_texts(tmp_path / "boundary.svg")
