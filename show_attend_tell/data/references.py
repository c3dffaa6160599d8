"""Images with all their reference captions as word ids: the input of self-critical training.

Shape letters: B process-local batch of images (rows of a global batch), R references per
image (padded), W words.

Cross-entropy training reads (image, caption) pairs (``pipeline.TrainIterator``); a
sequence-level reward needs each image once with every reference. :class:`ImageBatches` yields
``image`` ``[B, H, W, 3]`` (or cached annotations), ``references`` int32 ``[B, R, W]`` (word
ids, no ``<start>``/``<end>``, 0-padded) and ``reference_lengths`` int32 ``[B, R]`` (0 marks a
padding row). References are tokenised and truncated exactly as training captions are; empty
ones are dropped, as cross-entropy training drops them. An epoch's order is a pure function of
(seed, epoch), so the position is a step count and a resumed run sees the same batches.
"""

from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from show_attend_tell.data import pipeline
from show_attend_tell.data.vocab import Vocabulary, tokenize
from show_attend_tell.errors import InvalidInput


def caption_ids(captions, vocab: Vocabulary, max_words: int) -> list[list[int]]:
    """Raw captions (bytes or str) -> their non-empty word-id lists, truncated to ``max_words``."""
    out = []
    for caption in captions:
        text = caption.decode("utf-8") if isinstance(caption, bytes) else caption
        ids = vocab.lookup(tokenize(text)[:max_words])
        if ids:
            out.append(ids)
    return out


def split_references(data: ml_collections.ConfigDict, split: str, vocab: Vocabulary) -> list:
    """Every image of ``split`` (all processes' shards, file order): its reference id lists."""
    examples = pipeline.open_split(data, split, 0, 1).map(lambda example: example["captions"])
    return [caption_ids(captions, vocab, data.max_caption_length)
            for captions in examples.as_numpy_iterator()]


def references_of(batch: dict) -> list[list[list[int]]]:
    """A batch's ``references``/``reference_lengths`` arrays -> per image its id lists."""
    return [[list(row[:n]) for row, n in zip(rows, lengths, strict=True) if n]
            for rows, lengths in zip(batch["references"], batch["reference_lengths"], strict=True)]


class ImageBatches(pipeline.EpochStream):
    """Endless batches of distinct images with their references: this process's rows of
    global batches (``pipeline.EpochStream``)."""

    def __init__(self, data: ml_collections.ConfigDict, vocab: Vocabulary, batch_size: int,
                 image_size: int, seed: int, process_index: int, process_count: int):
        super().__init__(data, batch_size, image_size, seed, process_index, process_count)
        self.vocab = vocab

    def batches_per_epoch(self) -> int:
        builder = pipeline.open_builder(self.data, self.data.train_split)
        count = builder.info.splits[self.data.train_split].num_examples // self.batch_size
        if not count:
            raise self._empty_epoch()
        return count

    def _encode(self, captions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = caption_ids(captions, self.vocab, self.data.max_caption_length)
        tokens = np.zeros((max(len(ids), 1), self.data.max_caption_length), np.int32)
        lengths = np.zeros(len(tokens), np.int32)
        for row, words in enumerate(ids):
            tokens[row, : len(words)] = words
            lengths[row] = len(words)
        return tokens, lengths

    def _epoch(self, epoch: int, skip: int) -> Iterator[dict]:
        (image_seed,) = np.random.SeedSequence((self.seed, epoch, 1)).generate_state(1)
        images = self._shard().shuffle(self.data.shuffle_buffer, seed=int(image_seed),
                                       reshuffle_each_iteration=False)

        def with_references(example):
            tokens, lengths = tf.numpy_function(self._encode, [example["captions"]],
                                                (tf.int32, tf.int32), stateful=False)
            tokens.set_shape([None, self.data.max_caption_length])
            lengths.set_shape([None])
            return {"image": example["image"], "references": tokens, "reference_lengths": lengths}

        examples = pipeline.read_images(images, self.data, self.image_size).map(
            with_references, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        batches = examples.padded_batch(self.batch_size, drop_remainder=True).skip(skip).prefetch(2)
        return batches.as_numpy_iterator()

    def _empty_epoch(self) -> InvalidInput:
        return InvalidInput(f"{self.data.name} {self.data.train_split}: fewer than "
                          f"batch_size={self.batch_size} images")


def image_batches(config: ml_collections.ConfigDict, vocab: Vocabulary, batch_size: int,
                  image_size: int) -> ImageBatches:
    """Endless training batches of images with references: this process's rows of global
    batches of ``batch_size``."""

    return ImageBatches(config.data, vocab, batch_size, image_size, config.seed,
                        jax.process_index(), jax.process_count())
