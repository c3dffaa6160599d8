"""ResNet-50/101/152 (He et al. 2016, v1 as in Keras Applications) up to the last stage.

The last stage (stride 32: 7×7×2048 at 224×224) is average-pooled to a ``grid``×``grid`` map
the way PyTorch's ``AdaptiveAvgPool2d`` does, as the popular PyTorch Show-Attend-Tell
reimplementation does (14×14 → L = 196, D = 2048). Layer names follow Keras Applications
(``conv4_block6_2_conv``) so imported weights map one to one. Inputs are RGB; the original
weights expect Caffe preprocessing (mean subtraction on the 0–255 scale), declared here and
applied on device.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from show_attend_tell.models.encoders import normalize_images, register_encoder
from show_attend_tell.models.frozen_batchnorm import FrozenBatchNorm
from show_attend_tell.models.vgg import IMAGENET_MEAN_RGB

# Bottleneck blocks in stages conv2..conv5.
RESNET_DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}
BN_EPSILON = 1.001e-5  # Keras Applications' value


def adaptive_pool_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``[out, in]`` averaging weights of PyTorch's adaptive pooling: output cell i averages
    inputs ⌊i·in/out⌋ .. ⌈(i+1)·in/out⌉ - 1 (cells repeat when upsampling)."""
    matrix = np.zeros((size_out, size_in), np.float32)
    for i in range(size_out):
        start, end = (i * size_in) // size_out, -(-((i + 1) * size_in) // size_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def adaptive_avg_pool(x: jnp.ndarray, grid: int) -> jnp.ndarray:
    """``[B, H, W, C]`` -> ``[B, grid, grid, C]``."""
    rows = jnp.asarray(adaptive_pool_matrix(x.shape[1], grid), x.dtype)
    cols = jnp.asarray(adaptive_pool_matrix(x.shape[2], grid), x.dtype)
    return jnp.einsum("ih,bhwc,jw->bijc", rows, x, cols)


def conv_bn(x, features, kernel, stride, name, dtype):
    """Keras' ``{name}_conv`` (with bias) then ``{name}_bn``."""
    x = nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME", dtype=dtype,
                name=f"{name}_conv")(x)
    return FrozenBatchNorm(BN_EPSILON, dtype, name=f"{name}_bn")(x)


def bottleneck(x, filters, stride, projection, name, dtype):
    """1×1 (stride) → 3×3 → 1×1 (4·filters), plus the identity or a 1×1 projection."""
    shortcut = conv_bn(x, 4 * filters, 1, stride, f"{name}_0", dtype) if projection else x
    x = nn.relu(conv_bn(x, filters, 1, stride, f"{name}_1", dtype))
    x = nn.relu(conv_bn(x, filters, 3, 1, f"{name}_2", dtype))
    return nn.relu(shortcut + conv_bn(x, 4 * filters, 1, 1, f"{name}_3", dtype))


class ResNet(nn.Module):
    """uint8 images ``[B, H, W, 3]`` -> last-stage annotations ``[B, grid², 2048]``
    (``grid=0``: the unpooled ``[B, (H/32)·(W/32), 2048]``)."""

    depths: tuple[int, ...] = RESNET_DEPTHS["resnet50"]
    grid: int = 14
    image_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN_RGB
    std: tuple[float, ...] = (1 / 255, 1 / 255, 1 / 255)
    trainable: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train  # batch statistics stay frozen (FrozenBatchNorm)
        x = normalize_images(images, self.mean, self.std, self.dtype)
        x = jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))  # Keras' explicit conv1_pad
        x = nn.Conv(64, (7, 7), strides=(2, 2), padding="VALID", dtype=self.dtype,
                    name="conv1_conv")(x)
        x = nn.relu(FrozenBatchNorm(BN_EPSILON, self.dtype, name="conv1_bn")(x))
        # Zero padding equals -inf padding here: the ReLU output is never negative.
        x = nn.max_pool(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), (3, 3), strides=(2, 2))
        for stage, blocks in enumerate(self.depths, start=2):
            filters = 64 * 2 ** (stage - 2)
            for block in range(1, blocks + 1):
                stride = 2 if block == 1 and stage > 2 else 1
                x = bottleneck(x, filters, stride, block == 1, f"conv{stage}_block{block}",
                               self.dtype)
        if self.grid:
            x = adaptive_avg_pool(x, self.grid)
        batch, height, width, depth = x.shape
        annotations = x.reshape(batch, height * width, depth)
        # Frozen (the default): no backward pass through the backbone.
        return annotations if self.trainable else jax.lax.stop_gradient(annotations)


@register_encoder("resnet50")
class ResNet50(ResNet):
    depths: tuple[int, ...] = RESNET_DEPTHS["resnet50"]


@register_encoder("resnet101")
class ResNet101(ResNet):
    depths: tuple[int, ...] = RESNET_DEPTHS["resnet101"]


@register_encoder("resnet152")
class ResNet152(ResNet):
    depths: tuple[int, ...] = RESNET_DEPTHS["resnet152"]
