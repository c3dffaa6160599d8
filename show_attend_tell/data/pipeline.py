"""tf.data input: length-bucketed training batches, padded eval batches.

Shape letters: B process-local batch, G global batch, H = W = ``image_size``, T = bucket + 2
caption tokens.

Training yields dicts of numpy ``image`` uint8 ``[B, H, W, 3]`` and ``tokens`` int32 ``[B, T]``
(``<start> w1..wn <end> <pad>..``), one (image, reference caption) pair per row; every caption
of every image is seen once per epoch (paper §4.3: batches of one caption length bucket).
With ``data.captions_per_image`` C > 1 (:class:`ImageGroupIterator`) a batch holds I = B / C
images ``[I, H, W, 3]`` and ``tokens`` ``[B, T]`` whose rows i·C .. i·C + C-1 are captions of
image i (groups: :mod:`show_attend_tell.data.caption_groups`), so the model encodes each image
once for its C captions.
An epoch's order is a pure function of (seed, epoch), so the stream position is just a step
count; restoring skips batches without running the model (images are decoded once each, before
their captions are paired with them and bucketed).

Training data order does not depend on the topology: every process reads the whole split and
forms the same global batches ``[G, ...]`` (a function of (seed, step) only), then keeps its
contiguous rows ``[i·G/P, (i+1)·G/P)``. A run resumed on another process count continues the
same stream; the price is that each process reads the whole split rather than 1/P of it, and
with one pair per row decodes it too (image groups keep images encoded until a process has
picked its rows, so it decodes only its own).
"""

import logging
import threading
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from show_attend_tell.data import build, feature_cache
from show_attend_tell.data.caption_groups import caption_groups, captions_per_image, image_rng
from show_attend_tell.data.images import resize_and_crop
from show_attend_tell.data.vocab import END, PAD, START, Vocabulary, tokenize
from show_attend_tell.errors import InvalidInput

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- datasets
def open_split(data: ml_collections.ConfigDict, split: str, process_index: int,
               process_count: int,
               builder: tfds.core.DatasetBuilder | None = None) -> tf.data.Dataset:
    """This process's disjoint shard of ``split`` in file order, images still encoded
    (``builder``: the one :func:`open_builder` returns, when the caller has it open already)."""
    builder = builder or open_builder(data, split)
    shard = tfds.split_for_jax_process(split, process_index=process_index,
                                       process_count=process_count)
    return build.read_split(builder, shard).map(build.dataset(data.name).to_example,
                                                num_parallel_calls=tf.data.AUTOTUNE)


def open_builder(data: ml_collections.ConfigDict, split: str) -> tfds.core.DatasetBuilder:
    """The built dataset, or with ``data.feature_cache`` the cached annotations of ``split``
    (same features and order, ``image`` holding float16 annotations ``[L, D]``)."""
    if feature_cache.enabled(data):
        return feature_cache.open_split_builder(data.feature_cache, split.partition("[")[0])
    return build.open_builder(data.name, data.data_dir, data.builder_config)


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if not 0 <= index < count:
        raise InvalidInput(f"process_index={index} outside 0..{count - 1}")
    return index, count


def read_images(dataset: tf.data.Dataset, data: ml_collections.ConfigDict,
                image_size: int) -> tf.data.Dataset:
    """Examples with ``image`` as the encoder's uint8 ``[S, S, 3]`` input
    (:func:`resize_and_crop`), in order; a feature cache's annotations pass through."""
    if feature_cache.enabled(data):
        return dataset
    return dataset.map(lambda example: {**example,
                                        "image": resize_and_crop(example["image"], image_size)},
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def caption_texts(data: ml_collections.ConfigDict, split: str, process_index: int = 0,
                  process_count: int = 1) -> Iterator[str]:
    """Every caption of a shard of ``split`` (the whole split by default: the vocabulary is
    global), read in large chunks because per-example iteration is 5x slower."""
    chunks = (open_split(data, split, process_index, process_count)
              .map(lambda example: example["captions"]).unbatch().batch(8192))
    for chunk in chunks.as_numpy_iterator():
        for caption in chunk:
            yield caption.decode("utf-8")


def build_vocabulary(config: ml_collections.ConfigDict) -> Vocabulary:
    """The vocabulary of ``config.data.train_split``'s captions."""
    data = config.data
    return Vocabulary.build(caption_texts(data, data.train_split), data.vocab_min_count,
                            data.vocab_max_size)


# ----------------------------------------------------------------------------- training
def bucket_widths(max_caption_length: int, boundaries) -> tuple[int, ...]:
    """Padded word lengths: the boundaries below ``max_caption_length``, then it."""
    return tuple(sorted({b for b in boundaries if 0 < b < max_caption_length}
                        | {max_caption_length}))


class CaptionEncoder:
    """Captions -> fixed-width ``<start> ids <end> <pad>..`` rows; counts truncated and empty
    captions (called from tf.data worker threads, hence the lock)."""

    def __init__(self, vocab: Vocabulary, max_length: int):
        self.vocab, self.max_length = vocab, max_length
        self.truncated = self.empty = 0
        self._lock = threading.Lock()

    def __call__(self, captions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tokens = np.full((len(captions), self.max_length + 2), PAD, np.int32)
        lengths = np.zeros(len(captions), np.int32)
        truncated = empty = 0
        for row, caption in enumerate(captions):
            words = tokenize(caption.decode("utf-8"))
            truncated += len(words) > self.max_length
            empty += not words
            ids = self.vocab.lookup(words[: self.max_length])
            tokens[row, : len(ids) + 2] = [START, *ids, END]
            lengths[row] = len(ids)
        with self._lock:
            self.truncated += truncated
            self.empty += empty
        return tokens, lengths


class EpochStream:
    """Endless process-local slices of global batches, with an exactly restorable position.

    A subclass gives ``_epoch(epoch, skip)`` (that epoch's global batches of ``batch_size``
    rows from batch ``skip`` on, in an order that is a pure function of (seed, epoch)),
    ``batches_per_epoch()`` and ``_empty_epoch()``; this process keeps its rows of each.
    ``get_state()`` is ``{"step": batches yielded, ...}``: the step alone fixes (epoch, batch in
    epoch) for any process count, so a state saved by process 0 restores every process of this
    or of another topology.
    """

    def __init__(self, data: ml_collections.ConfigDict, batch_size: int, image_size: int,
                 seed: int, process_index: int, process_count: int):
        if batch_size % process_count:
            raise InvalidInput(f"global batch_size={batch_size} must be a multiple of the number "
                             f"of processes ({process_count})")
        self.data, self.batch_size, self.image_size, self.seed = data, batch_size, image_size, seed
        self.process_index, self.process_count = process_index, process_count
        self.step = self.epoch = self.batch_in_epoch = 0
        self._batches: Iterator[dict] | None = None

    def _shard(self) -> tf.data.Dataset:
        """The whole split on every process (see the module doc)."""
        return open_split(self.data, self.data.train_split, 0, 1)

    def _epoch(self, epoch: int, skip: int) -> Iterator[dict]:
        raise NotImplementedError

    def batches_per_epoch(self) -> int:
        raise NotImplementedError

    def batches_in_epoch(self, epoch: int) -> int:
        """Batches of epoch ``epoch``: :meth:`batches_per_epoch` unless a subclass's count
        changes from epoch to epoch."""
        del epoch
        return self.batches_per_epoch()

    def _empty_epoch(self) -> InvalidInput:
        raise NotImplementedError

    def _end_of_epoch(self) -> None:
        """Called when an epoch's batches run out (``batch_in_epoch`` is still its count)."""

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._batches is None:
            self._batches = self._epoch(self.epoch, self.batch_in_epoch)
        batch = next(self._batches, None)
        if batch is None:
            self._end_of_epoch()
            if not self.batch_in_epoch:
                raise self._empty_epoch()
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self._batches = self._epoch(self.epoch, 0)
            batch = next(self._batches)
        self.step += 1
        self.batch_in_epoch += 1
        return self._finish(batch)

    def _finish(self, batch: dict) -> dict:
        """This process's rows of a global batch: block ``process_index`` of ``process_count``
        equal blocks of each entry (images and caption rows alike, so a process keeps whole
        image groups)."""
        if self.process_count == 1:
            return batch
        index, count = self.process_index, self.process_count
        return {name: value[index * (len(value) // count): (index + 1) * (len(value) // count)]
                for name, value in batch.items()}

    def get_state(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "seed": self.seed, "global_batch_size": self.batch_size,
                "process_count": self.process_count}

    def set_state(self, state: dict) -> None:
        """Continue after ``state["step"]`` batches of the run that saved ``state`` (on any
        number of processes)."""
        if state.get("seed", self.seed) != self.seed:
            raise InvalidInput(f"iterator state has seed {state['seed']}, this run {self.seed}")
        self.step = int(state["step"])
        # States saved before batches were global hold the process-local "batch_size"; those
        # of one process were global all the same.
        saved_size = state.get("global_batch_size",
                               state.get("batch_size") if state.get("process_count") == 1 else None)
        if saved_size is None:
            log.warning("iterator state from per-process data order (process_count=%s): "
                        "continuing the global order at step %d", state.get("process_count"),
                        self.step)
        if saved_size == self.batch_size:  # the saved position is ours: no counting pass
            self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
        else:
            self.epoch, self.batch_in_epoch = 0, self.step
            while self.batch_in_epoch >= (count := self.batches_in_epoch(self.epoch)):
                self.epoch, self.batch_in_epoch = self.epoch + 1, self.batch_in_epoch - count
        self._batches = None


class TrainIterator(EpochStream):
    """(image, caption) pair batches, bucketed by caption length (see the module doc)."""

    def __init__(self, data: ml_collections.ConfigDict, vocab: Vocabulary, batch_size: int,
                 image_size: int, seed: int, process_index: int, process_count: int):
        super().__init__(data, batch_size, image_size, seed, process_index, process_count)
        self.widths = bucket_widths(data.max_caption_length, data.bucket_boundaries)
        self.encoder = CaptionEncoder(vocab, data.max_caption_length)
        self._batches_per_epoch: int | None = None

    # Pairs and buckets --------------------------------------------------------------------
    def _pairs(self, example: dict) -> tf.data.Dataset:
        """One image's (encoded image, tokens ``[max_len + 2]``, length) per caption."""
        tokens, lengths = tf.numpy_function(self.encoder, [example["captions"]],
                                            (tf.int32, tf.int32), stateful=False)
        tokens.set_shape([None, self.data.max_caption_length + 2])
        lengths.set_shape([None])
        images = tf.repeat(example["image"][None], tf.shape(lengths)[0], axis=0)
        return tf.data.Dataset.from_tensor_slices({"image": images, "tokens": tokens,
                                                   "length": lengths})

    def _bucket(self, length: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(tf.cast(length > tf.constant(self.widths[:-1], tf.int32), tf.int64))

    def _epoch(self, epoch: int, skip: int) -> Iterator[dict]:
        """Epoch ``epoch``'s batches from batch ``skip`` on."""
        image_seed, pair_seed = np.random.SeedSequence((self.seed, epoch)).generate_state(2)
        images = self._shard().shuffle(self.data.shuffle_buffer, seed=int(image_seed),
                                       reshuffle_each_iteration=False)
        # Once per image, before its captions are paired with it: decoding per pair decoded
        # every image five times.
        pairs = (read_images(images, self.data, self.image_size).flat_map(self._pairs)
                 .filter(lambda pair: pair["length"] > 0)
                 # Spreads an image's captions over different batches; a few batches suffice.
                 .shuffle(8 * self.batch_size, seed=int(pair_seed), reshuffle_each_iteration=False))
        widths = tf.constant(self.widths, tf.int32) + 2

        def batch_bucket(key, window):
            batch = window.batch(self.batch_size, drop_remainder=True)
            return batch.map(lambda b: {"image": b["image"], "tokens": b["tokens"][:, :widths[key]]})

        batches = (pairs.group_by_window(lambda pair: self._bucket(pair["length"]), batch_bucket,
                                         window_size=self.batch_size)
                   .skip(skip).prefetch(2))
        return batches.as_numpy_iterator()

    def batches_per_epoch(self) -> int:
        """Σ over buckets of ⌊pairs / B⌋: the same every epoch, whatever the order."""
        if self._batches_per_epoch is None:
            counts = np.zeros(len(self.widths), np.int64)
            for caption in caption_texts(self.data, self.data.train_split):
                words = len(tokenize(caption))
                if words:  # the same filter and bucket rule as the tf.data stream
                    counts[np.searchsorted(self.widths, min(words, self.data.max_caption_length))] += 1
            self._batches_per_epoch = int((counts // self.batch_size).sum())
            if not self._batches_per_epoch:
                raise self._empty_epoch()
        return self._batches_per_epoch

    # Epoch ends and widths ----------------------------------------------------------------
    def _end_of_epoch(self) -> None:
        self._log_epoch()
        self._batches_per_epoch = self.batch_in_epoch

    def _empty_epoch(self) -> InvalidInput:
        return InvalidInput(f"{self.data.name} {self.data.train_split}: no length bucket holds "
                          f"batch_size={self.batch_size} captions")

    def _log_epoch(self) -> None:
        log.info("epoch %d done: %d batches; %d captions truncated to %d words, %d empty skipped",
                 self.epoch, self.batch_in_epoch, self.encoder.truncated,
                 self.data.max_caption_length, self.encoder.empty)


class ImageGroupIterator(TrainIterator):
    """Batches of I = B / C images, each with a group of C of its captions
    (:mod:`show_attend_tell.data.caption_groups`), bucketed by the group's longest caption;
    otherwise as :class:`TrainIterator` (order a pure function of (seed, epoch), global batches
    sliced per process, restorable position). A process keeps whole groups."""

    def __init__(self, data: ml_collections.ConfigDict, vocab: Vocabulary, batch_size: int,
                 image_size: int, seed: int, process_index: int, process_count: int,
                 per_image: int):
        super().__init__(data, vocab, batch_size, image_size, seed, process_index, process_count)
        self.per_image, self.images = per_image, batch_size // per_image
        if self.images % process_count:
            raise InvalidInput(f"config.train.batch_size={batch_size} holds {self.images} "
                               f"images of config.data.captions_per_image={per_image} captions, "
                               f"not a multiple of the number of processes ({process_count})")
        self._caption_lengths: list[np.ndarray] | None = None
        self._epoch_counts: dict[int, int] = {}

    def _group_seed(self, epoch: int) -> int:
        return int(np.random.SeedSequence((self.seed, epoch, 2)).generate_state(1)[0])

    def _image_groups(self, group_seed: int, index: np.ndarray, captions: np.ndarray):
        """One image's groups: tokens ``[G, C, max_len + 2]`` and each group's longest
        caption ``[G]`` (empty captions left out, as in pairs)."""
        tokens, lengths = self.encoder(captions)
        kept = lengths > 0
        rows = caption_groups(int(kept.sum()), self.per_image, image_rng(group_seed, index))
        tokens, lengths = tokens[kept][rows], lengths[kept][rows]
        return tokens, lengths.max(axis=1, initial=0).astype(np.int32)

    def _groups(self, example: dict, group_seed: int) -> tf.data.Dataset:
        tokens, lengths = tf.numpy_function(
            lambda index, captions: self._image_groups(group_seed, index, captions),
            [example["index"], example["captions"]], (tf.int32, tf.int32), stateful=False)
        tokens.set_shape([None, self.per_image, self.data.max_caption_length + 2])
        lengths.set_shape([None])
        images = tf.repeat(example["image"][None], tf.shape(lengths)[0], axis=0)
        return tf.data.Dataset.from_tensor_slices({"image": images, "tokens": tokens,
                                                   "length": lengths})

    def _epoch(self, epoch: int, skip: int) -> Iterator[dict]:
        """Epoch ``epoch``'s batches from batch ``skip`` on, already this process's rows: the
        images stay encoded through shuffling and batching, and each process decodes only its
        own I / P of each global batch."""
        image_seed, group_order_seed = np.random.SeedSequence((self.seed, epoch)).generate_state(2)
        group_seed = self._group_seed(epoch)
        images = (self._shard().enumerate().map(lambda index, example: {**example, "index": index})
                  .shuffle(self.data.shuffle_buffer, seed=int(image_seed),
                           reshuffle_each_iteration=False))
        groups = (images.flat_map(lambda example: self._groups(example, group_seed))
                  # Spreads the groups of an image with more than C captions over batches.
                  .shuffle(8 * self.images, seed=int(group_order_seed),
                           reshuffle_each_iteration=False))
        widths = tf.constant(self.widths, tf.int32) + 2

        def batch_bucket(key, window):
            return (window.batch(self.images, drop_remainder=True)
                    .map(lambda batch: {**batch, "width": widths[key]}))

        batches = (groups.group_by_window(lambda group: self._bucket(group["length"]),
                                          batch_bucket, window_size=self.images)
                   .skip(skip)
                   .map(self._local_rows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                   .prefetch(2))
        return batches.as_numpy_iterator()

    def _local_rows(self, batch: dict) -> dict:
        """A global batch of I groups -> this process's I / P images, decoded, and their caption
        rows ``[B / P, width]``."""
        local = self.images // self.process_count
        rows = slice(self.process_index * local, (self.process_index + 1) * local)
        tokens = batch["tokens"][rows, :, :batch["width"]]
        images = batch["image"][rows]
        if not feature_cache.enabled(self.data):
            size = self.image_size
            images = tf.map_fn(lambda encoded: resize_and_crop(encoded, size), images,
                               fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        return {"image": images, "tokens": tf.reshape(tokens, [-1, batch["width"]])}

    def _finish(self, batch: dict) -> dict:
        return batch  # the rows of this process already (:meth:`_local_rows`)

    def caption_lengths(self) -> list[np.ndarray]:
        """Per image of the split (file order) the word counts of its non-empty captions,
        truncated as training truncates them."""
        if self._caption_lengths is None:
            examples = open_split(self.data, self.data.train_split, 0, 1).map(
                lambda example: example["captions"])
            limit = self.data.max_caption_length
            self._caption_lengths = [
                np.array([n for n in (min(len(tokenize(c.decode("utf-8"))), limit)
                                      for c in captions) if n], np.int64)
                for captions in examples.as_numpy_iterator()]
        return self._caption_lengths

    def batches_in_epoch(self, epoch: int) -> int:
        """Σ over buckets of ⌊groups / I⌋; a group's bucket is that of its longest caption,
        which for an image with more than C captions depends on the epoch's draw."""
        if epoch not in self._epoch_counts:
            group_seed = self._group_seed(epoch)
            counts = np.zeros(len(self.widths), np.int64)
            for index, lengths in enumerate(self.caption_lengths()):
                rows = caption_groups(len(lengths), self.per_image, image_rng(group_seed, index))
                for longest in lengths[rows].max(axis=1, initial=0):
                    counts[np.searchsorted(self.widths, longest)] += 1
            self._epoch_counts[epoch] = int((counts // self.images).sum())
        return self._epoch_counts[epoch]

    def batches_per_epoch(self) -> int:
        """Batches of the current epoch (:meth:`batches_in_epoch`)."""
        count = self.batches_in_epoch(self.epoch)
        if not count:
            raise self._empty_epoch()
        return count

    def _end_of_epoch(self) -> None:
        self._log_epoch()

    def _empty_epoch(self) -> InvalidInput:
        return InvalidInput(f"{self.data.name} {self.data.train_split}: no length bucket holds "
                            f"{self.images} image groups (config.train.batch_size="
                            f"{self.batch_size} / config.data.captions_per_image={self.per_image})")


def train_iterator(config: ml_collections.ConfigDict, vocab: Vocabulary, batch_size: int,
                   image_size: int, *, process_index: int | None = None,
                   process_count: int | None = None) -> TrainIterator:
    """Endless training batches: this process's rows of global batches of ``batch_size``
    caption rows, in groups of ``config.data.captions_per_image`` per image when it is > 1."""
    index, count = _process(process_index, process_count)
    per_image = captions_per_image(config.data, batch_size)
    if per_image == 1:
        return TrainIterator(config.data, vocab, batch_size, image_size, config.seed, index,
                             count)
    return ImageGroupIterator(config.data, vocab, batch_size, image_size, config.seed, index,
                              count, per_image)


# ----------------------------------------------------------------------------- evaluation
def _objects(features, objects: dict) -> list[dict]:
    names = {key: features["objects"][key] for key in ("size", "colour", "shape")}
    return [
        {"bbox": tuple(float(v) for v in objects["bbox"][i]),
         **{key: names[key].int2str(int(objects[key][i])) for key in names}}
        for i in range(len(objects["bbox"]))
    ]


def eval_batches(config: ml_collections.ConfigDict, vocab: Vocabulary, split: str,
                 batch_size: int, image_size: int, *, num_images: int = 0,
                 process_index: int | None = None,
                 process_count: int | None = None) -> Iterator[dict]:
    """Every image of ``split`` (or its first ``num_images``) once, in file order, as
    process-local batches of exactly ``batch_size`` rows padded with ``example_mask`` False;
    all processes yield the same number of batches.

    Entries: ``image`` uint8 ``[B, H, W, 3]``, ``example_mask`` bool ``[B]``, ``image_id``
    int64 ``[B]``, ``references`` (list of raw caption lists; metrics tokenise them with
    ``data.vocab.tokenize``) and, for shapes, ``objects`` (per image a list of dicts: ``bbox``
    (ymin, xmin, ymax, xmax) in 0..1, ``size``, ``colour``, ``shape``). ``vocab`` is not
    needed (references stay text) and is taken for the same signature as training.
    """
    del vocab
    data = config.data
    index, count = _process(process_index, process_count)
    builder = open_builder(data, split)
    total = builder.info.splits[split].num_examples
    if num_images:
        total = min(total, num_images)
        split = f"{split}[:{total}]"
    per_process = -(-total // count)  # ceil: the largest shard sets the step count
    steps = -(-per_process // batch_size)
    shard = open_split(data, split, index, count, builder)
    image_shape = shard.element_spec["image"].shape  # annotations [L, D] in a feature cache
    shard = read_images(shard, data, image_size)
    if not feature_cache.enabled(data):
        image_shape = (image_size, image_size, 3)
    shard = shard.prefetch(batch_size)
    examples = shard.as_numpy_iterator()
    has_objects = "objects" in builder.info.features
    for _ in range(steps):
        rows = [example for _, example in zip(range(batch_size), examples, strict=False)]
        batch = {
            "image": np.zeros((batch_size, *image_shape), shard.element_spec["image"].dtype.as_numpy_dtype),
            "example_mask": np.zeros(batch_size, bool),
            "image_id": np.full(batch_size, -1, np.int64),
            "references": [[] for _ in range(batch_size)],
        }
        if has_objects:
            batch["objects"] = [[] for _ in range(batch_size)]
        for row, example in enumerate(rows):
            batch["image"][row] = example["image"]
            batch["example_mask"][row] = True
            batch["image_id"][row] = example["image_id"]
            batch["references"][row] = [c.decode("utf-8") for c in example["captions"]]
            if has_objects:
                batch["objects"][row] = _objects(builder.info.features, example["objects"])
        yield batch
