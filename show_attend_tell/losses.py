"""Training objectives (paper §4.1 eq. 10–12 for hard attention, §4.2.1 eq. 14 for soft).

Shape letters: B batch, T caption steps, L annotations, V vocabulary.
All losses are per-example quantities averaged over the batch (the Theano code sums over
the batch, which ties the learning rate to the batch size).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from show_attend_tell.errors import InvalidInput
from show_attend_tell.models.captioner import DecoderOutputs

REWARDS = ("sum", "mean")


class LossTerms(NamedTuple):
    """Scalars of one batch: the objective and what is logged."""

    loss: jnp.ndarray
    cross_entropy: jnp.ndarray  # per real token
    token_accuracy: jnp.ndarray
    doubly_stochastic: jnp.ndarray
    reward: jnp.ndarray  # mean log p(y|s,a) over images that sampled (hard)
    entropy: jnp.ndarray  # mean H[α_t] per real token
    sampled_fraction: jnp.ndarray  # images that used a sample rather than the expectation


def sequence_log_likelihood(logits, targets, mask):
    """``log p(y | a)`` per example and per token: logits ``[B, T, V]``, targets/mask ``[B, T]``
    -> (sum over real tokens ``[B]``, token log-probs ``[B, T]``)."""
    token_log_probs = -optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    token_log_probs = token_log_probs * mask
    return token_log_probs.sum(axis=1), token_log_probs


def doubly_stochastic_penalty(alpha, mask):
    """Eq. 14's ``Σ_i (1 − Σ_t α_ti)²`` per example; α ``[B, T, L]``, mask ``[B, T]`` -> ``[B]``.

    Padded steps are masked out, so a short caption is not pushed to spread attention over
    steps it never takes.
    """
    coverage = jnp.einsum("btl,bt->bl", alpha, mask)
    return jnp.sum((1.0 - coverage) ** 2, axis=-1)


def caption_loss(outputs: DecoderOutputs, targets, mask, baseline, train_config) -> LossTerms:
    """Eq. 14 (soft) and the hard-attention surrogate of eq. 12.

    Soft: ``−log p(y|a) + λ Σ_i (1 − Σ_t α_ti)²``.
    Hard: adds ``−λ_r · sg(R − b) · Σ_t log p(s_t|a) − λ_e · Σ_t H[s_t]`` where the reward
    ``R = log p(y|s,a)`` (sequence sum, or per-token mean with ``reward='mean'`` as in the
    Theano code) and b is the moving-average baseline. Images that used the expected context
    (the 0.5 switch of §4.1) have no sample, so they add no REINFORCE term.

    targets ``[B, T]`` int32, mask ``[B, T]`` float (1 on real tokens incl. <end>).
    """
    if train_config.reward not in REWARDS:
        raise InvalidInput(f"config.train.reward={train_config.reward!r}; expected one of {REWARDS}")
    steps = outputs.steps
    mask = mask.astype(jnp.float32)
    tokens_per_example = jnp.maximum(mask.sum(axis=1), 1.0)
    log_likelihood, _ = sequence_log_likelihood(steps.logits, targets, mask)
    penalty = doubly_stochastic_penalty(steps.alpha, mask)
    loss = -log_likelihood + train_config.doubly_stochastic_weight * penalty

    sampled = (~outputs.used_expected).astype(jnp.float32)
    reward = log_likelihood if train_config.reward == "sum" else log_likelihood / tokens_per_example
    location_log_prob = jnp.sum(steps.location_log_prob * mask, axis=1)
    entropy = jnp.sum(steps.entropy * mask, axis=1)
    advantage = jax.lax.stop_gradient(reward - baseline)
    loss = loss - sampled * (
        train_config.reinforce_weight * advantage * location_log_prob
        + train_config.entropy_weight * entropy
    )
    correct = (jnp.argmax(steps.logits, axis=-1) == targets) * mask
    sampled_count = jnp.maximum(sampled.sum(), 1.0)
    return LossTerms(
        loss=loss.mean(),
        cross_entropy=-log_likelihood.sum() / mask.sum(),
        token_accuracy=correct.sum() / mask.sum(),
        doubly_stochastic=penalty.mean(),
        reward=jnp.sum(sampled * reward) / sampled_count,
        entropy=jnp.sum(steps.entropy * mask) / mask.sum(),
        sampled_fraction=sampled.mean(),
    )


def update_baseline(baseline, terms: LossTerms, decay: float):
    """§4.1: ``b_k = decay · b_{k−1} + (1 − decay) · mean reward``; unchanged when no image
    of the batch sampled (the reward is then undefined)."""
    updated = decay * baseline + (1.0 - decay) * terms.reward
    return jnp.where(terms.sampled_fraction > 0, updated, baseline)
