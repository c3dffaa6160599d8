"""Frozen or fine-tuned encoders: optimizer groups, the encoder's own learning rate, and
batch-norm statistics that never train."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs.coco import get_config
from show_attend_tell.state import make_optimizer, parameter_labels


def encoder_config(trainable: bool, learning_rate: float = 1e-4):
    return ml_collections.ConfigDict({"name": "resnet50", "learning_rate": learning_rate,
                                      "kwargs": {"trainable": trainable}})


def tiny_params() -> dict:
    """A captioner-shaped tree: one convolution and batch norm of a backbone, one decoder
    layer."""
    bn = {name: jnp.ones(8) for name in ("scale", "bias", "mean", "var")}
    return {"encoder": {"conv1_conv": {"kernel": jnp.ones((3, 3, 3, 8)), "bias": jnp.ones(8)},
                        "conv1_bn": bn},
            "step_module": {"output": {"kernel": jnp.ones((4, 3))}}}


@pytest.mark.parametrize("trainable", [False, True])
def test_labels_freeze_encoder_or_only_its_statistics(trainable):
    labels = parameter_labels(tiny_params(), encoder_config(trainable))
    encoder = labels["encoder"]
    assert labels["step_module"]["output"]["kernel"] == "decoder"
    assert encoder["conv1_bn"]["mean"] == encoder["conv1_bn"]["var"] == "frozen"
    expected = "encoder" if trainable else "frozen"
    assert encoder["conv1_conv"]["kernel"] == encoder["conv1_bn"]["scale"] == expected


@pytest.mark.parametrize("trainable", [False, True])
def test_encoder_moves_at_its_own_rate_or_not_at_all(trainable):
    train = get_config("soft").train  # Adam, constant 1e-3 after a 1-step warm-up
    train.warmup_steps = 0
    tx = make_optimizer(train, encoder_config(trainable, learning_rate=1e-5))
    params = tiny_params()
    grads = jax.tree.map(jnp.ones_like, params)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(2):  # Adam's normalised update is lr·sign(g) for a constant gradient
        updates, state = update(grads, state, params)
    decoder = np.abs(updates["step_module"]["output"]["kernel"])
    np.testing.assert_allclose(decoder, 1e-3, rtol=1e-3)
    kernel = np.abs(updates["encoder"]["conv1_conv"]["kernel"])
    np.testing.assert_allclose(kernel, 1e-5 if trainable else 0.0, rtol=1e-3)
    assert not np.any(updates["encoder"]["conv1_bn"]["mean"])
    assert not np.any(updates["encoder"]["conv1_bn"]["var"])


def test_frozen_encoder_keeps_no_optimizer_state():
    train = get_config("soft").train
    params = tiny_params()
    size = lambda tree: sum(x.size for x in jax.tree.leaves(tree))  # noqa: E731
    frozen = size(make_optimizer(train, encoder_config(False)).init(params))
    tuned = size(make_optimizer(train, encoder_config(True)).init(params))
    trained = 3 * 3 * 3 * 8 + 8 + 2 * 8  # kernel, bias, scale, bias: Adam's mu and nu each
    assert tuned - frozen == 2 * trained  # frozen weights and statistics: no Adam moments
