"""Where datasets live: build one into a TFDS ``data_dir`` (``sat data build``) and open it.

Names: ``shapes`` (configs ``64px``, ``64px_salience``, ``128px``, or any name with options),
``karpathy`` with config ``flickr8k`` | ``flickr30k`` | ``coco`` | ``coco_trainrestval``
(``karpathy/flickr8k`` also works), and TFDS's catalog ``coco_captions``. :data:`DATASETS`
is the registry: each name's builder, default config and example format, looked up here only.
"""

import time
from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf
import tensorflow_datasets as tfds

from show_attend_tell.data import coco_captions
from show_attend_tell.data.karpathy import Karpathy
from show_attend_tell.data.shapes import Shapes, ShapesConfig
from show_attend_tell.errors import InvalidInput, MissingInput
from show_attend_tell.paths import Path

SHAPES_OPTIONS = ("image_size", "num_train", "num_validation", "num_test", "seed", "caption_order")
KARPATHY_OPTIONS = ("manual_dir", "skip_bad_images")


def split_name(name: str, builder_config: str | None) -> tuple[str, str | None]:
    """``("karpathy/flickr8k", None)`` and ``("karpathy", "flickr8k")`` -> the latter."""
    if "/" in name:
        name, _, from_name = name.partition("/")
        if builder_config and builder_config != from_name:
            raise InvalidInput(f"dataset {name}/{from_name} given with builder config {builder_config!r}")
        builder_config = from_name
    return name, builder_config or None


def _shapes_builder(data_dir, builder_config, options):
    unknown = set(options) - set(SHAPES_OPTIONS)
    if unknown:
        raise InvalidInput(f"shapes: unknown options {sorted(unknown)}; expected {SHAPES_OPTIONS}")
    predefined = {c.name: c for c in Shapes.BUILDER_CONFIGS}
    name = builder_config or Shapes.DEFAULT_CONFIG_NAME
    if not options:
        if name not in predefined:
            raise InvalidInput(f"shapes: unknown builder config {name!r}; expected one of "
                             f"{sorted(predefined)} or split-size options such as num_train=")
        return Shapes(config=name, data_dir=data_dir), None
    if name in predefined:
        raise InvalidInput(f"shapes: {name!r} is a predefined config; give a new name for "
                         f"custom options {options}")
    return Shapes(config=ShapesConfig(name=name, **options), data_dir=data_dir), None


def _karpathy_builder(data_dir, builder_config, options):
    unknown = set(options) - set(KARPATHY_OPTIONS)
    if unknown:
        raise InvalidInput(f"karpathy: unknown options {sorted(unknown)}; expected {KARPATHY_OPTIONS}")
    if "manual_dir" not in options:
        raise InvalidInput("karpathy: pass --manual_dir, the folder with dataset_<name>.json and "
                         "the images (see show_attend_tell/data/karpathy/builder.py)")
    return Karpathy(config=builder_config or "flickr8k", data_dir=data_dir,
                    skip_bad_images=bool(options.get("skip_bad_images", False))), options["manual_dir"]


def _coco_captions_builder(data_dir, builder_config, options):
    manual_dir = options.pop("manual_dir", None)
    if options:
        raise InvalidInput(f"coco_captions: unknown options {sorted(options)}")
    return tfds.builder("coco_captions", config=builder_config, data_dir=data_dir), manual_dir


def _shapes_example(features: dict) -> dict:
    return {key: features[key] for key in ("image", "image_id", "captions", "objects")}


def _karpathy_example(features: dict) -> dict:
    return {"image": features["image"], "image_id": features["image_id"],
            "captions": features["captions"]["raw"]}


class Dataset(NamedTuple):
    """How one dataset is built, found and read: the one place a dataset name is looked up."""

    # (data_dir, builder_config, options) -> (TFDS builder, manual_dir or None)
    builder: Callable[[object, str | None, dict], tuple[tfds.core.DatasetBuilder, object]]
    default_config: str | None  # the builder config when none is given
    # its features -> ``image`` (encoded), ``image_id`` int64, ``captions`` string [N]
    # (+ ``objects`` where the dataset has grounding ground truth)
    to_example: Callable[[dict], dict]
    in_tfds_catalog: bool  # TFDS's own dataset, which TFDS finds under data_dir itself


DATASETS = {
    "shapes": Dataset(_shapes_builder, "64px", _shapes_example, False),
    "karpathy": Dataset(_karpathy_builder, "flickr8k", _karpathy_example, False),
    "coco_captions": Dataset(_coco_captions_builder, None, coco_captions.to_example, True),
}


def dataset(name: str) -> Dataset:
    """The registry entry of ``name`` (``karpathy/flickr8k`` or ``karpathy``)."""
    name, _ = split_name(name, None)
    if name not in DATASETS:
        raise InvalidInput(f"unknown dataset {name!r}; expected shapes, karpathy/<flickr8k|"
                           "flickr30k|coco|coco_trainrestval> or coco_captions")
    return DATASETS[name]


def build_dataset(name: str, data_dir, builder_config: str | None = None, **options) -> Path:
    """Build ``name`` into ``data_dir`` (a no-op when already built); returns its folder."""
    entry = dataset(name)
    name, builder_config = split_name(name, builder_config)
    builder, manual_dir = entry.builder(data_dir, builder_config, dict(options))
    start = time.perf_counter()
    print(f"building {builder.info.full_name} into {builder.data_dir}", flush=True)
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(download_config=download_config)
    splits = ", ".join(f"{s} {info.num_examples}" for s, info in builder.info.splits.items())
    print(f"{builder.info.full_name}: {splits} images ({time.perf_counter() - start:.0f} s) "
          f"in {builder.data_dir}", flush=True)
    return Path(builder.data_dir)


def open_builder(name: str, data_dir, builder_config: str | None = None) -> tfds.core.DatasetBuilder:
    """A built dataset, read from its folder (custom configs included); a clear error naming
    the build command when it is missing."""
    entry = dataset(name)
    name, builder_config = split_name(name, builder_config)
    builder_config = builder_config or entry.default_config
    folder = Path(data_dir) / name / builder_config if builder_config else None
    versions = sorted(folder.glob("*/dataset_info.json"), key=_version_key) if folder else []
    if versions:
        return tfds.builder_from_directory(versions[-1].parent)
    if entry.in_tfds_catalog:
        builder = tfds.builder(name, config=builder_config, data_dir=data_dir)
        if builder.is_prepared():
            return builder
    full = f"{name}/{builder_config}" if builder_config else name
    raise MissingInput(
        f"dataset {full} is not built in {data_dir}; run: sat data build {full} --data_dir "
        f"{data_dir}" + (" --manual_dir <folder>" if name != "shapes" else "")
    )


def read_split(builder: tfds.core.DatasetBuilder, split: str) -> tf.data.Dataset:
    """``split`` (a TFDS split spec) of an opened dataset, in file order, images still encoded,
    with tf.data's autotuning off for every pipeline built on it.

    Autotuning runs a model-optimisation thread per iterator, and deleting an iterator waits
    for that thread: seen (gdb) blocking the deleting thread, GIL held, for 20-80 s in
    ``RootDataset::Iterator::~Iterator`` -> ``Model::OptimizeLoop`` when garbage collection
    freed a training or evaluation iterator left unfinished. Without autotuning, ``AUTOTUNE``
    parallelism is the number of CPU cores, all that the light per-example work here (decode,
    resize, tokenise) can use."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return builder.as_dataset(split=split, shuffle_files=False,
                              decoders={"image": tfds.decode.SkipDecoding()}).with_options(options)


def _version_key(info_path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in info_path.parent.name.split("."))
    except ValueError:
        return (-1,)
