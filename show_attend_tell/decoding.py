"""Free-running caption decoding: greedy and batched beam search (paper §5.2 uses beam search).

Shape letters: B batch, K beam, T decoded steps (``max_length``), L annotations, D annotation
dimension, H LSTM hidden size, V vocabulary size.

Both searches are one ``jax.jit`` program with fixed shapes: a ``lax.while_loop`` over a
``flax.struct.dataclass`` state, for a whole (possibly sharded) batch of images. The
annotations and their attention projection ``W_a a`` (eq. 4) are computed once per image by
``Captioner.encode``/``Captioner.prepare`` and shared by an image's K beams, never copied;
each step runs eq. 1–7 on ``B·K`` rows.

Conventions of the result (:class:`DecodeResult`):
  * ``max_length`` counts emitted tokens, ``<end>`` included; a caption that has not emitted
    ``<end>`` after ``max_length`` steps is returned as it stands (``max_length`` words, no
    ``<end>``) rather than failing.
  * beam search returns the best of the finished hypotheses and those still alive at
    ``max_length``, all ranked by the same length-normalised score (an alive one counts its
    ``max_length`` words as |y|): a 30-word caption with no room left for ``<end>`` competes
    with a short finished one on equal terms.
  * ``scores`` are sums of log-probabilities of the emitted tokens, ``<end>`` included, never
    length-normalised; length normalisation only ranks hypotheses.
  * ``<pad>`` and ``<start>`` are never emitted (they are not targets in training, so their
    probabilities mean nothing); log-probabilities are not renormalised after masking them.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from show_attend_tell.data.vocab import END, PAD, START
from show_attend_tell.errors import InvalidInput
from show_attend_tell.models.captioner import Captioner, DecodeCache

NEG_INF = -jnp.inf


class DecodeResult(NamedTuple):
    """The best caption per image."""

    tokens: jnp.ndarray  # [B, T] int32: words, then <end>, then <pad>
    lengths: jnp.ndarray  # [B] int32: number of words (<end> excluded)
    scores: jnp.ndarray  # [B] float32: Σ log p of the emitted tokens, <end> included
    alphas: jnp.ndarray  # [B, T, L] float32: α_t of each emitted token, zeros after <end>
    locations: jnp.ndarray  # [B, T] int32: attended (hard: sampled) location of each token


def length_penalty(num_tokens, alpha: float):
    """GNMT length penalty ``((5 + |y|) / 6) ** alpha`` (Wu et al. 2016); alpha=0 gives 1."""
    return ((5.0 + num_tokens) / 6.0) ** alpha


def _log_probs(logits: jnp.ndarray) -> jnp.ndarray:
    """logits ``[..., V]`` -> log p with ``<pad>``/``<start>`` made impossible."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    banned = (jnp.arange(logits.shape[-1]) == PAD) | (jnp.arange(logits.shape[-1]) == START)
    return jnp.where(banned, NEG_INF, log_probs)


def _step(model, variables, cache: DecodeCache, carry, prev_tokens, sample_key, step):
    """One decoder step on ``[N]`` rows; hard models sample a location when given a key.

    Without a key ``Captioner.step`` uses the expected context (the deterministic test-time
    choice for hard attention); with one, every row draws its own location from α_t (eq. 8).
    """
    if sample_key is None:
        key, use_expected = None, None
    else:
        key = jax.random.fold_in(sample_key, step)
        use_expected = jnp.zeros(prev_tokens.shape[0], bool)
    return model.apply(variables, cache, carry, prev_tokens, use_expected, key,
                       method=Captioner.step)


def _words(tokens: jnp.ndarray) -> jnp.ndarray:
    """tokens ``[..., T]`` -> number of words before the first ``<end>`` (T if none)."""
    is_end = tokens == END
    return jnp.where(is_end.any(-1), jnp.argmax(is_end, axis=-1), tokens.shape[-1]).astype(
        jnp.int32
    )


@struct.dataclass
class GreedyState:
    step: jnp.ndarray  # [] int32
    carry: tuple  # (c, h), each [B, H]
    last: jnp.ndarray  # [B] int32: the previous token
    tokens: jnp.ndarray  # [B, T]
    alphas: jnp.ndarray  # [B, T, L]
    locations: jnp.ndarray  # [B, T]
    log_prob: jnp.ndarray  # [B]
    finished: jnp.ndarray  # [B] bool


def _greedy(model, variables, cache: DecodeCache, max_length: int, sample_key) -> DecodeResult:
    """Emit the most probable token at each step until every caption has emitted ``<end>``."""
    batch, num_locations = cache.annotations.shape[:2]

    def body(state: GreedyState) -> GreedyState:
        carry, out = _step(model, variables, cache, state.carry, state.last, sample_key,
                           state.step)
        log_probs = _log_probs(out.logits)
        token = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
        live = ~state.finished
        token = jnp.where(live, token, PAD)
        gained = jnp.take_along_axis(log_probs, token[:, None], axis=1)[:, 0]
        t = state.step
        return GreedyState(
            step=t + 1,
            carry=carry,
            last=token,
            tokens=state.tokens.at[:, t].set(token),
            alphas=state.alphas.at[:, t].set(jnp.where(live[:, None], out.alpha, 0.0)),
            locations=state.locations.at[:, t].set(jnp.where(live, out.location, 0)),
            log_prob=state.log_prob + jnp.where(live, gained, 0.0),
            finished=state.finished | (token == END),
        )

    def cond(state: GreedyState):
        return (state.step < max_length) & ~state.finished.all()

    state = jax.lax.while_loop(cond, body, GreedyState(
        step=jnp.array(0, jnp.int32),
        carry=cache.carry,
        last=jnp.full((batch,), START, jnp.int32),
        tokens=jnp.zeros((batch, max_length), jnp.int32),
        alphas=jnp.zeros((batch, max_length, num_locations), jnp.float32),
        locations=jnp.zeros((batch, max_length), jnp.int32),
        log_prob=jnp.zeros((batch,), jnp.float32),
        finished=jnp.zeros((batch,), bool),
    ))
    return DecodeResult(state.tokens, _words(state.tokens), state.log_prob, state.alphas,
                        state.locations)


@struct.dataclass
class BeamState:
    """Alive hypotheses (still extendable) and finished ones (ended with ``<end>``)."""

    step: jnp.ndarray  # [] int32
    carry: tuple  # (c, h) of the alive hypotheses, each [B·K, H]
    alive_tokens: jnp.ndarray  # [B, K, T]
    alive_alphas: jnp.ndarray  # [B, K, T, L]
    alive_locations: jnp.ndarray  # [B, K, T]
    alive_log_probs: jnp.ndarray  # [B, K]; -inf marks an empty slot
    finished_tokens: jnp.ndarray  # [B, K, T]
    finished_alphas: jnp.ndarray  # [B, K, T, L]
    finished_locations: jnp.ndarray  # [B, K, T]
    finished_log_probs: jnp.ndarray  # [B, K]
    finished_scores: jnp.ndarray  # [B, K] length-normalised; -inf marks an empty slot


def _gather(x: jnp.ndarray, index: jnp.ndarray) -> jnp.ndarray:
    """x ``[B, K, ...]``, index ``[B, K']`` -> ``x[b, index[b, k]]`` ``[B, K', ...]``."""
    index = index.reshape(index.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, index, axis=1)


def _beam(model, variables, cache: DecodeCache, beam_size: int, max_length: int,
          length_normalization: float, sample_key) -> DecodeResult:
    """Beam search keeping the K best hypotheses by Σ log p (K ≥ 1).

    Each step extends every alive hypothesis by every token and keeps the K best of the
    ``K·V`` candidates; those ending in ``<end>`` move to a separate finished set (the K best by
    length-normalised score), the others stay alive. Selecting from the top K (not 2K as in
    flax's WMT example) makes K = 1 exactly greedy search. The loop stops at ``max_length`` or
    once no alive hypothesis can still beat an image's best finished one: alive log-probs only
    fall, and for alpha ≥ 0 the penalty grows with length, so ``alive / penalty(T)`` bounds them
    and everything they can become, finished or cut at ``max_length``. The result is the best
    by length-normalised score of the finished hypotheses and, when the loop reached
    ``max_length``, of the alive ones (``Σ log p / penalty(T)``).
    """
    batch, num_locations = cache.annotations.shape[:2]
    k = beam_size
    # Rows b·K .. b·K + K-1 are image b's hypotheses: only the LSTM state is per row; the
    # attention reads each image's annotations once for its K rows.
    cache = cache._replace(carry=jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), cache.carry))
    max_penalty = length_penalty(max_length, length_normalization)

    def body(state: BeamState) -> BeamState:
        t = state.step
        last = jnp.where(t == 0, START, state.alive_tokens[:, :, jnp.maximum(t - 1, 0)])
        carry, out = _step(model, variables, cache, state.carry, last.reshape(-1), sample_key, t)
        log_probs = _log_probs(out.logits)
        vocab = log_probs.shape[-1]
        candidates = state.alive_log_probs[:, :, None] + log_probs.reshape(batch, k, vocab)
        top_log_probs, top_index = jax.lax.top_k(candidates.reshape(batch, k * vocab), k)
        origin, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)

        tokens = _gather(state.alive_tokens, origin).at[:, :, t].set(token)
        alphas = _gather(state.alive_alphas, origin).at[:, :, t].set(
            _gather(out.alpha.reshape(batch, k, num_locations), origin))
        locations = _gather(state.alive_locations, origin).at[:, :, t].set(
            _gather(out.location.reshape(batch, k), origin))
        rows = (jnp.arange(batch)[:, None] * k + origin).reshape(-1)
        carry = jax.tree.map(lambda x: x[rows], carry)

        ended = token == END
        scores = jnp.where(ended, top_log_probs / length_penalty(t + 1, length_normalization),
                           NEG_INF)
        merged_scores = jnp.concatenate([state.finished_scores, scores], axis=1)
        finished_scores, keep = jax.lax.top_k(merged_scores, k)

        def merge(old, new):
            return _gather(jnp.concatenate([old, new], axis=1), keep)

        return BeamState(
            step=t + 1,
            carry=carry,
            alive_tokens=tokens,
            alive_alphas=alphas,
            alive_locations=locations,
            alive_log_probs=jnp.where(ended, NEG_INF, top_log_probs),
            finished_tokens=merge(state.finished_tokens, tokens),
            finished_alphas=merge(state.finished_alphas, alphas),
            finished_locations=merge(state.finished_locations, locations),
            finished_log_probs=merge(state.finished_log_probs, top_log_probs),
            finished_scores=finished_scores,
        )

    def cond(state: BeamState):
        best_alive = state.alive_log_probs.max(axis=1) / max_penalty
        settled = state.finished_scores.max(axis=1) >= best_alive
        return (state.step < max_length) & ~settled.all()

    def empty(*shape, dtype=jnp.int32):
        return jnp.zeros((batch, k, *shape), dtype)

    state = jax.lax.while_loop(cond, body, BeamState(
        step=jnp.array(0, jnp.int32),
        carry=cache.carry,
        alive_tokens=empty(max_length),
        alive_alphas=empty(max_length, num_locations, dtype=jnp.float32),
        alive_locations=empty(max_length),
        # Only the first slot is a hypothesis at the start; the others are empty.
        alive_log_probs=jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF)[None].repeat(batch, 0),
        finished_tokens=empty(max_length),
        finished_alphas=empty(max_length, num_locations, dtype=jnp.float32),
        finished_locations=empty(max_length),
        finished_log_probs=jnp.full((batch, k), NEG_INF),
        finished_scores=jnp.full((batch, k), NEG_INF),
    ))

    # Hypotheses alive at max_length are complete captions too (cut, no <end>), ranked by
    # the same normalised score; before max_length (the loop settled early) they cannot win.
    best_alive = jnp.argmax(state.alive_log_probs, axis=1)[:, None]
    alive_score = jnp.where(state.step == max_length,
                            _gather(state.alive_log_probs, best_alive)[:, 0] / max_penalty,
                            NEG_INF)
    has_finished = state.finished_scores[:, 0] > NEG_INF
    use_alive = (alive_score > state.finished_scores[:, 0]) | ~has_finished

    def pick(finished, alive):
        finished, alive = finished[:, 0], _gather(alive, best_alive)[:, 0]
        mask = use_alive.reshape((batch,) + (1,) * (finished.ndim - 1))
        return jnp.where(mask, alive, finished)

    tokens = pick(state.finished_tokens, state.alive_tokens)
    return DecodeResult(
        tokens=tokens,
        lengths=_words(tokens),
        scores=pick(state.finished_log_probs, state.alive_log_probs),
        alphas=pick(state.finished_alphas, state.alive_alphas),
        locations=pick(state.finished_locations, state.alive_locations),
    )


def _check(beam_size: int, max_length: int, length_normalization: float) -> None:
    if beam_size < 1 or max_length < 1:
        raise InvalidInput(f"beam_size={beam_size} and max_length={max_length} must be ≥ 1")
    if length_normalization < 0:
        raise InvalidInput(f"length_normalization={length_normalization} must be ≥ 0")


# The penalty exponent is traced, so every alpha shares one compiled program.
@functools.partial(jax.jit, static_argnames=("model", "beam_size", "max_length", "encode"))
def _search(model, variables, inputs, beam_size, max_length, length_normalization, sample_key,
            encode) -> DecodeResult:
    annotations = model.apply(variables, inputs, method=Captioner.encode) if encode else inputs
    cache = model.apply(variables, annotations, method=Captioner.prepare)
    if beam_size == 1:
        return _greedy(model, variables, cache, max_length, sample_key)
    return _beam(model, variables, cache, beam_size, max_length,
                 jnp.asarray(length_normalization, jnp.float32), sample_key)


def decode_annotations(model: Captioner, variables, annotations, *, beam_size: int,
                       max_length: int, length_normalization: float = 0.0,
                       sample_key=None) -> DecodeResult:
    """Caption annotations ``[B, L, D]``: greedy when ``beam_size`` is 1, else beam search.

    Compiled once per (model, beam_size, max_length, input shapes and shardings); callable
    inside an outer ``jax.jit`` too.

    Args:
      model: the :class:`Captioner`.
      variables: its variables (``{"params": ...}``), replicated or on one device.
      annotations: ``[B, L, D]``, possibly sharded over the batch axis.
      beam_size: K.
      max_length: T, the most tokens emitted per caption, ``<end>`` included.
      length_normalization: alpha ≥ 0 of ``((5 + |y|) / 6) ** alpha`` ranking finished beams,
        |y| counting ``<end>``; 0 ranks by Σ log p.
      sample_key: hard attention only: sample each step's location from α_t (eq. 8) with this
        key instead of using the expected context; None (default) is deterministic.
    Returns:
      :class:`DecodeResult` with arrays of batch size B.
    """
    _check(beam_size, max_length, length_normalization)
    return _search(model, variables, annotations, beam_size, max_length, length_normalization,
                   sample_key, encode=False)


def decode_images(model: Captioner, variables, images, *, beam_size: int, max_length: int,
                  length_normalization: float = 0.0, sample_key=None) -> DecodeResult:
    """Caption uint8 images ``[B, H, W, 3]``: encode (§3.1.1), then search as
    :func:`decode_annotations` does (same arguments), all in one compiled program."""
    _check(beam_size, max_length, length_normalization)
    return _search(model, variables, images, beam_size, max_length, length_normalization,
                   sample_key, encode=True)
