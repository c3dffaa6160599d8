"""Test set-up: 4 forced CPU devices so every sharded path runs sharded."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

import pytest  # noqa: E402


def pytest_configure(config):
    assert jax.device_count() == 4, "tests expect 4 forced CPU devices"


@pytest.fixture
def mesh():
    from show_attend_tell.parallel import make_mesh

    return make_mesh()
