"""Where datasets live: build one into a TFDS ``data_dir`` (``sat data build``) and open it.

Names: ``shapes`` (configs ``64px``, ``64px_salience``, ``128px``, or any name with options),
``karpathy`` with config ``flickr8k`` | ``flickr30k`` | ``coco`` | ``coco_trainrestval``
(``karpathy/flickr8k`` also works), and TFDS's catalog ``coco_captions``.
"""

import time

import tensorflow_datasets as tfds

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
    from show_attend_tell.data.shapes import Shapes, ShapesConfig

    unknown = set(options) - set(SHAPES_OPTIONS)
    if unknown:
        raise InvalidInput(f"shapes: unknown options {sorted(unknown)}; expected {SHAPES_OPTIONS}")
    predefined = {c.name: c for c in Shapes.BUILDER_CONFIGS}
    name = builder_config or Shapes.DEFAULT_CONFIG_NAME
    if not options:
        if name not in predefined:
            raise InvalidInput(f"shapes: unknown builder config {name!r}; expected one of "
                             f"{sorted(predefined)} or split-size options such as num_train=")
        return Shapes(config=name, data_dir=data_dir)
    if name in predefined:
        raise InvalidInput(f"shapes: {name!r} is a predefined config; give a new name for "
                         f"custom options {options}")
    return Shapes(config=ShapesConfig(name=name, **options), data_dir=data_dir)


def _karpathy_builder(data_dir, builder_config, options):
    from show_attend_tell.data.karpathy import Karpathy

    unknown = set(options) - set(KARPATHY_OPTIONS)
    if unknown:
        raise InvalidInput(f"karpathy: unknown options {sorted(unknown)}; expected {KARPATHY_OPTIONS}")
    if "manual_dir" not in options:
        raise InvalidInput("karpathy: pass --manual_dir, the folder with dataset_<name>.json and "
                         "the images (see show_attend_tell/data/karpathy/builder.py)")
    return Karpathy(config=builder_config or "flickr8k", data_dir=data_dir,
                    skip_bad_images=bool(options.get("skip_bad_images", False))), options["manual_dir"]


def build_dataset(name: str, data_dir, builder_config: str | None = None, **options) -> Path:
    """Build ``name`` into ``data_dir`` (a no-op when already built); returns its folder."""
    name, builder_config = split_name(name, builder_config)
    manual_dir = options.pop("manual_dir", None) if name == "coco_captions" else None
    if name == "shapes":
        builder = _shapes_builder(data_dir, builder_config, options)
    elif name == "karpathy":
        builder, manual_dir = _karpathy_builder(data_dir, builder_config, options)
    elif name == "coco_captions":
        if options:
            raise InvalidInput(f"coco_captions: unknown options {sorted(options)}")
        builder = tfds.builder("coco_captions", config=builder_config, data_dir=data_dir)
    else:
        raise InvalidInput(f"unknown dataset {name!r}; expected shapes, karpathy/<flickr8k|flickr30k"
                         "|coco|coco_trainrestval> or coco_captions")
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
    name, builder_config = split_name(name, builder_config)
    if name == "shapes":
        builder_config = builder_config or "64px"
    folder = Path(data_dir) / name / builder_config if builder_config else None
    versions = sorted(folder.glob("*/dataset_info.json"), key=_version_key) if folder else []
    if versions:
        return tfds.builder_from_directory(versions[-1].parent)
    if name == "coco_captions":
        builder = tfds.builder("coco_captions", config=builder_config, data_dir=data_dir)
        if builder.is_prepared():
            return builder
    full = f"{name}/{builder_config}" if builder_config else name
    raise MissingInput(
        f"dataset {full} is not built in {data_dir}; run: sat data build {full} --data_dir "
        f"{data_dir}" + (" --manual_dir <folder>" if name != "shapes" else "")
    )


def _version_key(info_path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in info_path.parent.name.split("."))
    except ValueError:
        return (-1,)
