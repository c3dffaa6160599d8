"""Karpathy builder on a generated dummy folder (tiny JPEGs + JSON), and its error messages."""

import io
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from show_attend_tell.data import pipeline
from show_attend_tell.data.karpathy import Karpathy
from show_attend_tell.data.karpathy.annotations import read_annotations

FLICKR_SPLITS = ("train", "train", "train", "val", "test")
COCO_SPLITS = ("train", "train", "val", "test", "restval", "restval")


def jpeg(mode="RGB", size=(12, 10)) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], len(mode)), np.uint8)
    Image.fromarray(pixels.squeeze(), mode).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_dummy(root, dataset="flickr8k") -> Path:
    """``root`` laid out like the real download: JSON + image folders."""
    root = Path(root)
    coco = dataset == "coco"
    splits = COCO_SPLITS if coco else FLICKR_SPLITS
    images = []
    for i, split in enumerate(splits):
        folder = ("train2014" if split == "train" else "val2014") if coco else "Flicker8k_Dataset"
        filename = f"img_{i}.jpg"
        (root / folder).mkdir(parents=True, exist_ok=True)
        # One grayscale image: the builder must store it as RGB.
        (root / folder / filename).write_bytes(jpeg("L" if i == 1 else "RGB"))
        entry = {
            "filename": filename, "imgid": i, "split": split,
            "sentences": [{"raw": f"A dog number {i}, running {j}.", "imgid": i,
                           "sentid": 5 * i + j,
                           "tokens": ["a", "dog", "number", str(i), "running", str(j)]}
                          for j in range(5)],
        }
        if coco:
            entry.update(filepath=folder, cocoid=1000 + i)
        images.append(entry)
    (root / f"dataset_{dataset}.json").write_text(json.dumps({"images": images,
                                                              "dataset": dataset}))
    return root


class KarpathyFlickrTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = Karpathy
    BUILDER_CONFIG_NAMES_TO_TEST = ["flickr8k"]
    SPLITS = {"train": 3, "val": 1, "test": 1}

    @classmethod
    def setUpClass(cls):
        cls.EXAMPLE_DIR = str(make_dummy(tempfile.mkdtemp(), "flickr8k"))
        super().setUpClass()


class KarpathyCocoTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = Karpathy
    BUILDER_CONFIG_NAMES_TO_TEST = ["coco"]
    SPLITS = {"train": 2, "val": 1, "test": 1, "restval": 2}

    @classmethod
    def setUpClass(cls):
        cls.EXAMPLE_DIR = str(make_dummy(tempfile.mkdtemp(), "coco"))
        super().setUpClass()


def build(manual_dir, tmp_path, config="flickr8k", **kwargs):
    builder = Karpathy(config=config, data_dir=tmp_path / "tfds", **kwargs)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def test_merged_restval_and_features(tmp_path):
    builder = build(make_dummy(tmp_path / "coco", "coco"), tmp_path, "coco_trainrestval")
    assert set(builder.info.splits) == {"train", "val", "test"}
    assert builder.info.splits["train"].num_examples == 4
    example = next(iter(tfds.as_numpy(builder.as_dataset(split="val"))))
    assert example["image"].shape == (10, 12, 3)
    assert example["image_id"] == 1002
    assert example["captions"]["raw"][0] == b"A dog number 2, running 0."
    # Token lists are ragged: TFDS hands them back as a tf.RaggedTensor.
    assert list(np.asarray(example["captions"]["tokens"][0]))[:2] == [b"a", b"dog"]


def test_pipeline_reads_karpathy(tmp_path):
    from configs.flickr8k import get_config

    build(make_dummy(tmp_path / "flickr", "flickr8k"), tmp_path)
    config = get_config()
    config.data.data_dir = str(tmp_path / "tfds")
    vocab = pipeline.build_vocabulary(config)
    assert {"dog", "number", "running"} <= set(vocab.words)
    batch = next(pipeline.eval_batches(config, vocab, "val", 2, 16, process_index=0,
                                       process_count=1))
    assert batch["image"].shape == (2, 16, 16, 3) and batch["example_mask"].tolist() == [True, False]
    assert batch["references"][0][0] == "A dog number 3, running 0."
    assert "objects" not in batch


def test_missing_image_names_the_file_or_is_skipped(tmp_path, caplog):
    root = make_dummy(tmp_path / "flickr", "flickr8k")
    (root / "Flicker8k_Dataset" / "img_0.jpg").unlink()
    (root / "Flicker8k_Dataset" / "img_2.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="img_0.jpg"):
        build(root, tmp_path / "a")
    with caplog.at_level(logging.WARNING):
        builder = build(root, tmp_path / "b", skip_bad_images=True)
    assert builder.info.splits["train"].num_examples == 1
    assert "skipped 2" in caplog.text


def test_corrupt_image_names_the_file(tmp_path):
    root = make_dummy(tmp_path / "flickr", "flickr8k")
    (root / "Flicker8k_Dataset" / "img_4.jpg").write_bytes(jpeg()[:40])
    with pytest.raises(ValueError, match="img_4.jpg"):
        build(root, tmp_path)


def write_json(tmp_path, data) -> Path:
    path = tmp_path / "dataset_flickr8k.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


GOOD = {"filename": "a.jpg", "imgid": 0, "split": "train",
        "sentences": [{"raw": "a dog", "tokens": ["a", "dog"], "sentid": 0}]}


@pytest.mark.parametrize("data,message", [
    ("{oops", "not readable JSON"),
    ({"data": []}, "missing key 'images'"),
    ({"images": [{k: v for k, v in GOOD.items() if k != "sentences"}]},
     r"images\[0\]: missing key 'sentences'"),
    ({"images": [{**GOOD, "imgid": "7"}]}, r"images\[0\]: key 'imgid' should be int, got str"),
    ({"images": [{**GOOD, "split": "dev"}]}, r"key 'split' is 'dev'"),
    ({"images": [{**GOOD, "sentences": [{"raw": 3, "tokens": [], "sentid": 0}]}]},
     r"images\[0\].sentences\[0\]: key 'raw' should be str"),
    ({"images": [GOOD, {**GOOD, "filename": "b.jpg"}]},
     r"images\[1\]: duplicate image id 0 \(also images\[0\]\)"),
])
def test_bad_json_gives_one_line_error(tmp_path, data, message):
    path = write_json(tmp_path, data)
    with pytest.raises(ValueError, match=message) as error:
        read_annotations(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
