"""README stays true: every Python block runs alone in a fresh interpreter and prints what its comments say;
every ``console`` block's commands run and succeed, as a new user would paste them."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
CONSOLE_BLOCKS = re.findall(r"```console\n(.*?)```", README, re.S)


def claimed_outputs(block: str) -> list[str]:
    """What ``print(...)  # 0.010618 ...`` lines promise: the first word of their comment, in order."""
    return [first_word(m.group(1)) for m in re.finditer(r"^\s*print\(.*\)\s+#(.*)$", block, re.M)]


def first_word(line: str) -> str:
    words = line.split()
    return words[0].rstrip(",:;") if words else ""


def environment(folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROGD_")}
    env.update(MPLBACKEND="Agg", PYTHONPATH="", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


@pytest.fixture
def folder(tmp_path):
    """A fresh folder holding the repository's demos/ (the sample data the README uses)."""
    shutil.copytree(ROOT / "demos", tmp_path / "demos", ignore=shutil.ignore_patterns("*.ipynb", "__pycache__"))
    return tmp_path


def test_the_readme_has_blocks_to_run():
    assert len(PYTHON_BLOCKS) >= 8 and len(CONSOLE_BLOCKS) >= 2
    assert sum(len(claimed_outputs(b)) for b in PYTHON_BLOCKS) >= 3


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"python-{i + 1}" for i in range(len(PYTHON_BLOCKS))])
def test_each_python_block_runs_alone_and_prints_what_it_claims(block, folder):
    done = subprocess.run([sys.executable, "-c", block], cwd=folder, env=environment(folder), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = [first_word(line) for line in done.stdout.splitlines()]
    claims = claimed_outputs(block)
    assert printed[:len(claims)] == claims, done.stdout


def commands(block: str) -> list[str]:
    """The ``$ `` lines of a console block, each with its ``\\`` continuation lines; shown output is skipped."""
    found: list[str] = []
    continued = False
    for line in block.splitlines():
        if continued:
            found[-1] = found[-1][:-1] + " " + line.strip()
        elif line.startswith("$ "):
            found.append(line[2:])
        continued = bool(found) and found[-1].endswith("\\") and (continued or line.startswith("$ "))
    return found


@pytest.mark.parametrize("block", CONSOLE_BLOCKS, ids=[f"console-{i + 1}" for i in range(len(CONSOLE_BLOCKS))])
def test_each_console_block_runs(block, folder):
    assert commands(block)
    for command in commands(block):
        done = subprocess.run(shlex.split(command, comments=True), cwd=folder, env=environment(folder),
                              capture_output=True, text=True, timeout=120)
        expected = 1 if "# exits 1" in command else 0
        assert done.returncode == expected, f"{command}\n{done.stdout}\n{done.stderr}"


def code_lines(text: str) -> list[str]:
    """The lines of code in ``text``: comments and blank lines dropped, spacing normalised."""
    lines = (re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines())
    return [" ".join(line.split()) for line in lines if line and not line.startswith("#")]


def test_the_sweep_shown_in_the_design_section_is_the_engines():
    import inspect

    from microgd import engine

    (shown,) = re.findall(r"^```\n(def sweep\(.*?)^```", README, re.S | re.M)
    source = inspect.getsource(engine.sweep)
    body = source[source.index('"""', source.index('"""') + 3) + 3:]  # after the docstring
    assert code_lines(shown)[1:] == [*code_lines(body)[:-1], "return grads"]
    assert code_lines(body)[-1] == "return _finite_sums(grads)"  # the one line the README simplifies: the check
