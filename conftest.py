"""Docstring examples (run with --doctest-modules) write their files into a temporary folder.

Tests and docstring examples that need PyTorch (the ``torch`` extra) skip without it, saying why: a test
carries the ``requires_torch`` marker, or calls the ``torch_or_skip`` fixture's function where torch comes
in; an example that mentions torch, in its code or its name (``microgd.torch_bridge``, ``MLP.to_torch``), is
marked by itself. Under CI (the environment variable CI set, as
.ci/run does) a missing torch fails them instead."""

import os

import pytest

TORCH_MISSING = 'PyTorch is not installed (the torch extra: pip install -e ".[torch]")'


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "requires_torch: needs PyTorch; skipped without it, a failure when the CI variable is set")


def pytest_collection_modifyitems(items):
    for item in items:
        if isinstance(item, pytest.DoctestItem) and any(
                "torch" in text for text in [item.dtest.name, *(e.source for e in item.dtest.examples)]):
            item.add_marker(pytest.mark.requires_torch)


def pytest_runtest_setup(item):
    if item.get_closest_marker("requires_torch"):
        require_torch()


def require_torch():
    """torch, or a skip that says why; under CI a missing torch is a failure, never a skip."""
    if os.environ.get("CI"):
        try:
            import torch
        except ImportError as missing:
            pytest.fail(f"{TORCH_MISSING}, and CI must run every PyTorch test: {missing}", pytrace=False)
        return torch
    return pytest.importorskip("torch", reason=TORCH_MISSING)


@pytest.fixture(scope="session")
def torch_or_skip():
    """``torch_or_skip()`` in a test: torch, or the test skips there (a failure under CI), after what ran."""
    return require_torch


@pytest.fixture(autouse=True)
def _examples_write_into_a_temporary_folder(request, tmp_path, monkeypatch):
    if isinstance(request.node, pytest.DoctestItem):
        monkeypatch.chdir(tmp_path)
