"""Docstring examples (run with --doctest-modules) write their files into a temporary folder."""

import pytest


@pytest.fixture(autouse=True)
def _examples_write_into_a_temporary_folder(request, tmp_path, monkeypatch):
    if isinstance(request.node, pytest.DoctestItem):
        monkeypatch.chdir(tmp_path)
