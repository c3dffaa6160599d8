"""The Show-Attend-Tell captioner: ``encode`` images, ``decode`` captions (paper §3).

Shape letters: B batch (caption rows in teacher forcing), I images, C = B / I captions per
image, H×W image, T caption steps, L annotations, D annotation dimension, A attention
dimension, V vocabulary size.

Methods (call through ``model.apply(variables, ..., method=Captioner.X)``):
  encode(images)                       -> annotations [B, L, D]
  prepare(annotations)                 -> DecodeCache (annotations, W_a a, initial LSTM state)
  step(cache, carry, tokens, ...)      -> one step, for greedy/beam search
  teacher_force(annotations, tokens, key) -> teacher-forced DecoderOutputs (scanned over T)
  __call__(images, tokens, key)        -> encode + teacher_force
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from show_attend_tell.errors import InvalidInput
from show_attend_tell.models.decoder import DecoderStep, StepOutput
from show_attend_tell.models.decoder_scan import scan_decoder
from show_attend_tell.models.encoders import annotations_have_gradients, build_encoder

EXPECTED_SWITCH = ("image", "batch")


class DecodeCache(NamedTuple):
    """Per-image quantities computed once before decoding."""

    annotations: jnp.ndarray  # [B, L, D]
    projected: jnp.ndarray  # [B, L, A]  W_a a_i of eq. 4
    carry: tuple[jnp.ndarray, jnp.ndarray]  # (c_0, h_0), each [B, H]


class DecoderOutputs(NamedTuple):
    """Teacher-forced outputs: per-step :class:`StepOutput` fields stacked on axis 1."""

    steps: StepOutput  # logits [B, T, V], alpha [B, T, L], beta/location/... [B, T]
    used_expected: jnp.ndarray  # [B] bool: the row used the expected context (hard mode)


class Captioner(nn.Module):
    encoder: nn.Module
    step_module: DecoderStep
    p_expected: float = 0.5
    expected_switch: str = "image"
    scan_impl: str = "fused"  # how teacher forcing is scanned (models/decoder_scan.py)

    def encode(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """uint8 images ``[B, H, W, 3]`` -> annotations ``[B, L, D]`` (§3.1.1)."""
        return self.encoder(images, train=train)

    def prepare(self, annotations: jnp.ndarray) -> DecodeCache:
        """Everything about an image that decoding reuses at every step."""
        return DecodeCache(
            annotations=annotations,
            projected=self.step_module.project_annotations(annotations),
            carry=self.step_module.initial_carry(annotations),
        )

    def step(self, cache: DecodeCache, carry, prev_tokens, use_expected=None, key=None,
             train: bool = False):
        """One decoding step (eq. 1–7) for search on N = B·K rows, K ≥ 1 per image of the cache
        (rows b·K .. b·K + K-1 read image b): carry ``[N, H]`` each, prev_tokens ``[N]`` ->
        (carry, StepOutput)."""
        if use_expected is None:
            use_expected = jnp.ones(prev_tokens.shape[0], bool)
        return self.step_module(
            carry, prev_tokens, cache.annotations, cache.projected, use_expected, key, train
        )

    def expected_mask(self, key, batch: int) -> jnp.ndarray:
        """§4.1: with probability p_expected a training example (or the whole batch) uses the
        expected context instead of a sample; ``[B]`` bool, one entry per caption row.

        ``expected_switch='image'`` draws once per caption row, also when C > 1 rows share an
        image. The paper's training examples are (image, caption) pairs and its "with
        probability 0.5 for a given image" is per example; a draw per row keeps every row an
        independent sample of the same estimator, so C rows of one image give in expectation
        the gradient of C single-caption batches (one draw per image would correlate them and
        make the estimator depend on C).
        """
        if self.expected_switch not in EXPECTED_SWITCH:
            raise InvalidInput(
                f"config.model.expected_switch={self.expected_switch!r}; expected one of "
                f"{list(EXPECTED_SWITCH)}"
            )
        if key is None or self.step_module.attention_mode == "soft":
            return jnp.ones((batch,), bool)
        shape = (batch,) if self.expected_switch == "image" else (1,)
        return jnp.broadcast_to(jax.random.bernoulli(key, self.p_expected, shape), (batch,))

    def teacher_force(self, annotations: jnp.ndarray, tokens: jnp.ndarray, key=None,
                      train: bool = False) -> DecoderOutputs:
        """Teacher forcing: annotations ``[I, L, D]``, inputs y_{0..T-1} ``[B, T]`` -> outputs
        ``[B, ...]``, where caption rows i·C .. i·C + C-1 (C = B / I) read image i.

        ``W_a a`` (eq. 4) and the initial state (§3.1.2) are computed once per image; only the
        carry ``[B, H]`` is repeated C times, and the decoder's rows index their image's
        annotations (no ``[B, L, D]`` copy). ``key`` drives dropout, hard-attention sampling and
        the expected-context switch; None gives the deterministic (evaluation) pass.
        """
        cache = self.prepare(annotations)
        batch, length = tokens.shape
        images = annotations.shape[0]
        # A caller's bug, not a user's input (the pipeline and the config check make whole
        # groups): it keeps its traceback rather than the CLI's one line for a UserError.
        assert batch % images == 0, f"{batch} caption rows do not split evenly over {images} images"
        carry = cache.carry
        if batch != images:
            carry = jax.tree.map(lambda x: jnp.repeat(x, batch // images, axis=0), carry)
        if key is None:
            switch_key, step_keys = None, None
        else:
            switch_key, scan_key = jax.random.split(key)
            step_keys = jax.random.split(scan_key, length)
        use_expected = self.expected_mask(switch_key, batch)
        _, steps = scan_decoder(
            self.step_module, carry, tokens, cache.annotations, cache.projected,
            use_expected, step_keys, train,
            annotation_gradients=annotations_have_gradients(self.encoder),
            scan_impl=self.scan_impl,
        )
        return DecoderOutputs(steps=steps, used_expected=use_expected)

    def __call__(self, images, tokens, key=None, train: bool = False) -> DecoderOutputs:
        return self.teacher_force(self.encode(images, train=train), tokens, key=key, train=train)


def step_keys_for(key, length: int):
    """The per-step keys :meth:`Captioner.teacher_force` uses, for step-by-step replays."""
    switch_key, scan_key = jax.random.split(key)
    return switch_key, jax.random.split(scan_key, length)


def build_captioner(model_config, vocab_size: int) -> Captioner:
    """A :class:`Captioner` from ``config.model`` and the vocabulary size."""
    dtype = jnp.dtype(model_config.get("dtype", "float32"))
    encoder = build_encoder(model_config.encoder, dtype)
    step = DecoderStep(
        vocab_size=vocab_size,
        embed_dim=model_config.embed_dim,
        hidden_dim=model_config.hidden_dim,
        attention_dim=model_config.attention_dim,
        dropout_rate=model_config.dropout,
        attention_mode=model_config.attention,
        gate=model_config.gate,
        attention_activation=model_config.attention_activation,
        deep_output=model_config.deep_output,
        deep_output_tanh=model_config.deep_output_tanh,
        # Checkpoints saved before the switch existed used tanh.
        init_activation=model_config.get("init_activation", "tanh"),
        dtype=dtype,
    )
    return Captioner(
        encoder=encoder,
        step_module=step,
        p_expected=model_config.p_expected,
        expected_switch=model_config.expected_switch,
        scan_impl=model_config.get("scan_impl", "fused"),
    )
