"""Training mechanics against hand computation: the teacher-forcing shift and the loss mask of
the train step, the learning-rate schedules at given steps, gradient clipping and each
optimizer's update rule."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs.shapes import get_config
from show_attend_tell.models.captioner import Captioner, build_captioner
from show_attend_tell.state import TrainState, learning_rate_schedule, make_optimizer
from show_attend_tell.train import train_step

VOCAB, L, D = 9, 4, 3
# <start> = 1, <end> = 2, <pad> = 0: 5, 3 and 1 real targets (<end> included).
TOKENS = np.array([[1, 4, 5, 6, 7, 2, 0], [1, 8, 3, 2, 0, 0, 0], [1, 2, 0, 0, 0, 0, 0]],
                  np.int32)
REAL_TARGETS = 9


def test_train_step_loss_is_the_shifted_teacher_forced_nll_over_real_targets():
    """The step feeds y_0..y_{T-1} and scores y_1..y_T: the logits at t never see y_{t+1};
    padding after <end> is not scored, <end> is."""
    config = get_config("smoke")
    config.model.encoder.name = "precomputed"
    config.model.encoder.kwargs = {"num_annotations": L, "annotation_dim": D}
    config.model.hidden_dim, config.model.embed_dim, config.model.attention_dim = 8, 6, 5
    config.train.doubly_stochastic_weight = 0.0
    model = build_captioner(config.model, VOCAB)
    annotations = np.random.default_rng(0).normal(size=(3, L, D)).astype(np.float32)
    variables = jax.jit(functools.partial(model.init, method=Captioner.teacher_force))(
        jax.random.key(0), annotations, TOKENS[:, :2])
    params = jax.tree.map(
        lambda x: jnp.asarray(np.random.default_rng(1).normal(scale=0.5, size=x.shape), x.dtype),
        variables["params"])
    tx = make_optimizer(config.train)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                       baseline=jnp.zeros(()), rng=jax.random.key_data(jax.random.key(0)))
    step = jax.jit(lambda state, batch: train_step(model, tx, config.train, state, batch))
    _, metrics = step(state, {"image": annotations, "tokens": TOKENS})
    # Reference: logits for the inputs alone (no target in sight), scored by hand.
    decode = jax.jit(functools.partial(model.apply, method=Captioner.teacher_force))
    logits = np.asarray(decode({"params": params}, annotations, TOKENS[:, :-1]).steps.logits,
                        np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll, count = [], 0
    for row, caption in enumerate(TOKENS):
        targets = list(caption[1:caption.tolist().index(2) + 1])  # words then <end>
        nll.append(-sum(log_p[row, t, token] for t, token in enumerate(targets)))
        count += len(targets)
    assert count == REAL_TARGETS
    np.testing.assert_allclose(metrics["cross_entropy"], sum(nll) / REAL_TARGETS, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], np.mean(nll), rtol=1e-5)


def train_config(**overrides):
    config = ml_collections.ConfigDict(dict(
        learning_rate=0.1, warmup_steps=2, schedule="constant", steps=100, optimizer="sgd",
        grad_clip_norm=1e6))
    config.update(overrides)
    return config


def test_constant_schedule_warms_up_linearly():
    schedule = learning_rate_schedule(train_config(warmup_steps=10, learning_rate=1e-2))
    steps = np.array([0, 1, 5, 10, 11, 1000])
    np.testing.assert_allclose(schedule(steps), [0, 1e-3, 5e-3, 1e-2, 1e-2, 1e-2], rtol=1e-6)


def test_cosine_schedule_warms_up_then_decays_to_one_percent_at_the_last_step():
    """Warm-up 10 steps to 1e-2, then 1e-4 + (1e-2 − 1e-4)(1 + cos(π (s − 10) / 100)) / 2 up
    to train.steps = 110."""
    schedule = learning_rate_schedule(train_config(warmup_steps=10, learning_rate=1e-2,
                                                   schedule="cosine", steps=110))
    steps = np.array([0, 5, 10, 35, 60, 110])
    cosine = 1e-4 + (1e-2 - 1e-4) * (1 + np.cos(np.pi * (steps - 10) / 100)) / 2
    expected = np.where(steps < 10, 1e-2 * steps / 10, cosine)
    np.testing.assert_allclose(schedule(steps), expected, rtol=1e-5, atol=1e-9)


GRADIENTS = [np.array([0.3, -0.2, 0.1]), np.array([-0.1, 0.4, 0.2]), np.array([0.2, 0.1, -0.3])]


def run(tx, gradients):
    params = {"step_module": {"w": jnp.zeros(3)}}
    opt_state = tx.init(params)
    for g in gradients:
        updates, opt_state = tx.update({"step_module": {"w": jnp.asarray(g)}}, opt_state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params["step_module"]["w"], np.float64), opt_state


def by_hand(optimizer, gradients, clip=np.inf):
    """Three updates with learning rates 0, 0.05, 0.1 (2 warm-up steps to 0.1)."""
    w, m, v = np.zeros(3), np.zeros(3), np.zeros(3)
    for k, g in enumerate(gradients):
        norm = np.sqrt((g ** 2).sum())
        g = g * min(1.0, clip / norm)
        lr = 0.1 * min(k, 2) / 2
        if optimizer == "sgd":  # momentum 0.9
            m = g + 0.9 * m
            w = w - lr * m
        elif optimizer == "adam":  # β = (0.9, 0.999), ε = 1e-8, bias-corrected
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g ** 2
            w = w - lr * (m / (1 - 0.9 ** (k + 1))) / (np.sqrt(v / (1 - 0.999 ** (k + 1))) + 1e-8)
        else:  # rmsprop: decay 0.9, ε = 1e-8 inside the root
            v = 0.9 * v + 0.1 * g ** 2
            w = w - lr * g / np.sqrt(v + 1e-8)
    return w


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_each_optimizer_follows_its_update_rule(optimizer):
    w, _ = run(make_optimizer(train_config(optimizer=optimizer)), GRADIENTS)
    np.testing.assert_allclose(w, by_hand(optimizer, GRADIENTS), rtol=1e-5, atol=1e-7)


def test_a_large_gradient_is_clipped_to_the_global_norm():
    """Gradients of norm ~40-50 with clip 1: SGD (linear in g, unlike Adam) moves by the
    clipped gradients; without clipping the weights would move ~45 times as far."""
    large = [40 * g / np.sqrt((g ** 2).sum()) + 5 * g for g in GRADIENTS]
    w, _ = run(make_optimizer(train_config(grad_clip_norm=1.0)), large)
    np.testing.assert_allclose(w, by_hand("sgd", large, clip=1.0), rtol=1e-5, atol=1e-7)
    assert np.abs(w - by_hand("sgd", large)).max() > 1.0
