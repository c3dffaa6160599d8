"""The evaluated test images as small files beside the HTML report.

Each image is written as the model saw it: the centred square the pipeline crops
(``data.images.resize_and_crop``), at most 224 px, so the attention grid lies over it cell for
cell. Flat synthetic
scenes compress better as PNG, photographs as JPEG; the smaller of the two is kept.
"""

import io

import ml_collections
import tensorflow as tf
from PIL import Image

from show_attend_tell.data import pipeline
from show_attend_tell.data.images import resize_and_crop
from show_attend_tell.paths import Path

MAX_SIDE = 224  # pixels; smaller images keep their own size


def _encode_smallest(image: Image.Image) -> tuple[bytes, str]:
    png, jpeg = io.BytesIO(), io.BytesIO()
    image.save(png, "PNG", optimize=True)
    image.save(jpeg, "JPEG", quality=85)
    return (png.getvalue(), "png") if png.tell() <= jpeg.tell() else (jpeg.getvalue(), "jpg")


def export_images(data: dict, split: str, image_ids: list[int], out_dir: Path) -> dict[int, str]:
    """Write ``images/<image_id>.{png,jpg}`` under ``out_dir`` for each of ``image_ids`` found in
    ``split`` of the dataset that ``data`` (a run's ``config.json`` ``data`` section) names.

    Returns {image_id: path relative to ``out_dir``}; stops reading once every id is found.
    """


    # The raw dataset, never a feature cache: the report shows pixels, not annotations.
    data_config = ml_collections.ConfigDict({**data, "feature_cache": ""})
    wanted = set(image_ids)
    folder = out_dir / "images"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[int, str] = {}
    for example in pipeline.open_split(data_config, split, 0, 1).as_numpy_iterator():
        image_id = int(example["image_id"])
        if image_id not in wanted or image_id in written:
            continue
        with Image.open(io.BytesIO(example["image"])) as header:
            side = min(MAX_SIDE, *header.size)
        image = Image.fromarray(resize_and_crop(tf.constant(example["image"]), side).numpy())
        payload, suffix = _encode_smallest(image)
        path = folder / f"{image_id}.{suffix}"
        path.write_bytes(payload)
        written[image_id] = f"images/{path.name}"
        if len(written) == len(wanted):
            break
    return written

