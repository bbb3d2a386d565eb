"""README stays true: its Python examples run, in order, and print what they say."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_examples_run_and_print_what_they_claim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for i, block in enumerate(blocks):
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        namespace["test_engine_against_finite_differences"]()
    lines = printed.getvalue().splitlines()
    assert lines[:2] == ["0.010618", "-0.7268619813835873"]
    assert "agrees with the engine" in lines[2]
    for name in ("neuron.svg", "backprop.html", "mlp.svg", "model.json"):
        assert (tmp_path / name).stat().st_size > 0
