"""The one image path (data/images.py): the same file gives the same pixels in training,
evaluation and `sat caption`; photos keep their proportions; huge files are refused unread."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_karpathy import build, make_dummy

from configs.flickr8k import get_config
from show_attend_tell.data import images, pipeline

SIZE = 32


def photo(width: int, height: int, fmt: str) -> bytes:
    """A noisy photo-like image (so resampling differences would show), encoded as ``fmt``."""
    rng = np.random.default_rng(width * height)
    smooth = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), np.uint8)
    pixels = np.asarray(Image.fromarray(smooth).resize((width, height), Image.Resampling.BICUBIC))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def test_training_evaluation_and_caption_read_a_file_to_identical_arrays(tmp_path):
    root = make_dummy(tmp_path / "flickr", "flickr8k")
    folder = root / "Flicker8k_Dataset"
    # The val and test images of the dummy corpus become a landscape JPEG and a portrait PNG
    # (the builder keeps both as they are: RGB JPEG / PNG).
    (folder / "img_3.jpg").write_bytes(photo(500, 375, "JPEG"))
    (folder / "img_4.jpg").write_bytes(photo(333, 500, "PNG"))
    build(root, tmp_path)
    config = get_config()
    config.data.data_dir = str(tmp_path / "tfds")
    for split, filename in (("val", "img_3.jpg"), ("test", "img_4.jpg")):
        batch = next(pipeline.eval_batches(config, None, split, 1, SIZE, process_index=0,
                                           process_count=1))
        np.testing.assert_array_equal(batch["image"][0],
                                      images.load_image_rgb(folder / filename, SIZE))


@pytest.mark.parametrize("width,height", [(300, 100), (100, 300), (640, 480), (333, 500)])
def test_non_square_photos_are_centre_cropped_not_squashed(tmp_path, width, height):
    side = min(width, height)
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[...] = (0, 0, 255)  # blue margins outside the centred square
    top, left = (height - side) // 2, (width - side) // 2
    pixels[top:top + side, left:left + side] = (255, 0, 0)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    rgb = images.load_image_rgb(path, SIZE).astype(int)
    assert rgb.shape == (SIZE, SIZE, 3)
    # Everything but an antialiased border pixel is the red centre: no blue margin survives.
    np.testing.assert_allclose(rgb[1:-1, 1:-1], np.broadcast_to((255, 0, 0), (SIZE - 2, SIZE - 2, 3)),
                               atol=2)
    assert rgb[..., 2].max() < 128


def test_images_already_at_size_pass_through_bit_exact():
    pixels = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    out = images.resize_and_crop(tf.constant(buffer.getvalue()), SIZE).numpy()
    np.testing.assert_array_equal(out, pixels)


def test_photo_over_the_pixel_budget_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "panorama.jpg"
    # A valid header with the pixel data cut off: decoding it would fail as "truncated", so
    # the budget error proves the size was checked first.
    path.write_bytes(photo(400, 300, "JPEG")[:1500])
    monkeypatch.setattr(images, "MAX_PIXELS", 400 * 300 - 1)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"panorama.jpg: 400×300 image has 120,000 pixels") as error:
        images.load_image_rgb(path, SIZE)
    assert "\n" not in str(error.value) and path.read_bytes() == before
