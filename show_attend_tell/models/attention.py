"""Attention over annotations (paper §3.1.2, §4.1, §4.2).

Shape letters: B batch, L annotations, D annotation dimension, H LSTM hidden size,
A attention dimension, N = B·K decoder rows: K ≥ 1 rows per image (beam hypotheses), rows
b·K .. b·K + K-1 reading image b, so search never copies an image's annotations K times.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from show_attend_tell.errors import InvalidInput

ACTIVATIONS = {"tanh": jnp.tanh, "relu": nn.relu}
GATES = ("scalar", "vector", "none")


class AdditiveAttention(nn.Module):
    """Eq. 4–5: ``e_ti = v·act(W_a a_i + W_h h_{t-1})``, ``α_t = softmax(e_t)``.

    ``W_a a_i`` does not depend on t, so :meth:`project_annotations` runs once per image and
    the per-step call only adds ``W_h h_{t-1}``. ``activation='relu'`` reproduces a common
    deviation of other implementations; the paper uses tanh.
    """

    attention_dim: int
    activation: str = "tanh"
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        if self.activation not in ACTIVATIONS:
            raise InvalidInput(
                f"config.model.attention_activation={self.activation!r}; "
                f"expected one of {sorted(ACTIVATIONS)}"
            )
        self.annotation_projection = nn.Dense(self.attention_dim, dtype=self.dtype)
        self.hidden_projection = nn.Dense(self.attention_dim, use_bias=False, dtype=self.dtype)
        self.score = nn.Dense(1, use_bias=False, dtype=self.dtype)

    def project_annotations(self, annotations: jnp.ndarray) -> jnp.ndarray:
        """``W_a a_i`` of eq. 4: annotations ``[B, L, D]`` -> ``[B, L, A]``."""
        return self.annotation_projection(annotations)

    def __call__(self, projected: jnp.ndarray, hidden: jnp.ndarray) -> jnp.ndarray:
        """Eq. 4–5: projected ``[B, L, A]``, h_{t-1} ``[N, H]`` -> α_t ``[N, L]`` (float32)."""
        batch, locations, width = projected.shape
        query = self.hidden_projection(hidden).reshape(batch, -1, 1, width)
        pre = projected[:, None] + query  # [B, K, L, A]
        scores = self.score(ACTIVATIONS[self.activation](pre))[..., 0]
        return jax.nn.softmax(scores.astype(jnp.float32), axis=-1).reshape(-1, locations)


class ContextGate(nn.Module):
    """Eq. in §4.2.1: ``β_t = σ(f_β(h_{t-1}))``, a **scalar** per image in the paper.

    ``kind='vector'`` (one gate per annotation channel) and ``'none'`` (β = 1) reproduce the
    deviations of other implementations.
    """

    kind: str = "scalar"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden: jnp.ndarray, annotation_dim: int) -> jnp.ndarray:
        """h_{t-1} ``[B, H]`` -> β_t ``[B, 1]`` (scalar), ``[B, D]`` (vector) or ``[B, 1]`` ones."""
        if self.kind not in GATES:
            raise InvalidInput(f"config.model.gate={self.kind!r}; expected one of {list(GATES)}")
        if self.kind == "none":
            return jnp.ones((hidden.shape[0], 1), jnp.float32)
        width = 1 if self.kind == "scalar" else annotation_dim
        return jax.nn.sigmoid(nn.Dense(width, dtype=self.dtype)(hidden).astype(jnp.float32))


def expected_context(alpha: jnp.ndarray, annotations: jnp.ndarray) -> jnp.ndarray:
    """Eq. 13 (soft) / eq. 8's expectation: ``Σ_i α_ti a_i``; α ``[N, L]``, a ``[B, L, D]`` -> ``[N, D]``.

    With K = N / B rows per image (beam hypotheses) this is one ``[K, L]·[L, D]`` product per
    image, which reads each image's annotations once for its K rows, where K matrix-vector
    products read them K times: half the op's time at paper scale, K 3 (docs/performance.md).
    """
    batch, locations, dim = annotations.shape
    alpha = alpha.astype(annotations.dtype).reshape(batch, -1, locations)
    if alpha.shape[1] == 1:
        return jnp.einsum("bl,bld->bd", alpha[:, 0], annotations)
    return jnp.einsum("bkl,bld->bkd", alpha, annotations).reshape(-1, dim)


def sample_locations(key: jax.Array, alpha: jnp.ndarray) -> jnp.ndarray:
    """Eq. 8: ``s_t ~ Multinoulli_L(α_t)``; α ``[B, L]`` -> location indices ``[B]`` (int32)."""
    return jax.random.categorical(key, jnp.log(jnp.maximum(alpha, 1e-30)), axis=-1).astype(
        jnp.int32
    )


def hard_context(annotations: jnp.ndarray, locations: jnp.ndarray) -> jnp.ndarray:
    """Eq. 8–9: ``z_t = a_{s_t}``; a ``[B, L, D]``, s ``[N]`` -> ``[N, D]``."""
    index = locations.reshape(annotations.shape[0], -1, 1)
    return jnp.take_along_axis(annotations, index, axis=1).reshape(-1, annotations.shape[-1])


def attention_entropy(alpha: jnp.ndarray) -> jnp.ndarray:
    """``H[s_t] = -Σ_i α_ti log α_ti`` (the entropy bonus of eq. 12); α ``[B, L]`` -> ``[B]``."""
    return -jnp.sum(alpha * jnp.log(jnp.maximum(alpha, 1e-30)), axis=-1)
