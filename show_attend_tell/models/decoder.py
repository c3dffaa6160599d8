"""The LSTM decoder (paper §3.1.2): one attend–gate–LSTM–deep-output step.

Shape letters: B batch, T caption steps, L annotations, D annotation dimension, A attention
dimension, E embedding dimension, H LSTM hidden size, V vocabulary size; N = B·K rows when
search keeps K hypotheses per image.

The same :class:`DecoderStep` serves teacher forcing (scanned over time by
:mod:`show_attend_tell.models.decoder_scan`) and search (one call per step), so every equation
exists once. The step is split where the scan needs it: :meth:`DecoderStep.recur` (attention,
gate, LSTM) is everything the next step depends on; :meth:`DecoderStep.embed_inputs` and
:meth:`DecoderStep.deep_output_logits` do not feed the recurrence, so teacher forcing runs them
once on all T steps. Randomness is explicit: each step takes its own PRNG key (or ``None`` for
a deterministic step), which makes the scan and a Python loop over the step bit-for-bit
comparable and lets a resumed run draw exactly the same numbers.
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from show_attend_tell.errors import InvalidInput
from show_attend_tell.models.attention import (
    AdditiveAttention,
    ContextGate,
    attention_entropy,
    expected_context,
    hard_context,
    sample_locations,
)

ATTENTION_MODES = ("soft", "hard")
# §3.1.2's initial state: f_init then tanh (paper, Theano code) or f_init alone (sgrvinod's).
INIT_ACTIVATIONS = ("tanh", "none")


class StepOutput(NamedTuple):
    """What one decoder step emits (B batch, L annotations, V vocabulary)."""

    logits: jnp.ndarray  # [B, V] float32
    alpha: jnp.ndarray  # [B, L] attention weights α_t
    beta: jnp.ndarray  # [B] mean gate value β_t
    location: jnp.ndarray  # [B] sampled s_t (hard); argmax α_t otherwise
    location_log_prob: jnp.ndarray  # [B] log α_{t, s_t}
    entropy: jnp.ndarray  # [B] H[α_t]
    context: jnp.ndarray  # [B, D] z_t before the gate (a_{s_t} or Σ α a)


class Recurrence(NamedTuple):
    """What :meth:`DecoderStep.recur` emits: the deep output's inputs and the attention."""

    hidden: jnp.ndarray  # [B, H] h_t
    gated: jnp.ndarray  # [B, D] ẑ_t = β_t z_t
    alpha: jnp.ndarray
    beta: jnp.ndarray
    location: jnp.ndarray
    location_log_prob: jnp.ndarray
    entropy: jnp.ndarray
    context: jnp.ndarray


def split_step_key(key):
    """A step's key -> (sampling key, dropout key); None -> (None, None)."""
    if key is None:
        return None, None
    sample_key, dropout_key = jax.random.split(key)
    return sample_key, dropout_key


def dropout(x: jnp.ndarray, rate: float, key) -> jnp.ndarray:
    """Inverted dropout of x ``[B, F]`` (one step, one key) or ``[T, B, F]`` (keys ``[T]``, each
    step masked as its own call would be)."""
    if x.ndim == 3:
        return jax.vmap(dropout, in_axes=(0, None, 0))(x, rate, key)
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def lstm_cell(gates: jnp.ndarray, cell: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Eq. 1–3: the LSTM update from the gates' pre-activations.

    gates ``[N, 4H]``: eq. 1's affine map T of ``[E y_{t-1}; h_{t-1}; ẑ_t]``, in
    the order input, forget, candidate, output (i, f, g, o); c_{t-1} ``[N, H]`` ->
    (c_t, h_t), each ``[N, H]``, with ``c_t = f ⊙ c_{t-1} + i ⊙ g`` (eq. 2) and
    ``h_t = o ⊙ tanh(c_t)`` (eq. 3), where i, f, o pass through σ and g through tanh (eq. 1).
    """
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    cell = nn.sigmoid(f) * cell + nn.sigmoid(i) * jnp.tanh(g)
    return cell, nn.sigmoid(o) * jnp.tanh(cell)


class DecoderStep(nn.Module):
    """One step of eq. 1–3, 4–6 and 7 (deep output).

    Attention and the gate read h_{t-1}; the LSTM reads ``[E y_{t-1}; h_{t-1}; ẑ_t]``; the
    output is ``p(y_t) ∝ exp(L_o(E y_{t-1} + L_h h_t + L_z ẑ_t))``.
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
    init_activation: str = "tanh"
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        if self.attention_mode not in ATTENTION_MODES:
            raise InvalidInput(
                f"config.model.attention={self.attention_mode!r}; expected one of "
                f"{list(ATTENTION_MODES)}"
            )
        if self.init_activation not in INIT_ACTIVATIONS:
            raise InvalidInput(
                f"config.model.init_activation={self.init_activation!r}; expected one of "
                f"{list(INIT_ACTIVATIONS)}"
            )
        self.embed = nn.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype)
        self.attention = AdditiveAttention(
            self.attention_dim, self.attention_activation, dtype=self.dtype
        )
        self.context_gate = ContextGate(self.gate, dtype=self.dtype)
        self.init_hidden = nn.Dense(self.hidden_dim, dtype=self.dtype)
        self.init_cell = nn.Dense(self.hidden_dim, dtype=self.dtype)
        # Eq. 1's affine map T split by input, each Dense giving all four gates in one matmul:
        # the E y_{t-1} share is known before decoding, so teacher forcing computes it for all
        # steps at once.
        gates = 4 * self.hidden_dim
        self.lstm_embedded = nn.Dense(gates, use_bias=False, dtype=self.dtype)
        self.lstm_hidden = nn.Dense(gates, dtype=self.dtype)
        self.lstm_context = nn.Dense(gates, use_bias=False, dtype=self.dtype)
        if self.deep_output:
            self.hidden_to_output = nn.Dense(self.embed_dim, dtype=self.dtype)
            self.context_to_output = nn.Dense(self.embed_dim, dtype=self.dtype)
        self.output = nn.Dense(self.vocab_size, dtype=self.dtype)

    def initial_carry(self, annotations: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """§3.1.2: ``c_0 = tanh(f_init,c(ā))``, ``h_0 = tanh(f_init,h(ā))`` (the Theano code's
        tanh; ``init_activation='none'`` drops it, as sgrvinod's decoder does).

        a ``[B, L, D]`` -> (c_0, h_0), each ``[B, H]``.
        """
        mean = annotations.mean(axis=1)
        cell, hidden = self.init_cell(mean), self.init_hidden(mean)
        if self.init_activation == "tanh":
            cell, hidden = jnp.tanh(cell), jnp.tanh(hidden)
        return cell, hidden

    def project_annotations(self, annotations: jnp.ndarray) -> jnp.ndarray:
        """``W_a a_i`` (eq. 4), once per image: ``[B, L, D]`` -> ``[B, L, A]``."""
        return self.attention.project_annotations(annotations)

    def embed_inputs(self, prev_tokens: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """y_{t-1} ``[...]`` -> (E y_{t-1} ``[..., E]``, its share of eq. 1's gates ``[..., 4H]``)."""
        embedded = self.embed(prev_tokens)
        return embedded, self.lstm_embedded(embedded)

    def recur(self, carry, embedded_gates, annotations, projected, use_expected, sample_key):
        """Eq. 4–6 (attention, gate) and eq. 1–3 (LSTM): everything the next step depends on.

        carry (c, h) ``[N, H]`` each (N = B·K, see ``__call__``); embedded_gates ``[N, 4H]``
        from :meth:`embed_inputs`; a ``[B, L, D]``; ``W_a a`` ``[B, L, A]``; use_expected
        ``[N]`` bool; sample_key draws
        s_t in hard mode (None: expected context) -> (new carry, :class:`Recurrence`).
        """
        cell, hidden = carry
        alpha = self.attention(projected, hidden)
        expected = expected_context(alpha, annotations)
        greedy_location = jnp.argmax(alpha, axis=-1).astype(jnp.int32)
        if self.attention_mode == "hard" and sample_key is not None:
            sampled = sample_locations(sample_key, alpha)
            location = jnp.where(use_expected, greedy_location, sampled)
            context = jnp.where(
                use_expected[:, None], expected, hard_context(annotations, sampled)
            )
        else:
            location, context = greedy_location, expected
        beta = self.context_gate(hidden, annotations.shape[-1])
        gated = (beta.astype(context.dtype) * context).astype(self.dtype)
        gates = embedded_gates + self.lstm_hidden(hidden) + self.lstm_context(gated)
        cell, new_hidden = lstm_cell(gates, cell)
        location_log_prob = jnp.log(
            jnp.maximum(jnp.take_along_axis(alpha, location[:, None], axis=1)[:, 0], 1e-30)
        )
        return (cell, new_hidden), Recurrence(
            hidden=new_hidden,
            gated=gated,
            alpha=alpha,
            beta=beta.mean(axis=-1),
            location=location,
            location_log_prob=location_log_prob,
            entropy=attention_entropy(alpha),
            context=context,
        )

    def deep_output_logits(self, embedded, hidden, gated, dropout_key, train):
        """Eq. 7: ``L_o(E y_{t-1} + L_h h_t + L_z ẑ_t)`` -> logits ``[..., V]`` (float32).

        Inputs ``[B, ·]`` for one step (one key) or ``[T, B, ·]`` for all steps (keys ``[T]``).
        """
        if train and self.dropout_rate > 0:
            keys = jax.vmap(jax.random.split)(dropout_key.reshape(-1))
            keys = keys.reshape(dropout_key.shape + (2,))
            hidden = dropout(hidden, self.dropout_rate, keys[..., 0])
        else:
            keys = None
        if not self.deep_output:
            return self.output(hidden).astype(jnp.float32)
        pre = embedded + self.hidden_to_output(hidden) + self.context_to_output(gated)
        if self.deep_output_tanh:
            pre = jnp.tanh(pre)
        if keys is not None:
            pre = dropout(pre, self.dropout_rate, keys[..., 1])
        return self.output(pre).astype(jnp.float32)

    def __call__(self, carry, prev_tokens, annotations, projected, use_expected, key, train):
        """One decoding step.

        Args:
          carry: LSTM state (c, h), each ``[N, H]``: N = B·K rows, K ≥ 1 per image (beam
            search), rows b·K .. b·K + K-1 reading image b.
          prev_tokens: y_{t-1} ``[N]`` int32.
          annotations: a ``[B, L, D]``; projected: ``W_a a`` ``[B, L, A]``.
          use_expected: ``[N]`` bool; hard mode uses the expected context (eq. 13) where True.
          key: PRNG key for this step's dropout and sampling, or None (deterministic).
          train: dropout on/off.
        Returns:
          (new carry, :class:`StepOutput`).
        """
        sample_key, dropout_key = split_step_key(key)
        embedded, embedded_gates = self.embed_inputs(prev_tokens)
        carry, rec = self.recur(carry, embedded_gates, annotations, projected, use_expected,
                                sample_key)
        logits = self.deep_output_logits(embedded, rec.hidden, rec.gated, dropout_key, train)
        return carry, step_output(logits, rec)


def step_output(logits, rec: Recurrence) -> StepOutput:
    """A step's logits ``[..., V]`` and its :class:`Recurrence` -> :class:`StepOutput`."""
    return StepOutput(logits=logits, alpha=rec.alpha, beta=rec.beta, location=rec.location,
                      location_log_prob=rec.location_log_prob, entropy=rec.entropy,
                      context=rec.context)
