"""Input pipeline on a tiny shapes dataset: shapes, bucketing, resume, process shards, eval."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from configs.shapes import get_config
from show_attend_tell.data import pipeline
from show_attend_tell.data.build import build_dataset
from show_attend_tell.data.images import resize_and_crop
from show_attend_tell.data.vocab import END, PAD, START
from show_attend_tell.parallel import global_batch

NUM_TRAIN, NUM_EVAL = 40, 10


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    build_dataset("shapes", data_dir, "tiny", num_train=NUM_TRAIN, num_validation=NUM_EVAL,
                  num_test=NUM_EVAL)
    config = get_config("smoke")
    config.data.data_dir = str(data_dir)
    config.data.builder_config = "tiny"
    config.data.shuffle_buffer = 16
    return config


@pytest.fixture(scope="module")
def vocab(config):
    return pipeline.build_vocabulary(config)


def lengths_of(tokens):
    return (tokens != PAD).sum(axis=1) - 2


def test_vocabulary_from_train_captions(vocab):
    assert {"small", "large", "red", "circle", "left"} <= set(vocab.words)


def test_pipelines_run_without_tf_data_autotuning(config):
    """Deleting an autotuned iterator waits for its optimisation thread (stalls of 20-80 s seen
    when garbage collection freed an unfinished one): splits open with autotuning off, and the
    pipelines built on them inherit it."""
    for split in ("train", "validation"):
        dataset = pipeline.open_split(config.data, split, 0, 1)
        assert dataset.options().autotune.enabled is False
        assert dataset.batch(2).prefetch(2).options().autotune.enabled is False


def test_train_batches_are_bucketed(config, vocab):
    batches = pipeline.train_iterator(config, vocab, 8, 32, process_index=0, process_count=1)
    widths = pipeline.bucket_widths(config.data.max_caption_length, config.data.bucket_boundaries)
    seen = set()
    for _ in range(12):
        batch = next(batches)
        assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.uint8
        assert batch["tokens"].dtype == np.int32
        width = batch["tokens"].shape[1] - 2
        assert width in widths
        seen.add(width)
        lengths = lengths_of(batch["tokens"])
        lower = max([w for w in widths if w < width], default=0)
        assert ((lengths > lower) & (lengths <= width)).all()  # one bucket per batch
        assert (batch["tokens"][:, 0] == START).all()
        assert (batch["tokens"][np.arange(8), lengths + 1] == END).all()
    assert len(seen) > 1


def test_epoch_sees_every_caption_once(config, vocab):
    batches = pipeline.train_iterator(config, vocab, 4, 64, process_index=0, process_count=1)
    per_epoch = batches.batches_per_epoch()
    tokens = [vocab.to_text(row) for _ in range(per_epoch) for row in next(batches)["tokens"]]
    assert batches.get_state()["epoch"] == 0
    captions = [" ".join(vocab.to_text(vocab.to_ids(c)).split())
                for c in pipeline.caption_texts(config.data, "train")]
    # Only bucket remainders (< 4 per bucket) are dropped; nothing is repeated.
    assert len(captions) - len(tokens) < 4 * len(config.data.bucket_boundaries)
    remaining = list(captions)
    for caption in tokens:
        remaining.remove(caption)
    next(batches)
    assert batches.get_state()["epoch"] == 1


def with_groups(config, per_image):
    """``config`` with ``data.captions_per_image`` set (a copy)."""
    config = config.copy_and_resolve_references()
    config.data.captions_per_image = per_image
    return config


@pytest.mark.parametrize("process_count,per_image", [(1, 1), (2, 1), (2, 2)])
def test_restored_iterator_yields_the_same_batches(config, vocab, process_count, per_image):
    config = with_groups(config, per_image)

    def make():
        return pipeline.train_iterator(config, vocab, 4, 64, process_index=0,
                                       process_count=process_count)

    original = make()
    # Past an epoch boundary, so the restore has to find the right epoch too.
    for _ in range(original.batches_per_epoch() + 2):
        next(original)
    state = original.get_state()
    restored = make()
    restored.set_state(state)
    for _ in range(3):
        a, b = next(original), next(restored)
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
        np.testing.assert_array_equal(a["image"], b["image"])
    assert restored.get_state()["step"] == original.get_state()["step"]


@pytest.mark.parametrize("per_image", [1, 2])
def test_global_batches_do_not_depend_on_the_process_count(config, vocab, per_image):
    """The batch at step s is a function of (seed, s): two processes' rows, concatenated in
    process order, are one process's batch; a 2-process position resumed on 1 process
    continues the 2-process stream bit for bit (past an epoch boundary). With image groups
    each process keeps whole groups: its images and their caption rows."""
    config = with_groups(config, per_image)

    def make(index, count):
        return pipeline.train_iterator(config, vocab, 8, 64, process_index=index,
                                       process_count=count)

    one, two = make(0, 1), [make(0, 2), make(1, 2)]

    def two_processes():
        parts = [next(process) for process in two]
        assert all(len(part["tokens"]) == 4 for part in parts)
        assert all(len(part["image"]) == 4 // per_image for part in parts)
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def assert_equal(a, b):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)

    for _ in range(one.batches_per_epoch() + 1):
        assert_equal(next(one), two_processes())
    resumed = make(0, 1)
    resumed.set_state(two[0].get_state())
    for _ in range(2):
        assert_equal(next(resumed), two_processes())
    assert resumed.get_state()["step"] == two[1].get_state()["step"]


def captions_by_image(config, vocab):
    """Image pixels (bytes) -> the sorted token rows of its captions, from the whole split."""
    encoder = pipeline.CaptionEncoder(vocab, config.data.max_caption_length)
    split = pipeline.read_images(pipeline.open_split(config.data, "train", 0, 1), config.data, 32)
    out = {}
    for example in split.as_numpy_iterator():
        tokens, _ = encoder(example["captions"])
        out[example["image"].tobytes()] = tokens
    return out


@pytest.mark.parametrize("per_image", [3, 5])
def test_image_groups_hold_captions_of_their_image_and_cover_the_epoch(config, vocab, per_image):
    """Shapes images have 5 captions: C = 5 takes them all once; C = 3 gives two groups per
    image, which together hold every caption (the filling rule is checked by hand in
    test_captions_per_image.py; captions of one scene can be equal texts). A batch is one length bucket (its
    groups' longest captions), the count of batches is the one the stream yields, and an epoch
    covers every image, apart from bucket remainders."""
    config = with_groups(config, per_image)
    images_per_batch = 2
    batches = pipeline.train_iterator(config, vocab, images_per_batch * per_image, 32,
                                      process_index=0, process_count=1)
    assert type(batches) is pipeline.ImageGroupIterator
    known = captions_by_image(config, vocab)
    widths = pipeline.bucket_widths(config.data.max_caption_length, config.data.bucket_boundaries)
    for epoch in range(2):
        count = batches.batches_in_epoch(epoch)
        groups_of = {}
        for _ in range(count):
            batch = next(batches)
            assert batch["image"].shape == (images_per_batch, 32, 32, 3)
            width = batch["tokens"].shape[1]
            assert batch["tokens"].shape == (images_per_batch * per_image, width)
            groups = batch["tokens"].reshape(images_per_batch, per_image, width)
            lower = max([w for w in widths if w + 2 < width], default=0)
            longest = lengths_of(batch["tokens"]).reshape(images_per_batch, per_image).max(1)
            assert ((longest > lower) & (longest + 2 <= width)).all()  # one bucket per batch
            for image, group in zip(batch["image"], groups, strict=True):
                own = [tuple(row[:width]) for row in known[image.tobytes()]]
                assert all(tuple(row) in own for row in group)  # captions of that image
                groups_of.setdefault(image.tobytes(), []).append(group)
        assert batches.get_state()["batch_in_epoch"] == count
        for image, groups in groups_of.items():
            own = {tuple(row[row != PAD]) for row in known[image]}
            rows = [tuple(row[row != PAD]) for group in groups for row in group]
            if len(groups) == -(-5 // per_image):  # all its groups seen: every caption
                assert set(rows) == own, (rows, own)
        # Only bucket remainders (< 2 groups per bucket) are left out.
        groups_seen = sum(len(groups) for groups in groups_of.values())
        assert NUM_TRAIN * -(-5 // per_image) - groups_seen < images_per_batch * len(widths)
    next(batches)
    assert batches.get_state()["epoch"] == 2


def test_truncation_and_empty_captions_are_counted(vocab):
    encoder = pipeline.CaptionEncoder(vocab, max_length=3)
    tokens, lengths = encoder(np.array([b"a small red circle", b"   ", "un café 🙂".encode()]))
    assert lengths.tolist() == [3, 0, 2]
    assert tokens[0].tolist() == [START, *vocab.to_ids("a small red"), END]
    assert (encoder.truncated, encoder.empty) == (1, 1)


def eval_ids(config, vocab, process_index, process_count, batch_size=4, num_images=0):
    batches = list(pipeline.eval_batches(config, vocab, "test", batch_size, 64,
                                         num_images=num_images, process_index=process_index,
                                         process_count=process_count))
    return batches, [i for b in batches for i in b["image_id"][b["example_mask"]]]


def test_eval_covers_every_image_once_with_padding(config, vocab):
    batches, ids = eval_ids(config, vocab, 0, 1)
    assert len(batches) == 3 and len(ids) == NUM_EVAL == len(set(ids))
    last = batches[-1]
    assert last["example_mask"].tolist() == [True, True, False, False]
    assert last["image"].shape == (4, 64, 64, 3) and last["image_id"].dtype == np.int64
    assert last["references"][2] == [] and len(last["references"][0]) == 5
    obj = last["objects"][0][0]
    assert set(obj) == {"bbox", "size", "colour", "shape"} and len(obj["bbox"]) == 4
    assert all(isinstance(r, str) for r in last["references"][0])


def test_processes_read_disjoint_shards(config, vocab):
    (first, ids0), (second, ids1) = eval_ids(config, vocab, 0, 2), eval_ids(config, vocab, 1, 2)
    assert len(first) == len(second)  # same number of steps on every process
    assert not set(ids0) & set(ids1) and len(ids0) + len(ids1) == NUM_EVAL
    train = [{int(e["image_id"]) for e in pipeline.open_split(config.data, "train", i, 2)
              .as_numpy_iterator()} for i in range(2)]
    assert not train[0] & train[1] and len(train[0] | train[1]) == NUM_TRAIN


def test_num_images_limit(config, vocab):
    batches, ids = eval_ids(config, vocab, 0, 1, batch_size=4, num_images=6)
    assert len(batches) == 2 and len(ids) == 6


def encoded(mode, fmt):
    buffer = io.BytesIO()
    Image.new(mode, (20, 10), color=(128,) * len(mode)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"),
                                      ("RGB", "JPEG")])
def test_any_image_mode_becomes_rgb(mode, fmt):
    image = resize_and_crop(tf.constant(encoded(mode, fmt)), 16)
    assert image.shape == (16, 16, 3) and image.dtype == tf.uint8


@pytest.mark.slow
def test_batch_feeds_the_mesh_and_model(config, vocab, mesh):
    import jax

    from show_attend_tell.models.captioner import build_captioner

    batch = next(pipeline.train_iterator(config, vocab, 8, 64, process_index=0, process_count=1))
    device_batch = global_batch(mesh, batch)
    assert device_batch["image"].shape == (8, 64, 64, 3)
    assert len(device_batch["tokens"].sharding.device_set) == 4
    model = build_captioner(config.model, len(vocab))
    variables = model.init(jax.random.key(0), device_batch["image"], device_batch["tokens"],
                           key=jax.random.key(1), train=True)
    # Every caption row is <start> words <end> <pad>..., and the model maps the sharded batch
    # to one distribution over the vocabulary per token.
    for row in batch["tokens"]:
        end = row.tolist().index(END)
        assert row[0] == START and START not in row[1:] and not row[end + 1:].any()
        assert row[1:end].min() > END
    out = jax.eval_shape(model.apply, variables, device_batch["image"], device_batch["tokens"])
    assert out.steps.logits.shape == (*batch["tokens"].shape, len(vocab))



def test_dataset_names_and_missing_dataset_errors(tmp_path):
    from show_attend_tell.data.build import open_builder, split_name

    assert split_name("karpathy/flickr8k", None) == ("karpathy", "flickr8k")
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("imagenet", tmp_path)
    with pytest.raises(ValueError, match="manual_dir"):
        build_dataset("karpathy/flickr8k", tmp_path)
    with pytest.raises(FileNotFoundError, match="sat data build shapes/64px"):
        open_builder("shapes", tmp_path)


def test_each_registered_dataset_reads_into_the_one_example_format():
    """The registry's to_example maps each dataset's own features to image, image_id and
    captions (+ objects where the dataset has them); an unknown name is one clear error."""
    from show_attend_tell.data.build import DATASETS, dataset

    image, image_id, captions = tf.constant(b"jpeg"), tf.constant(7, tf.int64), tf.constant(["a"])
    features = {
        "shapes": {"image": image, "image_id": image_id, "captions": captions,
                   "objects": {"shape": tf.constant([1])}},
        "karpathy": {"image": image, "image_id": image_id,
                     "captions": {"raw": captions, "tokens": tf.constant([["a"]])}},
        "coco_captions": {"image": image, "image/id": image_id, "image/filename": tf.constant("f"),
                          "captions": {"text": captions, "id": tf.constant([1])}},
    }
    assert set(DATASETS) == set(features)
    for name, raw in features.items():
        example = dataset(name).to_example(raw)
        expected = {"image", "image_id", "captions"} | ({"objects"} if name == "shapes" else set())
        assert set(example) == expected, name
        assert int(example["image_id"]) == 7 and example["captions"].numpy().tolist() == [b"a"]
    assert dataset("karpathy/coco") is DATASETS["karpathy"]
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; expected shapes"):
        dataset("imagenet")
