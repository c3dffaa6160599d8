"""Shapes builder: determinism (same seed -> same bytes) and the feature contract."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from show_attend_tell.data.shapes import Shapes, ShapesConfig, attributes
from show_attend_tell.data.shapes.captions import captions, relation
from show_attend_tell.data.shapes.scene import SceneObject
from show_attend_tell.data.vocab import tokenize

SIZES = {"train": 40, "validation": 8, "test": 8}


def tiny_config(seed=0):
    return ShapesConfig(name=f"tiny_seed{seed}", num_train=SIZES["train"],
                        num_validation=SIZES["validation"], num_test=SIZES["test"], seed=seed)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    builder = Shapes(config=tiny_config(), data_dir=tmp_path_factory.mktemp("tfds"))
    builder.download_and_prepare()
    return builder


def record_bytes(builder):
    files = sorted(p for p in builder.data_path.iterdir() if ".tfrecord" in p.name)
    assert files
    return [p.read_bytes() for p in files]


def test_same_seed_same_bytes_other_seed_differs(built, tmp_path):
    again = Shapes(config=tiny_config(), data_dir=tmp_path / "a")
    again.download_and_prepare()
    assert record_bytes(again) == record_bytes(built)
    other = Shapes(config=tiny_config(seed=1), data_dir=tmp_path / "b")
    other.download_and_prepare()
    assert record_bytes(other) != record_bytes(built)


def test_split_sizes_and_unique_ids(built):
    ids = []
    for split, count in SIZES.items():
        assert built.info.splits[split].num_examples == count
        ids += [int(ex["image_id"]) for ex in tfds.as_numpy(built.as_dataset(split=split))]
    assert len(set(ids)) == sum(SIZES.values())


def test_feature_contract(built):
    sizes = built.info.features["objects"]["size"]
    colours = built.info.features["objects"]["colour"]
    shapes = built.info.features["objects"]["shape"]
    assert tuple(colours.names) == attributes.COLOURS
    for example in tfds.as_numpy(built.as_dataset(split="train")):
        assert example["image"].shape == (64, 64, 3) and example["image"].dtype == np.uint8
        assert len(example["captions"]) == 5
        objects = example["objects"]
        count = len(objects["bbox"])
        assert 1 <= count <= 3
        boxes = objects["bbox"]
        assert ((boxes >= 0) & (boxes <= 1)).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        for i in range(count):
            for j in range(i + 1, count):  # boxes never overlap
                a, b = boxes[i], boxes[j]
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
        phrases = [f"{sizes.int2str(s)} {colours.int2str(c)} {shapes.int2str(h)}"
                   for s, c, h in zip(objects["size"], objects["colour"], objects["shape"],
                                      strict=True)]
        for caption in example["captions"]:
            text = " ".join(tokenize(caption.decode()))
            for phrase in phrases:  # every caption names every object exactly once
                assert text.count(phrase) == 1, (text, phrases)


def test_objects_are_visible_and_coloured(built):
    example = next(iter(tfds.as_numpy(built.as_dataset(split="test"))))
    image, box = example["image"].astype(int), example["objects"]["bbox"][0]
    top, left, bottom, right = (np.asarray(box) * 64).round().astype(int)
    centre = image[(top + bottom) // 2, (left + right) // 2]
    background = np.median(image.reshape(-1, 3), axis=0)
    # The object's centre pixel is saturated; the grey background is not.
    assert centre.max() - centre.min() > 80 > background.max() - background.min()


def test_relations():
    a = SceneObject("small", "red", "circle", (10, 0, 20, 10))
    b = SceneObject("large", "blue", "square", (10, 30, 40, 60))
    c = SceneObject("large", "blue", "circle", (40, 0, 60, 20))
    assert relation(a, b) == "to the left of" and relation(b, a) == "to the right of"
    assert relation(a, c) == "above" and relation(c, a) == "below"


def test_salience_order_names_large_then_left_to_right_in_every_caption():
    small_left = SceneObject("small", "red", "circle", (10, 0, 20, 10))
    large_right = SceneObject("large", "blue", "square", (10, 40, 34, 64))
    large_left = SceneObject("large", "green", "diamond", (40, 2, 62, 24))
    texts = captions(np.random.default_rng(0), [small_left, large_right, large_left], 64,
                     order="salience")
    for text in texts:
        starts = [text.index(o.phrase) for o in (large_left, large_right, small_left)]
        assert starts == sorted(starts), text
    shuffled = captions(np.random.default_rng(0), [small_left, large_right, large_left], 64)
    first_named = {min((t.index(o.phrase), o.phrase) for o in (small_left, large_right, large_left))[1]
                   for t in shuffled}
    assert len(first_named) > 1  # the default order varies between captions
    with pytest.raises(ValueError, match="caption order 'random'"):
        captions(np.random.default_rng(0), [small_left], 64, order="random")
