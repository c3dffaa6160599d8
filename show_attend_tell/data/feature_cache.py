"""Annotations of a frozen encoder, computed once per split (``sat data cache-features``).

Shape letters: B batch, H = W = the encoder's ``image_size``, L annotations, D their size.

A cache folder holds ``cache.json`` (the encoder config and, per split, L and D) and one TFDS
dataset per split (``<split>/``) with the source split's features in the same order, except
``image``: the annotations, float16 ``[L, D]``. With ``config.data.feature_cache`` set,
the input pipeline reads these instead of images and the captioner's encoder becomes
``precomputed`` (the decoder is unchanged), so training skips the backbone's forward pass.
"""

import copy
import functools
import json
from collections.abc import Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from show_attend_tell import paths
from show_attend_tell.data import build
from show_attend_tell.data.images import resize_and_crop
from show_attend_tell.errors import InvalidInput, MissingInput, OutputExists
from show_attend_tell.models.encoders import build_encoder, example_input
from show_attend_tell.paths import Path
from show_attend_tell.weights.pretrained import with_pretrained_encoder

METADATA = "cache.json"
DATASET_NAME = "annotations"
STORED_DTYPE = np.float16  # halves the disk of float32; far below the features' noise


def enabled(data: ml_collections.ConfigDict) -> bool:
    return bool(data.get("feature_cache", ""))


def read_metadata(cache_dir: str | Path) -> dict:
    path = Path(cache_dir) / METADATA
    if not path.is_file():
        raise MissingInput(f"config.data.feature_cache={str(cache_dir)!r} has no {METADATA}; "
                                "write it with: sat data cache-features --config ... --split ...")
    return json.loads(path.read_text())


def open_split_builder(cache_dir: str | Path, split: str) -> tfds.core.DatasetBuilder:
    """The cached dataset of ``split``; a clear error when that split was not cached."""
    versions = sorted((Path(cache_dir) / split).glob(f"{DATASET_NAME}/*/dataset_info.json"))
    if not versions:
        raise MissingInput(f"feature cache {cache_dir} has no split {split!r}; run: sat data "
                                f"cache-features --config ... --split {split}")
    return tfds.builder_from_directory(versions[-1].parent)


def annotation_shape(cache_dir: str | Path) -> tuple[int, int]:
    """(L, D) of the cached annotations (every split has the same)."""
    shapes = {tuple(split["shape"]) for split in read_metadata(cache_dir)["splits"].values()}
    if len(shapes) != 1:
        raise InvalidInput(f"feature cache {cache_dir}: splits of different shapes {sorted(shapes)}")
    return shapes.pop()


def model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config.model``, with a ``precomputed`` encoder of the cache's shape when the config
    reads a feature cache written by the same encoder (a different encoder is an error)."""
    if not enabled(config.data):
        return config.model
    cache_dir = config.data.feature_cache
    cached = read_metadata(cache_dir)["encoder"]
    wanted = encoder_identity(config.model.encoder)
    if cached != wanted:
        raise InvalidInput(f"feature cache {cache_dir} was written by encoder {cached}, but "
                         f"config.model.encoder is {wanted}")
    length, depth = annotation_shape(cache_dir)
    model = copy.deepcopy(config.model)
    model.encoder = ml_collections.ConfigDict(
        {"name": "precomputed",
         "kwargs": {"num_annotations": length, "annotation_dim": depth}})
    return model


def encoder_identity(encoder_config: ml_collections.ConfigDict) -> dict:
    """What decides the annotations: name, keyword settings and weights file."""
    return {"name": encoder_config.name, "kwargs": dict(encoder_config.get("kwargs", {})),
            "weights": str(encoder_config.get("weights", ""))}


def frozen_encoder(encoder_config: ml_collections.ConfigDict, seed: int) -> tuple[nn.Module, dict]:
    """The encoder a cache is written with and its parameters: ``encoder_config.weights``, or
    the init from ``seed`` when there are none (so a run can rebuild it to caption files)."""
    encoder = build_encoder(encoder_config, jnp.float32)

    def init():
        return encoder.init(jax.random.key(seed), example_input(encoder))["params"]

    # A weights file replaces every value, so only the shapes are needed; otherwise one
    # compiled init: run op by op, a convnet's init compiles hundreds of one-op programs, too
    # quick for the persistent cache to keep (~17 s for EfficientNet-Lite0 in each command).
    params = jax.eval_shape(init) if encoder_config.get("weights", "") else jax.jit(init)()
    return encoder, with_pretrained_encoder({"encoder": params}, encoder_config)["encoder"]


@functools.cache
def _jitted_apply(encoder) -> Callable:
    """One compiled forward pass per encoder (Flax modules hash by their settings), so caching
    several splits in one command compiles once."""
    return jax.jit(lambda params, images: encoder.apply({"params": params}, images))


def _encoded_examples(config, split: str, batch_size: int) -> Iterator[tuple[str, dict]]:
    """(key, example) of ``split`` in file order, ``image`` replaced by annotations."""
    encoder, params = frozen_encoder(config.model.encoder, config.seed)
    encode = _jitted_apply(encoder)
    source = build.open_builder(config.data.name, config.data.data_dir, config.data.builder_config)
    examples = build.read_split(source, split)
    examples = examples.map(lambda e: {**e, "image": resize_and_crop(e["image"], encoder.image_size)},
                            num_parallel_calls=tf.data.AUTOTUNE).prefetch(batch_size)
    index, pending = 0, []
    for example in [*examples.as_numpy_iterator(), None]:  # None: flush the last batch
        if example is not None:
            pending.append(example)
        if len(pending) < batch_size and (example is not None or not pending):
            continue
        # Padded to full batches: one compilation.
        images = np.zeros((batch_size, *pending[0]["image"].shape), np.uint8)
        images[:len(pending)] = [row["image"] for row in pending]
        annotations = np.asarray(encode(params, images)).astype(STORED_DTYPE)
        for row, annotation in zip(pending, annotations, strict=False):
            yield str(index), {**row, "image": annotation}
            index += 1
        pending = []


def write_cache(config: ml_collections.ConfigDict, split: str, out: str | Path,
                batch_size: int = 32, overwrite: bool = False) -> Path:
    """Compute ``config.model.encoder``'s annotations of ``split`` into ``out/<split>``."""
    out = Path(out)
    metadata = read_metadata(out) if (out / METADATA).is_file() else {
        "encoder": encoder_identity(config.model.encoder), "splits": {}}
    if metadata["encoder"] != encoder_identity(config.model.encoder):
        raise InvalidInput(f"{out} caches encoder {metadata['encoder']}; write this encoder's "
                         "features to another folder")
    if (out / split).exists():
        if not overwrite:
            raise OutputExists(f"{out / split} exists; pass --overwrite to recompute it")
        (out / split).rmtree()
    source = build.open_builder(config.data.name, config.data.data_dir, config.data.builder_config)
    encoder = build_encoder(config.model.encoder, jnp.float32)
    shape = jax.eval_shape(lambda: encoder.init_with_output(
        jax.random.key(0), example_input(encoder))[0]).shape[1:]
    features = {name: feature for name, feature in source.info.features.items() if name != "image"}
    features["image"] = tfds.features.Tensor(shape=shape, dtype=STORED_DTYPE)
    tfds.dataset_builders.store_as_tfds_dataset(
        name=DATASET_NAME, version="1.0.0", features=tfds.features.FeaturesDict(features),
        split_datasets={split: _encoded_examples(config, split, batch_size)},
        data_dir=out / split, description=f"{config.model.encoder.name} annotations of "
        f"{source.info.full_name} {split}", disable_shuffling=True)
    metadata["splits"][split] = {"shape": list(shape), "source": source.info.full_name}
    paths.write_atomic(out / METADATA, json.dumps(metadata, indent=2))
    return out / split
