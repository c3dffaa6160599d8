"""The LSTM decoder (paper §3.1.2): one attend–gate–LSTM–deep-output step, scanned over time.

Shape letters: B batch, T caption steps, L annotations, D annotation dimension, A attention
dimension, E embedding dimension, H LSTM hidden size, V vocabulary size.

The same :class:`DecoderStep` serves teacher forcing (under ``nn.scan``) and search (one call
per step), so every equation exists once. Randomness is explicit: each step takes its own
PRNG key (or ``None`` for a deterministic step), which makes the scan and a Python loop over
the step bit-for-bit comparable and lets a resumed run draw exactly the same numbers.
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from show_attend_tell.models.attention import (
    AdditiveAttention,
    ContextGate,
    attention_entropy,
    expected_context,
    hard_context,
    sample_locations,
)

ATTENTION_MODES = ("soft", "hard")


class StepOutput(NamedTuple):
    """What one decoder step emits (B batch, L annotations, V vocabulary)."""

    logits: jnp.ndarray  # [B, V] float32
    alpha: jnp.ndarray  # [B, L] attention weights α_t
    beta: jnp.ndarray  # [B] mean gate value β_t
    location: jnp.ndarray  # [B] sampled s_t (hard); argmax α_t otherwise
    location_log_prob: jnp.ndarray  # [B] log α_{t, s_t}
    entropy: jnp.ndarray  # [B] H[α_t]
    context: jnp.ndarray  # [B, D] z_t before the gate (a_{s_t} or Σ α a)


class DecoderStep(nn.Module):
    """One step of eq. 1–3, 4–6 and 7 (deep output).

    Attention and the gate read h_{t-1}; the LSTM reads ``[E y_{t-1}; z_t]``; the output is
    ``p(y_t) ∝ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t))``.
    """

    vocab_size: int
    embed_dim: int = 256
    hidden_dim: int = 512
    attention_dim: int = 256
    dropout_rate: float = 0.0
    attention_mode: str = "soft"
    gate: str = "scalar"
    attention_activation: str = "tanh"
    deep_output: bool = True
    deep_output_tanh: bool = False
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        if self.attention_mode not in ATTENTION_MODES:
            raise ValueError(
                f"config.model.attention={self.attention_mode!r}; expected one of "
                f"{list(ATTENTION_MODES)}"
            )
        self.embed = nn.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype)
        self.attention = AdditiveAttention(
            self.attention_dim, self.attention_activation, dtype=self.dtype
        )
        self.context_gate = ContextGate(self.gate, dtype=self.dtype)
        self.init_hidden = nn.Dense(self.hidden_dim, dtype=self.dtype)
        self.init_cell = nn.Dense(self.hidden_dim, dtype=self.dtype)
        self.lstm = nn.OptimizedLSTMCell(self.hidden_dim, dtype=self.dtype)
        self.dropout = nn.Dropout(self.dropout_rate)
        if self.deep_output:
            self.hidden_to_output = nn.Dense(self.embed_dim, dtype=self.dtype)
            self.context_to_output = nn.Dense(self.embed_dim, dtype=self.dtype)
        self.output = nn.Dense(self.vocab_size, dtype=self.dtype)

    def initial_carry(self, annotations: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """§3.1.2: ``c_0 = tanh(f_init,c(ā))``, ``h_0 = tanh(f_init,h(ā))``.

        a ``[B, L, D]`` -> (c_0, h_0), each ``[B, H]``.
        """
        mean = annotations.mean(axis=1)
        return jnp.tanh(self.init_cell(mean)), jnp.tanh(self.init_hidden(mean))

    def project_annotations(self, annotations: jnp.ndarray) -> jnp.ndarray:
        """``W_a a_i`` (eq. 4), once per image: ``[B, L, D]`` -> ``[B, L, A]``."""
        return self.attention.project_annotations(annotations)

    def deep_output_logits(self, embedded, hidden, context, key, train):
        """Eq. 7: ``L_o(E y_{t-1} + L_h h_t + L_z z_t)`` -> logits ``[B, V]`` (float32)."""
        keys = (None, None) if key is None else tuple(jax.random.split(key))
        hidden = self.dropout(hidden, deterministic=not train, rng=keys[0])
        if not self.deep_output:
            return self.output(hidden).astype(jnp.float32)
        pre = embedded + self.hidden_to_output(hidden) + self.context_to_output(context)
        if self.deep_output_tanh:
            pre = jnp.tanh(pre)
        pre = self.dropout(pre, deterministic=not train, rng=keys[1])
        return self.output(pre).astype(jnp.float32)

    def __call__(self, carry, prev_tokens, annotations, projected, use_expected, key, train):
        """One decoding step.

        Args:
          carry: LSTM state (c, h), each ``[B, H]``.
          prev_tokens: y_{t-1} ``[B]`` int32.
          annotations: a ``[B, L, D]``; projected: ``W_a a`` ``[B, L, A]``.
          use_expected: ``[B]`` bool; hard mode uses the expected context (eq. 13) where True.
          key: PRNG key for this step's dropout and sampling, or None (deterministic).
          train: dropout on/off.
        Returns:
          (new carry, :class:`StepOutput`).
        """
        _, hidden = carry
        alpha = self.attention(projected, hidden)
        expected = expected_context(alpha, annotations)
        greedy_location = jnp.argmax(alpha, axis=-1).astype(jnp.int32)
        if self.attention_mode == "hard" and key is not None:
            key, sample_key = jax.random.split(key)
            sampled = sample_locations(sample_key, alpha)
            location = jnp.where(use_expected, greedy_location, sampled)
            context = jnp.where(
                use_expected[:, None], expected, hard_context(annotations, sampled)
            )
        else:
            location, context = greedy_location, expected
        beta = self.context_gate(hidden, annotations.shape[-1])
        gated = (beta.astype(context.dtype) * context).astype(self.dtype)
        embedded = self.embed(prev_tokens)
        carry, new_hidden = self.lstm(carry, jnp.concatenate([embedded, gated], axis=-1))
        logits = self.deep_output_logits(embedded, new_hidden, gated, key, train)
        location_log_prob = jnp.log(
            jnp.maximum(jnp.take_along_axis(alpha, location[:, None], axis=1)[:, 0], 1e-30)
        )
        return carry, StepOutput(
            logits=logits,
            alpha=alpha,
            beta=beta.mean(axis=-1),
            location=location,
            location_log_prob=location_log_prob,
            entropy=attention_entropy(alpha),
            context=context,
        )


def scan_decoder(step: DecoderStep, carry, tokens, annotations, projected, use_expected,
                 keys, train):
    """Teacher-forced decoding: ``step`` scanned over time (params shared across steps).

    tokens ``[B, T]`` (y_{t-1} for t = 1..T), keys ``[T, 2]`` or None -> :class:`StepOutput`
    with a time axis after the batch axis (logits ``[B, T, V]``, alpha ``[B, T, L]``, ...).
    """

    def body(module, carry, inputs, annotations, projected, use_expected):
        token, key = inputs
        return module(carry, token, annotations, projected, use_expected, key, train)

    scanned = nn.scan(
        body,
        variable_broadcast="params",
        split_rngs={"params": False},
        in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast),
        out_axes=0,
    )
    carry, outputs = scanned(step, carry, (tokens.T, keys), annotations, projected, use_expected)
    return carry, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), outputs)
