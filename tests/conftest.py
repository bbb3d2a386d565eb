"""Hypothesis profiles: `ci` (the default) is deterministic and bounded; HYPOTHESIS_PROFILE=dev searches wider.
(PyTorch's marker and fixture, ``requires_torch`` and ``torch_or_skip``, live in the conftest.py above, which
the docstring examples share.)"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, max_examples=60, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def forget_defined_ops():
    """Ops a test defines with define_op leave the registry when it ends, so tables of every op stay whole."""
    from microgd import rules

    before = dict(rules._REGISTRY)
    yield
    rules._REGISTRY.clear()
    rules._REGISTRY.update(before)

