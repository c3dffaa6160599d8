"""Beam search with a length penalty α > 0 on a decoder whose probabilities are a fixed table,
so the best caption is worked out by hand (GNMT penalty ((5 + |y|) / 6) ** α, |y| counting
<end>), not ranked with the module's own ``length_penalty``.

The table decoder emits, at step t and whatever came before, <end> with probability q_t and
the word ``a`` with 1 − q_t (other tokens ~0): the finished captions are ``a``ⁿ <end> with
log p = Σ_{s<n} log(1 − q_s) + log q_n.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from show_attend_tell.decoding import decode_annotations
from show_attend_tell.models.captioner import Captioner
from show_attend_tell.models.decoder import StepOutput
from show_attend_tell.models.encoders import PrecomputedAnnotations

END, WORD, VOCAB, MAX_LENGTH = 2, 4, 5, 4


class TableStep(nn.Module):
    """Stands in for DecoderStep: the carry counts steps; logits come from ``end_probs``."""

    end_probs: tuple

    def project_annotations(self, annotations):
        return annotations

    def initial_carry(self, annotations):
        zeros = jnp.zeros((annotations.shape[0], 1))
        return zeros, zeros

    def __call__(self, carry, prev_tokens, annotations, projected, use_expected, key, train):
        step = carry[0][:, 0].astype(jnp.int32)
        q = jnp.asarray(self.end_probs, jnp.float32)[step]
        tiny = jnp.full_like(q, 1e-9)
        probs = jnp.stack([tiny, tiny, q, tiny, 1.0 - q - 3e-9], axis=-1)  # pad start end unk a
        rows = prev_tokens.shape[0]
        out = StepOutput(logits=jnp.log(probs), alpha=jnp.ones((rows, 1)),
                         beta=jnp.ones((rows,)), location=jnp.zeros((rows,), jnp.int32),
                         location_log_prob=jnp.zeros((rows,)), entropy=jnp.zeros((rows,)),
                         context=jnp.zeros((rows, 1)))
        return (carry[0] + 1, carry[1]), out


def best(end_probs, alpha, beam_size):
    model = Captioner(encoder=PrecomputedAnnotations(num_annotations=1, annotation_dim=1),
                      step_module=TableStep(tuple(end_probs)))
    result = decode_annotations(model, {}, jnp.zeros((1, 1, 1)), beam_size=beam_size,
                                max_length=MAX_LENGTH, length_normalization=alpha)
    return [int(x) for x in result.tokens[0]], float(result.scores[0])


@pytest.mark.parametrize("beam_size", [2, 3])
def test_penalty_lets_a_longer_caption_win_and_search_does_not_stop_early(beam_size):
    """q = (0.5, 0.9, 0.8, 0.7), α = 1.5:
      <end>          log 0.5 = −0.6931          / (6/6)^1.5 = 1      -> −0.6931
      a <end>        log 0.5 + log 0.9 = −0.7985 / (7/6)^1.5 = 1.2601 -> −0.6337  (best)
      a a <end>      −0.6931 − 2.3026 − 0.2231   / (8/6)^1.5 = 1.5396 -> −2.0907
    Unnormalised (α = 0), <end> alone wins. After step 1 the finished <end> (−0.6931) is not
    above the alive ``a`` bounded by −0.6931 / (9/6)^1.5 = −0.3773, so the search goes on."""
    tokens, score = best((0.5, 0.9, 0.8, 0.7), 1.5, beam_size)
    assert tokens == [WORD, END, 0, 0]
    np.testing.assert_allclose(score, np.log(0.5) + np.log(0.9), rtol=1e-5)
    tokens, score = best((0.5, 0.9, 0.8, 0.7), 0.0, beam_size)
    assert tokens == [END, 0, 0, 0]
    np.testing.assert_allclose(score, np.log(0.5), rtol=1e-5)


@pytest.mark.parametrize("beam_size", [2, 3])
def test_penalty_counts_end_and_uses_alpha_as_the_exponent(beam_size):
    """q = (0.5, 0.2, 0.8, 0.2), α = 1.5:
      <end>          −0.6931 / 1                                      -> −0.6931  (best)
      a <end>        −0.6931 − 1.6094 = −2.3026 / 1.2601               -> −1.8273
      a a <end>      −0.6931 − 0.2231 − 0.2231 = −1.1394 / 1.5396      -> −0.7400
      a a a a (cut)  −0.6931 − 0.2231 − 1.6094 − 0.2231 = −2.7488 / 1.8371 -> −1.4963
    Counting |y| without <end> (penalties (5/6)^1.5 = 0.7607 and (7/6)^1.5) would rank
    a a <end> first (−0.9042 > −0.9112), and so would α² or 2α as the exponent."""
    tokens, score = best((0.5, 0.2, 0.8, 0.2), 1.5, beam_size)
    assert tokens == [END, 0, 0, 0]
    np.testing.assert_allclose(score, np.log(0.5), rtol=1e-5)
    # α = 3: a a <end> scores −1.1394 / (8/6)^3 = −0.4807, above <end>'s −0.6931 and the cut
    # a a a a's −2.7488 / (9/6)^3 = −0.8145.
    tokens, score = best((0.5, 0.2, 0.8, 0.2), 3.0, beam_size)
    assert tokens == [WORD, WORD, END, 0]
    np.testing.assert_allclose(score, np.log(0.5) + 2 * np.log(0.8), rtol=1e-5)
