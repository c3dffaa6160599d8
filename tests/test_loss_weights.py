"""Eq. 12 and 14 with non-unit weights, recomputed in NumPy, and the signs of their gradients.

λ (doubly stochastic), λ_r (REINFORCE) and λ_e (entropy) are all different and far from 1,
so ignoring one of them, or flipping the entropy bonus into a penalty, changes the numbers.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from show_attend_tell.losses import caption_loss
from show_attend_tell.models.captioner import DecoderOutputs
from show_attend_tell.models.decoder import StepOutput

LAMBDA, REINFORCE, ENTROPY, BASELINE = 0.7, 2.5, 0.3, -1.3
TARGETS = np.array([[4, 5, 2, 0], [3, 2, 0, 0], [5, 4, 3, 2]])  # <end> = 2, <pad> = 0
MASK = (TARGETS != 0).astype(np.float64)
SAMPLED = np.array([True, False, True])  # image 1 used the expected context


def config(reward="sum"):
    return ml_collections.ConfigDict(dict(
        doubly_stochastic_weight=LAMBDA, reinforce_weight=REINFORCE, entropy_weight=ENTROPY,
        reward=reward, baseline_decay=0.9))


def random_steps(seed=0, locations=3, vocab=6):
    rng = np.random.default_rng(seed)
    b, t = TARGETS.shape
    alpha = rng.dirichlet(np.ones(locations), size=(b, t))
    return dict(
        logits=rng.normal(size=(b, t, vocab)),
        alpha=alpha,
        location_log_prob=np.log(alpha[..., 1]),
        entropy=-(alpha * np.log(alpha)).sum(-1),
    )


def jax_loss(steps, reward="sum"):
    b, t = TARGETS.shape
    out = DecoderOutputs(
        steps=StepOutput(
            logits=jnp.asarray(steps["logits"], jnp.float32),
            alpha=jnp.asarray(steps["alpha"], jnp.float32),
            beta=jnp.ones((b, t)),
            location=jnp.ones((b, t), jnp.int32),
            location_log_prob=jnp.asarray(steps["location_log_prob"], jnp.float32),
            entropy=jnp.asarray(steps["entropy"], jnp.float32),
            context=jnp.zeros((b, t, 1))),
        used_expected=jnp.asarray(~SAMPLED))
    return caption_loss(out, jnp.asarray(TARGETS), jnp.asarray(MASK, jnp.float32), BASELINE,
                        config(reward))


def numpy_loss(steps, reward="sum"):
    """Per image: −Σ_t log p(y_t) + λ Σ_i (1 − Σ_t α_ti)² − [sampled] (λ_r (R − b) Σ_t log p(s_t)
    + λ_e Σ_t H_t), real tokens only; averaged over the batch."""
    logits = steps["logits"]
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    token = np.take_along_axis(log_p, TARGETS[..., None], -1)[..., 0] * MASK
    log_likelihood = token.sum(1)
    coverage = (steps["alpha"] * MASK[..., None]).sum(1)
    penalty = ((1 - coverage) ** 2).sum(-1)
    r = log_likelihood if reward == "sum" else log_likelihood / MASK.sum(1)
    per_image = (-log_likelihood + LAMBDA * penalty - SAMPLED * (
        REINFORCE * (r - BASELINE) * (steps["location_log_prob"] * MASK).sum(1)
        + ENTROPY * (steps["entropy"] * MASK).sum(1)))
    return per_image.mean(), -log_likelihood.sum() / MASK.sum(), coverage


@pytest.mark.parametrize("reward", ["sum", "mean"])
def test_loss_with_non_unit_weights_equals_numpy(reward):
    steps = random_steps()
    terms = jax_loss(steps, reward)
    loss, cross_entropy, _ = numpy_loss(steps, reward)
    np.testing.assert_allclose(terms.loss, loss, rtol=1e-5)
    # 9 real target tokens (3 + 2 + 4), <end> included, padding excluded.
    assert MASK.sum() == 9
    np.testing.assert_allclose(terms.cross_entropy, cross_entropy, rtol=1e-5)


def test_gradient_signs_and_sizes_of_each_weighted_term():
    steps = random_steps(1)
    b = len(TARGETS)

    def loss_of(name):
        def f(x):
            return jax_loss({**steps, name: x}).loss
        return jax.grad(f)(jnp.asarray(steps[name], jnp.float32))

    # Entropy is a bonus: more entropy lowers the loss of a sampled image (−λ_e / B per token).
    grad = np.asarray(loss_of("entropy"))
    np.testing.assert_allclose(grad, -ENTROPY / b * MASK * SAMPLED[:, None], rtol=1e-5, atol=1e-7)
    assert (grad[SAMPLED][MASK[SAMPLED] > 0] < 0).all()
    # REINFORCE: ∂/∂log p(s_t) = −λ_r (R − b) / B on real tokens of sampled images.
    log_p = steps["logits"] - np.log(np.exp(steps["logits"]).sum(-1, keepdims=True))
    reward = (np.take_along_axis(log_p, TARGETS[..., None], -1)[..., 0] * MASK).sum(1)
    grad = np.asarray(loss_of("location_log_prob"))
    expected = -REINFORCE * (reward - BASELINE)[:, None] / b * MASK * SAMPLED[:, None]
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)
    # Eq. 14: ∂/∂α_ti = −2λ (1 − Σ_t α_ti) / B on real steps; attention covering a cell less
    # than once is pushed up.
    _, _, coverage = numpy_loss(steps)
    grad = np.asarray(loss_of("alpha"))
    expected = -2 * LAMBDA * (1 - coverage)[:, None, :] / b * MASK[..., None]
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)
