"""Training speed with a frozen pretrained encoder: encoding images every step vs reading the
feature cache. Prints one JSON line.

  .venv/bin/python bench/feature_cache.py [--encoder efficientnet_lite0] [--image_size 224]

The shapes config's decoder and batch (64) on a small shapes set (512 training images), the
encoder frozen; steps/s are the training loop's own (``train/steps_per_second``), averaged
over the log windows after the first (which holds compilation). Needs the ``convert`` extra
for EfficientNet-Lite0's ImageNet weights; ``--encoder vgg19`` uses random VGG-19 weights.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from configs import shapes  # noqa: E402
from show_attend_tell.data import feature_cache  # noqa: E402
from show_attend_tell.data.build import build_dataset  # noqa: E402
from show_attend_tell.train import train_and_evaluate  # noqa: E402
from show_attend_tell.weights.pretrained import encoder_param_shapes, import_weights  # noqa: E402
from show_attend_tell.weights.store import flatten, save_weights  # noqa: E402


def encoder_weights(encoder: str, folder: Path) -> Path:
    if encoder == "efficientnet_lite0":
        return import_weights(encoder, None, folder / "weights.npz")[0]
    rng = np.random.default_rng(0)
    return save_weights(folder / "weights.npz", encoder, {
        name: rng.normal(0, np.sqrt(2 / max(1, int(np.prod(s.shape[:-1])))), s.shape)
        for name, s in flatten(encoder_param_shapes(encoder)).items()})


def steps_per_second(workdir: Path) -> float:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    rates = [row["train/steps_per_second"] for row in rows if "train/steps_per_second" in row]
    return float(np.mean(rates[1:]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", default="efficientnet_lite0")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log_every", type=int, default=15)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sat_cache_bench_"))
    data_dir = folder / "tfds"
    build_dataset("shapes", data_dir, "bench", num_train=512, num_validation=8, num_test=8)

    config = shapes.get_config("soft")
    config.data.data_dir, config.data.builder_config = str(data_dir), "bench"
    config.data.feature_cache = ""
    config.model.encoder = ml_collections.ConfigDict({
        "name": args.encoder, "weights": str(encoder_weights(args.encoder, folder)),
        "kwargs": {"image_size": args.image_size, "trainable": False}})
    config.train.steps, config.train.log_every = args.steps, args.log_every
    config.train.eval_every, config.train.checkpoint_every = 0, args.steps

    train_and_evaluate(config, folder / "images")
    start = time.perf_counter()
    feature_cache.write_cache(config, "train", folder / "cache")
    cache_seconds = time.perf_counter() - start
    config.data.feature_cache = str(folder / "cache")
    train_and_evaluate(config, folder / "cached")

    images, cached = steps_per_second(folder / "images"), steps_per_second(folder / "cached")
    print(json.dumps({
        "encoder": args.encoder, "image_size": args.image_size, "batch": config.train.batch_size,
        "annotations": list(feature_cache.annotation_shape(folder / "cache")),
        "steps_per_second_images": round(images, 3), "steps_per_second_cached": round(cached, 3),
        "speedup": round(cached / images, 2), "cache_seconds_512_images": round(cache_seconds, 1),
        "load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
