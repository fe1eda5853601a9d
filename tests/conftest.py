import os

# Tests see two CPU devices, so the pmap paths are exercised with real splitting.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax  # noqa: E402
import pytest  # noqa: E402


def _precision(enable_x64: bool):
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", enable_x64)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def x64():
    """Runs a test in float64 and restores the previous precision afterwards."""
    yield from _precision(True)


@pytest.fixture
def x32():
    yield from _precision(False)
