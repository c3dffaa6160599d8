"""Test set-up: 4 forced CPU devices so every sharded path runs sharded."""

import os

# Compiling dominates the suite (tiny models, few steps); two flags cut it and change no
# semantics (every comparison is made within one setting):
# - LLVM's optimisation level 0 halves the CPU time of compile-bound tests
#   (test_four_devices_equal_one_device: 52-56 s -> 25-28 s user);
# - XLA:CPU's older loop emitters instead of its MLIR fusion emitters take a further third
#   off (test_models.py + test_scst.py + test_captions_per_image.py: 343 s -> 233 s user,
#   test_train_step.py: 94 s -> 51-59 s; cold compilation cache).
# The tests that start `sat` processes with an environment of their own pass these too.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count=4 {TEST_XLA_FLAGS}"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile the same small programs many times, in this process and in the `sat`
# processes they start (kill/resume, multi-process, the rehearsal): XLA's persistent cache,
# set through the environment so that those processes share it, turns repeats into disk reads.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

import show_attend_tell  # noqa: E402, F401  (its default XLA flags, before the backend starts)


def pytest_configure(config):
    assert jax.device_count() == 4, "tests expect 4 forced CPU devices"


# The files that take longest, longest first (CPU time on 2 cores, cold compilation cache).
# `make test` runs files whole on two workers (--dist loadfile) in collection order
# (--no-loadscope-reorder), a worker taking the next file as it finishes one: heavy files first
# and the many light ones last even out the workers' ends (longest-processing-time first);
# by default xdist orders files by their number of tests, which leaves single-test end-to-end
# files such as test_multiprocess.py for last, run while the other worker idles.
HEAVY_FILES_FIRST = ("test_rehearsal.py", "test_reliability.py", "test_scst.py", "test_models.py",
                     "test_multiprocess.py", "test_evaluation.py", "test_configs.py",
                     "test_bad_inputs.py", "test_integrity.py", "test_gcs.py",
                     "test_train_loop.py", "test_training_mechanics.py", "test_decoding.py",
                     "test_cli.py", "test_train_step.py", "test_pipeline.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: index for index, name in enumerate(HEAVY_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


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
