"""CNN encoders that turn images into annotation vectors (paper §3.1.1).

Shape letters: B batch, H×W image, L = grid cells (annotations), D annotation dimension.

Every encoder maps uint8 images ``[B, H, W, 3]`` to annotations ``[B, L, D]`` and declares the
input it expects (``image_size``, per-channel ``mean``/``std`` on the 0..1 scale), so the data
pipeline only resizes and the normalisation runs on the accelerator. Adding a backbone is one
module that calls :func:`register_encoder`.
"""

from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp

from show_attend_tell.errors import InvalidInput

_ENCODERS: dict[str, type[nn.Module]] = {}


def register_encoder(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding an encoder to the registry under ``name``."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _ENCODERS:
            raise ValueError(f"encoder {name!r} is registered twice")
        _ENCODERS[name] = cls
        return cls

    return add


def encoder_names() -> list[str]:
    return sorted(_ENCODERS)


def get_encoder_class(name: str) -> type[nn.Module]:
    """The registered encoder class; unknown names fail listing the known ones."""
    if name not in _ENCODERS:
        raise InvalidInput(
            f"config.model.encoder.name={name!r} is not a known encoder; "
            f"expected one of {encoder_names()}"
        )
    return _ENCODERS[name]


def normalize_images(images: jnp.ndarray, mean, std, dtype) -> jnp.ndarray:
    """uint8 ``[B, H, W, 3]`` -> ``(x/255 - mean) / std`` in ``dtype``."""
    x = images.astype(jnp.float32) / 255.0
    x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    return x.astype(dtype)


def space_to_depth(x: jnp.ndarray, block: int) -> jnp.ndarray:
    """``[B, H, W, C]`` -> ``[B, H/k, W/k, k·k·C]``: each k×k patch becomes one pixel."""
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height // block, block, width // block, block, channels)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(
        batch, height // block, width // block, block * block * channels
    )


@register_encoder("small_convnet")
class SmallConvNet(nn.Module):
    """A trainable ConvNet for small synthetic images: 64×64 -> 8×8 grid (L = 64).

    The ``patch``×``patch`` patches of the image are stacked into channels (lossless, and
    cheaper on CPU than a stride-1 stem on 3 channels), a stride-1 3×3 convolution reads them,
    then one stride-2 3×3 convolution per further width (GroupNorm, ReLU) halves the grid,
    ``blocks`` residual 3×3 convolutions widen each annotation's receptive field to whole
    objects, and a 1×1 projection gives ``features`` channels.
    """

    features: int = 128
    widths: tuple[int, ...] = (32, 64, 128)
    patch: int = 2
    blocks: int = 0
    image_size: int = 64
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """images uint8 ``[B, H, W, 3]`` -> annotations ``[B, L, D]``."""
        del train  # no batch statistics or dropout in this backbone
        x = space_to_depth(normalize_images(images, self.mean, self.std, self.dtype), self.patch)
        for index, width in enumerate(self.widths):
            stride = 1 if index == 0 else 2
            x = nn.Conv(width, (3, 3), strides=(stride, stride), dtype=self.dtype)(x)
            x = nn.relu(self._norm(x))
        for _ in range(self.blocks):
            x = x + nn.relu(self._norm(nn.Conv(x.shape[-1], (3, 3), dtype=self.dtype)(x)))
        x = nn.Conv(self.features, (1, 1), dtype=self.dtype)(x)
        batch, height, width, depth = x.shape
        return x.reshape(batch, height * width, depth)

    def _norm(self, x: jnp.ndarray) -> jnp.ndarray:
        return nn.GroupNorm(num_groups=min(8, x.shape[-1]), dtype=self.dtype)(x)


def build_encoder(encoder_config, dtype) -> nn.Module:
    """The encoder named by ``config.model.encoder`` with its keyword settings."""
    cls = get_encoder_class(encoder_config.name)
    kwargs = dict(encoder_config.get("kwargs", {}))
    return cls(dtype=dtype, **kwargs)


@register_encoder("precomputed")
class PrecomputedAnnotations(nn.Module):
    """Annotations computed beforehand (a frozen encoder's feature cache): the "images" fed
    to the captioner are already ``[B, L, D]`` float arrays and pass through unchanged."""

    num_annotations: int = 196
    annotation_dim: int = 512
    image_size: int = 0
    dtype: jnp.dtype = jnp.float32

    def __call__(self, annotations: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train
        return annotations.astype(self.dtype)


def annotations_have_gradients(encoder: nn.Module) -> bool:
    """Whether training needs ∂loss/∂annotations: only a trainable CNN has parameters behind
    them (frozen CNNs stop the gradient; precomputed annotations are data)."""
    return getattr(encoder, "trainable", True) and not isinstance(encoder, PrecomputedAnnotations)


def example_input(encoder: nn.Module) -> jnp.ndarray:
    """A one-row input of the shape and dtype ``encoder`` takes (for ``init``)."""
    if isinstance(encoder, PrecomputedAnnotations):
        return jnp.zeros((1, encoder.num_annotations, encoder.annotation_dim), jnp.float32)
    return jnp.zeros((1, encoder.image_size, encoder.image_size, 3), jnp.uint8)
