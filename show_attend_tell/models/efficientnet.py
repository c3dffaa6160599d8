"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant: ReLU6, no squeeze-excitation, fixed
stem and head): a small backbone that runs fast on CPU.

Annotations are the head's 1×1 convolution output at stride 32: 7×7×1280 at 224×224
(L = 49, D = 1280). Convolutions pad like TensorFlow's ``SAME`` (the weights come from the
TensorFlow original). Inputs are RGB scaled to about -1..1 ((x - 127) / 128 on 0–255).
``include_top`` adds the ImageNet classifier, used to check imported weights on photographs.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from show_attend_tell.models.encoders import normalize_images, register_encoder
from show_attend_tell.models.frozen_batchnorm import FrozenBatchNorm

# (expansion, kernel, stride, output channels, blocks) per stage.
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_WIDTH, HEAD_WIDTH, NUM_CLASSES = 32, 1280, 1000
BN_EPSILON = 1e-3


class DepthwiseConv(nn.Module):
    """A k×k depthwise convolution with TensorFlow's ``SAME`` padding: ``[B, H, W, C]`` ->
    ``[B, ⌈H/s⌉, ⌈W/s⌉, C]``, the same parameter (``kernel`` ``[k, k, 1, C]``) and result as
    ``nn.Conv(C, (k, k), feature_group_count=C)``.

    Computed as k² shifted multiply-adds, which XLA:CPU fuses into one pass over the input:
    its grouped-convolution kernel runs a whole EfficientNet-Lite0 forward pass 5-10× slower.
    """

    kernel_size: int
    stride: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        k, s = self.kernel_size, self.stride
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, 1, x.shape[-1]),
                            jnp.float32).astype(self.dtype)
        height, width = x.shape[1:3]
        out_h, out_w = -(-height // s), -(-width // s)
        pad_h, pad_w = max((out_h - 1) * s + k - height, 0), max((out_w - 1) * s + k - width, 0)
        x = jnp.pad(x.astype(self.dtype), ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                                           (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
        out = 0
        for i in range(k):
            for j in range(k):
                window = x[:, i:i + (out_h - 1) * s + 1:s, j:j + (out_w - 1) * s + 1:s]
                out = out + window * kernel[i, j, 0]
        return out


def conv_bn_act(x, features, kernel, stride, name, dtype, groups=1, activate=True):
    """Bias-free ``{name}_conv``, ``{name}_bn`` and ReLU6 (unless ``activate`` is False);
    ``groups == features`` is a depthwise convolution."""
    if groups == features == x.shape[-1]:
        x = DepthwiseConv(kernel, stride, dtype, name=f"{name}_conv")(x)
    else:
        x = nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME",
                    feature_group_count=groups, use_bias=False, dtype=dtype, name=f"{name}_conv")(x)
    x = FrozenBatchNorm(BN_EPSILON, dtype, name=f"{name}_bn")(x)
    return jnp.clip(x, 0, 6) if activate else x


def mobile_block(x, expansion, kernel, stride, features, name, dtype):
    """Inverted residual: 1×1 expand → k×k depthwise (stride) → linear 1×1 project (+ input
    when the shape is kept)."""
    inputs, width = x, x.shape[-1] * expansion
    if expansion != 1:
        x = conv_bn_act(x, width, 1, 1, f"{name}_expand", dtype)
    x = conv_bn_act(x, width, kernel, stride, f"{name}_depthwise", dtype, groups=width)
    x = conv_bn_act(x, features, 1, 1, f"{name}_project", dtype, activate=False)
    return x + inputs if stride == 1 and inputs.shape[-1] == features else x


@register_encoder("efficientnet_lite0")
class EfficientNetLite0(nn.Module):
    """uint8 images ``[B, H, W, 3]`` -> annotations ``[B, (H/32)·(W/32), 1280]``, or ImageNet
    logits ``[B, 1000]`` with ``include_top``."""

    image_size: int = 224
    mean: tuple[float, ...] = (127 / 255, 127 / 255, 127 / 255)
    std: tuple[float, ...] = (128 / 255, 128 / 255, 128 / 255)
    trainable: bool = False
    include_top: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train  # batch statistics stay frozen; no dropout before the annotations
        x = normalize_images(images, self.mean, self.std, self.dtype)
        x = conv_bn_act(x, STEM_WIDTH, 3, 2, "stem", self.dtype)
        index = 0
        for expansion, kernel, stride, features, blocks in LITE0_STAGES:
            for repeat in range(blocks):
                x = mobile_block(x, expansion, kernel, stride if repeat == 0 else 1, features,
                                 f"block{index}", self.dtype)
                index += 1
        x = conv_bn_act(x, HEAD_WIDTH, 1, 1, "head", self.dtype)
        if self.include_top:
            return nn.Dense(NUM_CLASSES, dtype=self.dtype, name="classifier")(x.mean(axis=(1, 2)))
        batch, height, width, depth = x.shape
        annotations = x.reshape(batch, height * width, depth)
        # Frozen (the default): no backward pass through the backbone.
        return annotations if self.trainable else jax.lax.stop_gradient(annotations)
