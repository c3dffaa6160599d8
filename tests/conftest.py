"""Test set-up: 4 forced CPU devices so every sharded path runs sharded."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

import show_attend_tell  # noqa: E402, F401  (its default XLA flags, before the backend starts)

# Tests compile the same small programs many times; XLA's persistent cache turns the repeats
# (within a run and across runs) into disk reads.
jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import pytest  # noqa: E402


def pytest_configure(config):
    assert jax.device_count() == 4, "tests expect 4 forced CPU devices"


@pytest.fixture
def mesh():
    from show_attend_tell.parallel import make_mesh

    return make_mesh()


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """A TFDS data_dir holding shapes config 'tiny' (48 / 8 / 12 images), built once."""
    from show_attend_tell.data.build import build_dataset

    folder = tmp_path_factory.mktemp("tfds")
    build_dataset("shapes", folder, "tiny", num_train=48, num_validation=8, num_test=12)
    return folder


@pytest.fixture(scope="session")
def random_vgg19_weights(tmp_path_factory):
    """A VGG-19 weights file (.npz, as `sat weights import` writes) of random He-scaled
    weights, standing in for the ImageNet ones offline."""
    import numpy as np

    from show_attend_tell.weights.pretrained import encoder_param_shapes
    from show_attend_tell.weights.store import flatten, save_weights

    rng = np.random.default_rng(0)
    weights = {name: rng.normal(0, np.sqrt(2 / max(1, int(np.prod(shape.shape[:-1])))), shape.shape)
               for name, shape in flatten(encoder_param_shapes("vgg19")).items()}
    return save_weights(tmp_path_factory.mktemp("weights") / "vgg19.npz", "vgg19", weights)
