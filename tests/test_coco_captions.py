"""TFDS ``coco_captions`` -> the pipeline's example format, on ``tfds.testing.mock_data``.

The mock gives decoded images: with ``SkipDecoding`` TFDS's fake generator must encode its
random COCO boxes, which are invalid (min > max). The pipeline skips decoding; the mapping is
the same either way, and the tests encode the image themselves to go on through the pipeline.
"""

import functools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from show_attend_tell.data import build, pipeline
from show_attend_tell.data.images import resize_and_crop
from show_attend_tell.data.vocab import END, START, Vocabulary


@pytest.fixture
def coco_mock(monkeypatch):
    from tensorflow_datasets.testing.mocking import RandomFakeGenerator

    # The fake generator draws a different random length for each field of a Sequence({...})
    # (COCO's "objects"), which TFDS then rejects; constant lengths (10) keep them aligned.
    monkeypatch.setattr(RandomFakeGenerator, "__init__", functools.partialmethod(
        RandomFakeGenerator.__init__, constant_dynamic_shape=True))
    with tfds.testing.mock_data(num_examples=4):
        yield tfds.builder("coco_captions")


def mapped(builder, split):
    return builder.as_dataset(split=split).map(
        build.dataset("coco_captions").to_example)


def test_mapping_to_pipeline_examples(coco_mock):
    examples = mapped(coco_mock, "train")
    assert set(examples.element_spec) == {"image", "image_id", "captions"}
    assert examples.element_spec["image_id"].dtype == tf.int64
    assert examples.element_spec["captions"].dtype == tf.string
    assert examples.element_spec["captions"].shape.rank == 1
    assert len(list(examples.as_numpy_iterator())) == 4


@pytest.mark.parametrize("split", ["train", "val", "test", "restval"])
def test_mapped_examples_go_through_decoding_and_caption_encoding(coco_mock, split):
    example = next(iter(mapped(coco_mock, split)))
    image = resize_and_crop(tf.io.encode_jpeg(example["image"]), 32)
    assert image.shape == (32, 32, 3) and image.dtype == tf.uint8
    captions = example["captions"].numpy()
    vocab = Vocabulary.build(c.decode() for c in captions)
    tokens, lengths = pipeline.CaptionEncoder(vocab, 24)(captions)
    assert (tokens[:, 0] == START).all() and (lengths > 0).all()
    assert (tokens[np.arange(len(tokens)), lengths + 1] == END).all()
