"""TFDS builder of Flickr8k / Flickr30k / COCO with Karpathy's splits, from local files.

``manual_dir`` holds ``dataset_<name>.json`` and the images: for COCO under the JSON's
``filepath`` folders (``train2014/``, ``val2014/``), for Flickr in ``Flicker8k_Dataset/`` or
``flickr30k-images/`` (or ``images/``, or ``manual_dir`` itself)::

    sat data build karpathy/flickr8k --manual_dir ~/flickr8k
    # in Python: Karpathy(config="coco", data_dir=..., skip_bad_images=True)

A missing or unreadable image stops the build with an error naming the file, unless
``skip_bad_images=True``, which leaves it out and logs how many were skipped. Non-RGB or
non-JPEG images are stored re-encoded as RGB JPEG.
"""

import dataclasses
import io
import logging
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from show_attend_tell.data.images import DECODE_ERRORS, check_pixel_budget, to_rgb, unreadable
from show_attend_tell.data.karpathy.annotations import ImageEntry, read_annotations

log = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class KarpathyConfig(tfds.core.BuilderConfig):
    json_name: str = ""
    image_dirs: tuple[str, ...] = ("images", "")  # tried in order under manual_dir; "" = itself
    merge_restval: bool = False  # COCO: restval images join train (no restval split)


class Karpathy(tfds.core.GeneratorBasedBuilder):
    """Image-caption datasets with Karpathy & Fei-Fei's train/val/test(/restval) splits."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
    BUILDER_CONFIGS = [
        KarpathyConfig(name="flickr8k", json_name="dataset_flickr8k.json",
                       image_dirs=("Flicker8k_Dataset", "Flickr8k_Dataset", "images", "")),
        KarpathyConfig(name="flickr30k", json_name="dataset_flickr30k.json",
                       image_dirs=("flickr30k-images", "images", "")),
        KarpathyConfig(name="coco", json_name="dataset_coco.json", image_dirs=("",)),
        KarpathyConfig(name="coco_trainrestval", json_name="dataset_coco.json",
                       image_dirs=("",), merge_restval=True),
    ]

    def __init__(self, *, skip_bad_images: bool = False, **kwargs):
        self.skip_bad_images = skip_bad_images
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Images with 5 reference captions, Karpathy's splits.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image_id": np.int64,
                "filename": tfds.features.Text(),
                "captions": tfds.features.Sequence({
                    "raw": tfds.features.Text(),
                    "tokens": tfds.features.Sequence(tfds.features.Text()),
                    "sentid": np.int64,
                }),
            }),
            homepage="https://cs.stanford.edu/people/karpathy/deepimagesent/",
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        manual_dir = Path(dl_manager.manual_dir)
        entries = read_annotations(manual_dir / config.json_name)
        image_root = next(manual_dir / d for d in config.image_dirs if (manual_dir / d).is_dir())
        by_split: dict[str, list[ImageEntry]] = {}
        for entry in entries:
            split = "train" if config.merge_restval and entry.split == "restval" else entry.split
            by_split.setdefault(split, []).append(entry)
        return {split: self._generate_examples(split, items, image_root)
                for split, items in by_split.items()}

    def _generate_examples(self, split: str, entries: list[ImageEntry], image_root: Path):
        skipped = 0
        for entry in entries:
            path = image_root / entry.filepath / entry.filename
            try:
                image = rgb_jpeg(path)
            except ValueError:
                if not self.skip_bad_images:
                    raise
                skipped += 1
                continue
            yield entry.image_id, {
                "image": io.BytesIO(image),
                "image_id": entry.image_id,
                "filename": entry.filename,
                "captions": [{"raw": s.raw, "tokens": list(s.tokens), "sentid": s.sentid}
                             for s in entry.sentences],
            }
        if skipped:
            log.warning("%s %s: skipped %d missing or unreadable images (skip_bad_images=True)",
                        self.builder_config.name, split, skipped)


def rgb_jpeg(path: Path) -> bytes:
    """The file's bytes when it is an RGB JPEG, else the image re-encoded as one; a
    ``ValueError`` naming the file when it is missing or unreadable."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: image file missing or unreadable ({error.strerror})") from error
    try:
        with Image.open(io.BytesIO(data)) as image:
            check_pixel_budget(image, path)
            image.load()  # decodes everything: truncated files fail here, not in training
            if image.format == "JPEG" and image.mode == "RGB":
                return data
            buffer = io.BytesIO()
            to_rgb(image).save(buffer, format="JPEG", quality=95)
            return buffer.getvalue()
    except DECODE_ERRORS as error:
        raise unreadable(path, error) from error
