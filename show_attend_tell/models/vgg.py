"""VGG-19 (Simonyan & Zisserman 2015) up to conv5_4: the paper's encoder (§3.1.1, §4.3).

At 224×224 the annotations are conv5_4's 14×14×512 feature map before the last max-pool,
flattened to L = 196 vectors of D = 512. Layer names follow Keras Applications
(``block5_conv4``) so imported weights map one to one. Inputs are RGB; the Caffe-style
preprocessing of the original weights (mean subtraction on the 0–255 scale, no scaling) is
declared here and applied on device.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from show_attend_tell.models.encoders import normalize_images, register_encoder

# Convolutions per block; a 2×2 max-pool separates blocks.
VGG19_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
IMAGENET_MEAN_RGB = (123.68 / 255, 116.779 / 255, 103.939 / 255)


@register_encoder("vgg19")
class VGG19(nn.Module):
    """uint8 images ``[B, H, W, 3]`` -> conv5_4 annotations ``[B, (H/16)·(W/16), 512]``."""

    image_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN_RGB
    std: tuple[float, ...] = (1 / 255, 1 / 255, 1 / 255)
    trainable: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train  # no batch statistics or dropout in VGG
        x = normalize_images(images, self.mean, self.std, self.dtype)
        for block, (width, convs) in enumerate(VGG19_BLOCKS, start=1):
            if block > 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            for conv in range(1, convs + 1):
                x = nn.relu(nn.Conv(width, (3, 3), dtype=self.dtype,
                                    name=f"block{block}_conv{conv}")(x))
        batch, height, width, depth = x.shape
        annotations = x.reshape(batch, height * width, depth)
        # A frozen encoder (the paper's choice) needs no backward pass through 16 convolutions.
        return annotations if self.trainable else jax.lax.stop_gradient(annotations)
