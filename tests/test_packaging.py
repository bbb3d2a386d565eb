"""What an install gets: one version, written once; the licence the metadata names; the extras the README
promises (the tests without PyTorch, PyTorch on its own, the notebook)."""

import importlib.metadata
import re
from pathlib import Path

import pytest

import microgd

ROOT = Path(__file__).resolve().parent.parent


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python's standard library from 3.11 on")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[ <>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_version_is_written_once_and_is_the_installed_ones():
    project = pyproject()["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert pyproject()["tool"]["hatch"]["version"]["path"] == "microgd/__init__.py"
    assert microgd.__version__ == importlib.metadata.version("microgd")


def test_the_licence_file_is_the_one_the_metadata_names():
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert pyproject()["project"]["license"] == "MIT"
    assert licence.startswith("MIT License\n\nCopyright (c) 2026 the microgd authors\n")


def test_the_extras_keep_pytorch_to_itself():
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    assert {"graphviz", "tqdm", "hypothesis"} <= names(project["dependencies"])  # microgd check needs hypothesis
    assert extras["torch"] == ["torch>=2.0"]
    assert all("torch" not in names(requirements) for extra, requirements in extras.items() if extra != "torch")
    assert {"pytest", "micrograd"} <= names(extras["test"])
    assert {"jupyterlab", "graphviz-pure"} <= names(extras["notebook"])
