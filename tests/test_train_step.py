"""The sharded train step on synthetic batches: learning, and 4 devices == 1 device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.shapes import get_config
from show_attend_tell import parallel
from show_attend_tell.models.captioner import build_captioner
from show_attend_tell.state import make_optimizer, sharded_state
from show_attend_tell.train import compile_train_step

VOCAB = 12


def fixed_batch(batch=8, length=6, seed=0):
    """Captions that depend on the image (its mean colour picks the words)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)
    words = 4 + (images.reshape(batch, -1, 3).mean(1).argmax(-1)[:, None] + np.arange(length - 2))
    tokens = np.concatenate([np.ones((batch, 1)), words % VOCAB, np.full((batch, 1), 2)], axis=1)
    tokens[0, -2:] = [2, 0]  # one shorter caption: its last step is padding
    return {"image": images, "tokens": tokens.astype(np.int32)}


def fixed_group_batch(images=4, per_image=5):
    """:func:`fixed_batch`'s first ``images`` images, each with ``per_image`` captions (its
    caption with the words shifted by 0 .. per_image-1): rows i·C .. i·C + C-1 are image i's."""
    batch = fixed_batch(batch=images)
    tokens = np.repeat(batch["tokens"], per_image, axis=0)
    shift = np.arange(len(tokens))[:, None] % per_image
    words = tokens > 2  # not <pad>, <start>, <end>
    tokens[words] = 4 + (tokens - 4 + shift)[words] % (VOCAB - 4)
    return {"image": batch["image"], "tokens": tokens}


def setup(attention, mesh, **train_overrides):
    config = get_config("smoke_hard" if attention == "hard" else "smoke")
    config.train.learning_rate = 3e-3
    config.train.steps = 100
    config.model.dropout = 0.0
    for key, value in train_overrides.items():
        config.train[key] = value
    model = build_captioner(config.model, VOCAB)
    tx = make_optimizer(config.train)
    state, shardings = sharded_state(model, tx, config.seed, mesh)
    return compile_train_step(model, tx, config.train, mesh, shardings), state


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_loss_falls_on_a_tiny_set(attention):
    mesh = parallel.make_mesh()
    step, state = setup(attention, mesh)
    batch = parallel.global_batch(mesh, fixed_batch())
    losses, history = [], []
    for _ in range(30):
        state, metrics = step(state, batch)
        losses.append(float(metrics["cross_entropy"]))
        history.append({k: float(v) for k, v in metrics.items()})
    assert losses[-1] < 0.5 * losses[0], losses
    assert int(state.step) == 30
    if attention == "hard":
        # §4.1's baseline: b_k = 0.9 b_{k-1} + 0.1 · (mean reward of the batch's sampled
        # images), unchanged by a batch without samples; about half the images sample.
        baseline = 0.0
        for logged in history:
            if logged["sampled_fraction"] > 0:
                baseline = 0.9 * baseline + 0.1 * logged["reward"]
            np.testing.assert_allclose(logged["baseline"], baseline, rtol=1e-4, atol=1e-5)
        fractions = np.array([logged["sampled_fraction"] for logged in history])
        np.testing.assert_allclose(fractions * 8, np.round(fractions * 8), atol=1e-6)
        assert 0.3 < fractions.mean() < 0.7, fractions


# per_image 5: 4 images x 5 captions, one image group per device.
@pytest.mark.parametrize("attention,per_image", [("soft", 1), ("hard", 1), ("soft", 5)])
def test_four_devices_equal_one_device(attention, per_image):
    # SGD: Adam's first updates are ~lr·sign(g), which turns float rounding in near-zero
    # gradients into lr-sized differences; SGD compares the gradients themselves.
    batch = fixed_batch() if per_image == 1 else fixed_group_batch(per_image=per_image)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = parallel.make_mesh(devices)
        step, state = setup(attention, mesh, optimizer="sgd", learning_rate=0.1)
        for _ in range(2):
            state, metrics = step(state, parallel.global_batch(mesh, batch))
        results.append((jax.device_get(state.params), float(metrics["loss"])))
    (params_1, loss_1), (params_4, loss_4) = results
    np.testing.assert_allclose(loss_1, loss_4, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(params_1), jax.tree.leaves(params_4), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_state_is_replicated_and_batch_sharded():
    mesh = parallel.make_mesh()
    step, state = setup("soft", mesh)
    leaf = jax.tree.leaves(state.params)[0]
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
    batch = parallel.global_batch(mesh, fixed_batch())
    assert batch["image"].sharding.spec[0] == "data"
    old = state
    state, _ = step(state, batch)
    assert jax.tree.leaves(old.params)[0].is_deleted()  # donated


def test_batch_must_divide_over_devices():
    with pytest.raises(ValueError, match="config.train.batch_size=6 must be a multiple of"):
        parallel.check_batch_divisible(6, parallel.make_mesh(), "config.train.batch_size")


def test_bfloat16_compute_keeps_float32_params():
    mesh = parallel.make_mesh()
    config = get_config("smoke")
    config.model.dtype = "bfloat16"
    model = build_captioner(config.model, VOCAB)
    tx = make_optimizer(config.train)
    state, shardings = sharded_state(model, tx, 0, mesh)
    step = compile_train_step(model, tx, config.train, mesh, shardings)
    state, metrics = step(state, parallel.global_batch(mesh, fixed_batch()))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state.params))
    assert np.isfinite(float(metrics["loss"]))
