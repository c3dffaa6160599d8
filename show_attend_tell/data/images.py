"""Reading image files of any mode and size as the RGB uint8 arrays encoders take."""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# What Pillow raises for bytes it cannot decode; DecompressionBombError means more than
# 2 x Image.MAX_IMAGE_PIXELS (179 million) pixels.
DECODE_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError)


# Decoded pixels one image may have (JPEGs count after reduced-scale decoding): 64 megapixels
# is ~190 MB as RGB. Pillow's own limit (Image.MAX_IMAGE_PIXELS, 89 M; an error only past 179 M)
# lets a 13000 x 13000 PNG through with a warning and a 1 GB spike.
PIXEL_BUDGET = 64_000_000


def check_pixel_budget(image: Image.Image, path) -> None:
    """Raise ValueError naming ``path`` when decoding ``image`` (opened, not yet loaded) would
    exceed :data:`PIXEL_BUDGET`."""
    width, height = image.size
    if width * height > PIXEL_BUDGET:
        raise ValueError(f"{path}: {width}x{height} pixels ({width * height / 1e6:.0f} megapixels) "
                         f"exceeds the {PIXEL_BUDGET // 1_000_000}-megapixel decoding budget; "
                         "downscale the image first")


def unreadable(path, error: Exception) -> ValueError:
    """The one-line error for an image file Pillow cannot decode."""
    return ValueError(f"{path}: not a readable image, expected a JPEG, PNG or other file "
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


def load_image_rgb(path, size: int) -> np.ndarray:
    """The file at ``path`` as uint8 ``[size, size, 3]``; unreadable files raise ValueError
    naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such image file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, expected a JPEG or PNG image")
    try:
        with Image.open(path) as image:
            # A JPEG decodes at 1/2..1/8 scale when that still covers ``size``: a 50-megapixel
            # photo then costs about what a small one does. Other formats ignore this.
            image.draft(image.mode, (size, size))
            check_pixel_budget(image, path)
            image.load()
            rgb = to_rgb(image)
    except DECODE_ERRORS as error:
        raise unreadable(path, error) from error
    return np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
