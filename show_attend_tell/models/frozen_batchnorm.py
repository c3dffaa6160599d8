"""Batch normalisation with frozen statistics, for ImageNet-pretrained backbones.

Captioning batches are small and of one dataset, so re-estimating ImageNet statistics would
only hurt: the running mean and variance are parameters imported with the weights and never
trained (gradients stopped here; the optimizer also leaves them out, see ``train.py``). Scale
and bias train when the encoder is fine-tuned.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

# Leaf names of the statistics, which the optimizer never updates.
STATISTICS = ("mean", "var")


class FrozenBatchNorm(nn.Module):
    """``[..., C]`` -> ``(x - mean) / sqrt(var + epsilon) · scale + bias``."""

    epsilon: float = 1e-3
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,))
        bias = self.param("bias", nn.initializers.zeros, (channels,))
        mean = jax.lax.stop_gradient(self.param("mean", nn.initializers.zeros, (channels,)))
        var = jax.lax.stop_gradient(self.param("var", nn.initializers.ones, (channels,)))
        multiplier = scale * jax.lax.rsqrt(var + self.epsilon)
        return (x * multiplier.astype(self.dtype) + (bias - mean * multiplier).astype(self.dtype))
