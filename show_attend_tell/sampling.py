"""Captions drawn from the model (temperature 1) and their teacher-forced log-probabilities,
for self-critical sequence training (``show_attend_tell.scst``).

Shape letters: B images, K samples per image, N = B·K rows (rows b·K .. b·K + K-1 are image
b's, as in beam search: an image's annotations are never copied), T steps, L annotations.

:func:`sample` draws all N captions in one ``lax.while_loop`` over :meth:`Captioner.step`
(the same step greedy and beam search run); ``<end>`` ends a row, which then emits ``<pad>``.

The gradient's log-probabilities are **re-scored** teacher-forced on the sampled tokens by
:func:`rescore`, not kept from sampling: a ``while_loop`` has no reverse-mode derivative, and
the scanned decoder (``scan_decoder``) is the pass training already
differentiates efficiently, so the gradient reuses it. Re-scoring gives the same numbers the
sampler saw, because nothing random differs: dropout is off in both passes (a dropout mask
drawn only in the re-scoring pass would score a different policy than the one sampled), and
for hard attention the re-scoring pass replays the sampler's per-step keys, so each step draws
the sampler's location s_t from the same α_t. A replayed location that differs (possible only
through rounding differences between the two programs) is reported per row by
``locations_match`` so the loss can leave such a row out rather than score the wrong path.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from show_attend_tell.data.vocab import END, PAD, START
from show_attend_tell.decoding import decode_annotations
from show_attend_tell.models.captioner import Captioner, DecodeCache, DecoderOutputs
from show_attend_tell.models.decoder_scan import scan_decoder
from show_attend_tell.models.encoders import annotations_have_gradients

NEG_INF = -jnp.inf


class Samples(NamedTuple):
    tokens: jnp.ndarray  # [B, K, T] int32: words, <end>, then <pad>
    lengths: jnp.ndarray  # [B, K] int32: words before <end> (T if none)
    locations: jnp.ndarray  # [B, K, T] int32: attended (hard: sampled) location per step
    greedy_tokens: jnp.ndarray  # [B, T] int32: the greedy caption (expected context if hard)
    greedy_lengths: jnp.ndarray  # [B] int32


@struct.dataclass
class _SampleState:
    step: jnp.ndarray  # [] int32
    carry: tuple  # (c, h), each [N, H]
    last: jnp.ndarray  # [N] int32
    tokens: jnp.ndarray  # [N, T]
    locations: jnp.ndarray  # [N, T]
    finished: jnp.ndarray  # [N] bool


def step_keys(location_key, length: int):
    """The per-step keys of the sampler's hard-attention draws, ``[T]``; :func:`rescore`
    replays them."""
    return jax.vmap(lambda t: jax.random.fold_in(location_key, t))(jnp.arange(length))


def policy_log_probs(logits):
    """logits ``[..., V]`` -> log π, the distribution samples are drawn from: the softmax
    renormalised over the words and ``<end>`` (``<pad>``/``<start>`` are never emitted, so
    their mass would otherwise be a term of the gradient no sample can see)."""
    index = jnp.arange(logits.shape[-1])
    banned = (index == PAD) | (index == START)
    return jax.nn.log_softmax(jnp.where(banned, NEG_INF, logits.astype(jnp.float32)), axis=-1)


def _lengths(tokens):
    is_end = tokens == END
    return jnp.where(is_end.any(-1), jnp.argmax(is_end, axis=-1), tokens.shape[-1]).astype(jnp.int32)


def _sample_rows(model, variables, cache: DecodeCache, num_samples: int, max_length: int,
                 token_key, location_key):
    """K captions per image of ``cache`` -> (tokens ``[N, T]``, locations ``[N, T]``)."""
    batch = cache.annotations.shape[0]
    rows = batch * num_samples
    hard = model.step_module.attention_mode == "hard"
    keys = step_keys(location_key, max_length) if hard else None
    cache = cache._replace(carry=jax.tree.map(lambda x: jnp.repeat(x, num_samples, 0), cache.carry))

    def body(state: _SampleState) -> _SampleState:
        t = state.step
        key = keys[t] if hard else None
        use_expected = jnp.zeros(rows, bool) if hard else None
        carry, out = model.apply(variables, cache, state.carry, state.last, use_expected, key,
                                 method=Captioner.step)
        log_probs = policy_log_probs(out.logits)
        token = jax.random.categorical(jax.random.fold_in(token_key, t), log_probs).astype(jnp.int32)
        live = ~state.finished
        token = jnp.where(live, token, PAD)
        return _SampleState(
            step=t + 1, carry=carry, last=token,
            tokens=state.tokens.at[:, t].set(token),
            locations=state.locations.at[:, t].set(jnp.where(live, out.location, 0)),
            finished=state.finished | (token == END),
        )

    def cond(state: _SampleState):
        return (state.step < max_length) & ~state.finished.all()

    state = jax.lax.while_loop(cond, body, _SampleState(
        step=jnp.array(0, jnp.int32),
        carry=cache.carry,
        last=jnp.full((rows,), START, jnp.int32),
        tokens=jnp.zeros((rows, max_length), jnp.int32),
        locations=jnp.zeros((rows, max_length), jnp.int32),
        finished=jnp.zeros((rows,), bool),
    ))
    return state.tokens, state.locations


@functools.partial(jax.jit, static_argnames=("model", "num_samples", "max_length"))
def sample(model: Captioner, variables, images, key, *, num_samples: int,
           max_length: int) -> Samples:
    """K captions per image at temperature 1, plus the greedy caption (the baseline of
    Rennie et al. 2017), in one compiled program.

    images ``[B, H, W, 3]`` uint8 (or precomputed annotations), possibly sharded over B; key:
    one PRNG key (split here into the token and the hard-attention location draws).
    """
    token_key, location_key = jax.random.split(key)
    annotations = model.apply(variables, images, method=Captioner.encode)
    cache = model.apply(variables, annotations, method=Captioner.prepare)
    tokens, locations = _sample_rows(model, variables, cache, num_samples, max_length,
                                     token_key, location_key)
    greedy = decode_annotations(model, variables, annotations, beam_size=1, max_length=max_length)
    batch = annotations.shape[0]
    tokens = tokens.reshape(batch, num_samples, max_length)
    return Samples(tokens=tokens, lengths=_lengths(tokens),
                   locations=locations.reshape(batch, num_samples, max_length),
                   greedy_tokens=greedy.tokens, greedy_lengths=greedy.lengths)


def location_key_of(key):
    """The hard-attention location key :func:`sample` derives from its key."""
    return jax.random.split(key)[1]


def teacher_forcing_inputs(tokens):
    """Sampled tokens ``[N, T]`` -> (inputs ``<start> y_1..y_{T-1}``, mask ``[N, T]`` float:
    1 on every emitted token, ``<end>`` included)."""
    inputs = jnp.concatenate([jnp.full_like(tokens[:, :1], START), tokens[:, :-1]], axis=1)
    return inputs, (tokens != PAD).astype(jnp.float32)


def rescore(model: Captioner, params, images, tokens, key) -> DecoderOutputs:
    """Teacher-forced outputs on the sampled captions (differentiable in ``params``).

    images ``[B, ...]``, tokens ``[N, T]`` (K rows per image, as :func:`sample` returns them
    flattened), key: the key given to :func:`sample`. Hard attention samples every row's
    locations with the sampler's per-step keys (no expected-context switch).
    """
    batch, rows, length = images.shape[0], tokens.shape[0], tokens.shape[1]
    num_samples = rows // batch
    hard = model.step_module.attention_mode == "hard"
    keys = step_keys(location_key_of(key), length) if hard else None
    inputs, _ = teacher_forcing_inputs(tokens)

    def forward(module: Captioner):
        annotations = module.encode(images)
        cache = module.prepare(annotations)
        carry = jax.tree.map(lambda x: jnp.repeat(x, num_samples, 0), cache.carry)
        use_expected = jnp.zeros(rows, bool) if hard else jnp.ones(rows, bool)
        _, steps = scan_decoder(
            module.step_module, carry, inputs, cache.annotations, cache.projected, use_expected,
            keys, False, annotation_gradients=annotations_have_gradients(module.encoder),
            scan_impl=module.scan_impl,
        )
        return DecoderOutputs(steps=steps, used_expected=use_expected)

    return model.apply({"params": params}, method=forward)
