"""TFDS builder of the shapes dataset: procedurally rendered, no files needed.

Example ``i`` of a split is drawn from ``numpy.random.default_rng((seed, split, i))``, so the
same config always yields the same bytes. Per object the ground truth for grounding metrics is
stored: bounding box (``tfds.features.BBox``, 0..1), size, colour and shape.

    builder = Shapes(data_dir="data/tfds")                      # "64px": 20000/1000/1000
    builder = Shapes(config=ShapesConfig(name="tiny", num_train=40, num_validation=8,
                                         num_test=8), data_dir=tmp)
"""

import dataclasses
import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from show_attend_tell.data.shapes import attributes, captions, scene

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
    image_size: int = 64
    num_train: int = 20_000
    num_validation: int = 1_000
    num_test: int = 1_000
    seed: int = 0
    caption_order: str = "shuffled"  # see show_attend_tell/data/shapes/captions.py


class Shapes(tfds.core.GeneratorBasedBuilder):
    """Coloured shapes with grounded captions (see show_attend_tell/data/shapes/scene.py)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        ShapesConfig(name="64px", description="64x64 images", image_size=64),
        ShapesConfig(name="128px", description="128x128 images", image_size=128),
        ShapesConfig(name="64px_salience", description="64x64 images, objects named in salience "
                     "order (large first, then left to right)", image_size=64,
                     caption_order="salience"),
    ]
    DEFAULT_CONFIG_NAME = "64px"

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        return self.dataset_info_from_configs(
            description="1-3 coloured shapes per image with 5 captions and per-object boxes.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
                "image_id": np.int64,
                "captions": tfds.features.Sequence(tfds.features.Text()),
                "objects": tfds.features.Sequence({
                    "bbox": tfds.features.BBoxFeature(),
                    "size": tfds.features.ClassLabel(names=attributes.SIZES),
                    "colour": tfds.features.ClassLabel(names=attributes.COLOURS),
                    "shape": tfds.features.ClassLabel(names=attributes.SHAPES),
                }),
            }),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        config = self.builder_config
        counts = (config.num_train, config.num_validation, config.num_test)
        # Image ids are unique across splits: each split continues where the previous ended.
        starts = np.cumsum((0,) + counts[:-1])
        return {
            name: self._generate_examples(index, int(start), count)
            for index, (name, start, count) in enumerate(zip(SPLITS, starts, counts, strict=True))
        }

    def _generate_examples(self, split_index: int, first_id: int, count: int):
        for i in range(count):
            yield i, make_example(self.builder_config, split_index, i, first_id + i)


def make_example(config: ShapesConfig, split_index: int, index: int, image_id: int) -> dict:
    """The features of one scene, ready for TFDS to encode (image as PNG bytes)."""
    rng = np.random.default_rng((config.seed, split_index, index))
    size = config.image_size
    objects = scene.sample_objects(rng, size)
    pixels = scene.render(rng, objects, size)
    png = io.BytesIO()
    # Fast zlib level: noise barely compresses, and level 6 would double the build time.
    Image.fromarray(pixels).save(png, format="PNG", compress_level=1)
    png.seek(0)
    return {
        "image": png,
        "image_id": image_id,
        "captions": captions.captions(rng, objects, size, config.caption_order),
        "objects": [{
            "bbox": tfds.features.BBox(o.box[0] / size, o.box[1] / size, o.box[2] / size,
                                       o.box[3] / size),
            "size": o.size,
            "colour": o.colour,
            "shape": o.shape,
        } for o in objects],
    }
