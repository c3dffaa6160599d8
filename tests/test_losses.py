"""Eq. 12 and 14: masking, the doubly stochastic term, REINFORCE terms, the baseline."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from show_attend_tell.losses import (
    caption_loss,
    doubly_stochastic_penalty,
    sequence_log_likelihood,
    update_baseline,
)
from show_attend_tell.models.captioner import DecoderOutputs
from show_attend_tell.models.decoder import StepOutput


def train_config(**overrides):
    config = ml_collections.ConfigDict(dict(
        doubly_stochastic_weight=1.0, reinforce_weight=1.0, entropy_weight=0.1, reward="sum",
        baseline_decay=0.9,
    ))
    config.update(overrides)
    return config


def outputs(batch=2, length=3, locations=4, vocab=5, used_expected=None, seed=0):
    rng = np.random.default_rng(seed)
    alpha = jax.nn.softmax(jnp.asarray(rng.normal(size=(batch, length, locations))), -1)
    steps = StepOutput(
        logits=jnp.asarray(rng.normal(size=(batch, length, vocab)), jnp.float32),
        alpha=alpha,
        beta=jnp.ones((batch, length)),
        location=jnp.zeros((batch, length), jnp.int32),
        location_log_prob=jnp.log(alpha[..., 0]),
        entropy=-(alpha * jnp.log(alpha)).sum(-1),
        context=jnp.zeros((batch, length, 1)),
    )
    if used_expected is None:
        used_expected = jnp.ones(batch, bool)
    return DecoderOutputs(steps=steps, used_expected=jnp.asarray(used_expected))


def test_doubly_stochastic_penalty_ignores_padded_steps():
    alpha = jnp.full((1, 4, 2), 0.5)
    full = doubly_stochastic_penalty(alpha, jnp.ones((1, 4)))
    np.testing.assert_allclose(full, [2 * (1 - 2.0) ** 2])
    masked = doubly_stochastic_penalty(alpha, jnp.asarray([[1.0, 1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(masked, [0.0])  # two steps of 0.5 cover every cell once


def test_log_likelihood_counts_real_tokens_only():
    logits = jnp.log(jnp.asarray([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    total, per_token = sequence_log_likelihood(logits, jnp.asarray([[0, 1, 1]]),
                                               jnp.asarray([[1.0, 1.0, 0.0]]))
    np.testing.assert_allclose(total, [np.log(0.5) + np.log(0.75)], rtol=1e-6)
    assert per_token[0, 2] == 0


def test_soft_loss_is_nll_plus_penalty_averaged_over_batch():
    out = outputs()
    targets = jnp.asarray([[1, 2, 0], [3, 4, 2]])
    mask = (targets != 0).astype(jnp.float32)
    terms = caption_loss(out, targets, mask, 0.0, train_config())
    nll, _ = sequence_log_likelihood(out.steps.logits, targets, mask)
    penalty = doubly_stochastic_penalty(out.steps.alpha, mask)
    np.testing.assert_allclose(terms.loss, jnp.mean(-nll + penalty), rtol=1e-6)
    np.testing.assert_allclose(terms.cross_entropy, -nll.sum() / 5, rtol=1e-6)
    assert float(terms.sampled_fraction) == 0.0


def test_reinforce_terms_only_for_sampled_images_and_gradient_matches_eq_12():
    targets = jnp.asarray([[1, 2, 3], [3, 4, 2]])
    mask = jnp.ones((2, 3))
    baseline = -2.0
    config = train_config()

    def loss_of(location_log_prob, used):
        out = outputs(used_expected=used)
        out = out._replace(steps=out.steps._replace(location_log_prob=location_log_prob))
        return caption_loss(out, targets, mask, baseline, config).loss

    base = outputs().steps.location_log_prob
    grad = jax.grad(loss_of)(base, jnp.asarray([False, True]))
    reward, _ = sequence_log_likelihood(outputs().steps.logits, targets, mask)
    # d loss / d log p(s_t|a) = -λ_r (R - b) / B for the sampled image, 0 for the other.
    np.testing.assert_allclose(grad[0], -(reward[0] - baseline) / 2 * np.ones(3), rtol=1e-5)
    np.testing.assert_allclose(grad[1], 0.0)


@pytest.mark.parametrize("reward", ["sum", "mean"])
def test_reward_and_baseline_update(reward):
    out = outputs(used_expected=[False, False])
    targets = jnp.asarray([[1, 2, 0], [3, 4, 2]])
    mask = (targets != 0).astype(jnp.float32)
    terms = caption_loss(out, targets, mask, 0.0, train_config(reward=reward))
    nll, _ = sequence_log_likelihood(out.steps.logits, targets, mask)
    expected = nll if reward == "sum" else nll / mask.sum(1)
    np.testing.assert_allclose(terms.reward, expected.mean(), rtol=1e-6)
    np.testing.assert_allclose(update_baseline(1.0, terms, 0.9),
                               0.9 + 0.1 * expected.mean(), rtol=1e-6)
    no_sample = caption_loss(outputs(), targets, mask, 0.0, train_config())
    assert float(update_baseline(1.0, no_sample, 0.9)) == 1.0


def test_unknown_reward_is_an_error():
    with pytest.raises(ValueError, match="config.train.reward='max'"):
        caption_loss(outputs(), jnp.ones((2, 3), jnp.int32), jnp.ones((2, 3)), 0.0,
                     train_config(reward="max"))
