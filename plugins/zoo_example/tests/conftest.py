"""Lets the plugin's tests import it from the source tree (no install needed for unit tests)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest  # noqa: E402


@pytest.fixture
def gin_clean():
    """Clears gin's bindings before and after a test."""
    import gin
    gin.clear_config()
    yield
    gin.clear_config()
