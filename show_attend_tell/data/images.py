"""The one image path: a file's bytes -> the uint8 ``[S, S, 3]`` array an encoder takes.

Training, evaluation, the feature cache and ``sat caption`` all go through the same two steps,
so the same photo gives the same pixels everywhere:

1. :func:`encoded_rgb` (at dataset build time, and in ``sat caption``): check the file, and
   keep its bytes when they are an 8-bit RGB JPEG or PNG; any other mode or format
   (grayscale, palette, RGBA over white, CMYK, 16-bit, GIF, BMP...) is re-encoded as a lossless
   RGB PNG. Files over :data:`MAX_PIXELS` are refused before any pixel is decoded.
2. :func:`resize_and_crop` (TensorFlow ops, in tf.data or eagerly): decode, scale the shorter
   side to S (bilinear, antialiased) and take the centred S×S crop, as ImageNet-trained encoders
   are evaluated. A 640×480 photo loses 80 columns on each side; nothing is squashed. Images
   already S×S (shapes at 64 px) pass through bit-exact.
"""

import io
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from show_attend_tell.errors import InvalidInput
from show_attend_tell.paths import Path

# What Pillow raises for bytes it cannot decode; DecompressionBombError means more than
# 2 x Image.MAX_IMAGE_PIXELS (179 million) pixels.
DECODE_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError)

# The largest photo read (64 megapixels, e.g. 9248×6936): decoding one costs 3 bytes a pixel
# (192 MB) before it is resized, so larger files are refused before decoding.
MAX_PIXELS = 64_000_000


def unreadable(path, error: Exception) -> InvalidInput:
    """The one-line error for an image file Pillow cannot decode."""
    return InvalidInput(f"{path}: not a readable image, expected a JPEG, PNG or other file "
                      f"Pillow decodes ({error})")


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette, RGBA (over white), CMYK and 16-bit images -> 8-bit RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray((array / peak * 255.0).round().astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def encoded_rgb(path) -> bytes:
    """The bytes of the image file at ``path`` as an RGB JPEG or PNG (see the module doc);
    a one-line ``InvalidInput`` naming the file when it is missing, empty, unreadable or larger
    than :data:`MAX_PIXELS`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidInput(f"{path}: image file missing or unreadable ({error.strerror})") from error
    if not data:
        raise InvalidInput(f"{path}: empty file, expected a JPEG or PNG image")
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as image:
            # Pillow warns past 89 megapixels; the budget below decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InvalidInput(f"{path}: {width}×{height} image has {width * height:,} pixels, "
                                 f"more than the {MAX_PIXELS:,} read (expected a photo of at "
                                 f"most {MAX_PIXELS // 1_000_000} megapixels; downscale it)")
            image.load()  # decodes everything: truncated files fail here, not in training
            if image.format in ("JPEG", "PNG") and image.mode == "RGB":
                return data
            buffer = io.BytesIO()
            to_rgb(image).save(buffer, format="PNG")
            return buffer.getvalue()
    except DECODE_ERRORS as error:
        raise unreadable(path, error) from error


def resize_and_crop(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """JPEG/PNG bytes -> uint8 ``[S, S, 3]``: the shorter side scaled to S (bilinear,
    antialiased), then the centred S×S crop."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])

    def resize():
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = image_size / tf.reduce_min(shape)
        # At least S on both sides, whatever the rounding of the longer side.
        new_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), image_size)
        resized = tf.image.resize(image, new_shape, antialias=True)
        top = (new_shape[0] - image_size) // 2
        left = (new_shape[1] - image_size) // 2
        cropped = resized[top:top + image_size, left:left + image_size]
        cropped = tf.ensure_shape(cropped, [image_size, image_size, 3])
        return tf.cast(tf.clip_by_value(tf.round(cropped), 0, 255), tf.uint8)

    same = tf.reduce_all(tf.shape(image)[:2] == image_size)
    return tf.cond(same, lambda: image, resize)


def load_image_rgb(path, size: int) -> np.ndarray:
    """The file at ``path`` as the uint8 ``[size, size, 3]`` array training would feed for the
    same file; unreadable files raise an ``InvalidInput`` naming the file."""
    return resize_and_crop(tf.constant(encoded_rgb(path)), size).numpy()
