"""Image-grouped training (``data.captions_per_image`` C): the model encodes each image once for
its C caption rows, and that changes nothing but the cost: C = 1 is the per-pair step bit for
bit, a group's gradient is the mean of its single-caption gradients, hard attention samples per
row, groups stay whole on devices, and bad values are one line naming the key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.shapes import get_config
from show_attend_tell import parallel
from show_attend_tell.config_loading import config_differences, config_to_dict
from show_attend_tell.data.caption_groups import caption_groups, captions_per_image
from show_attend_tell.losses import caption_loss
from show_attend_tell.models.captioner import DecoderOutputs, build_captioner
from show_attend_tell.models.decoder_scan import scan_decoder
from show_attend_tell.models.encoders import annotations_have_gradients
from show_attend_tell.train import check_values, train_and_evaluate

VOCAB, LENGTH, IMAGES, PER_IMAGE = 12, 6, 2, 5


def group_batch(images=IMAGES, per_image=PER_IMAGE, seed=0):
    """uint8 images ``[I, 64, 64, 3]`` and caption rows ``[I·C, T + 1]`` (rows i·C .. i·C + C-1
    of image i), of different lengths and words."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (images, 64, 64, 3), dtype=np.uint8)
    tokens = np.zeros((images * per_image, LENGTH + 1), np.int32)
    for row in range(images * per_image):
        words = rng.integers(4, VOCAB, rng.integers(1, LENGTH))
        tokens[row, : len(words) + 2] = [1, *words, 2]
    return pixels, tokens


def model_and_params(attention="soft", **model_overrides):
    config = get_config("smoke_hard" if attention == "hard" else "smoke")
    config.model.dropout = 0.0
    for key, value in model_overrides.items():
        config.model[key] = value
    config.train.doubly_stochastic_weight = 1.0  # every per-row term of the loss counts
    model = build_captioner(config.model, VOCAB)
    images, tokens = group_batch()
    params = jax.jit(model.init)(jax.random.key(0), images, tokens[:, :-1])["params"]
    return config, model, params


def loss_and_grads(config, model):
    """A jitted ``(params, images [I, H, W, 3], tokens [B, T + 1], key) -> (loss, grads)``: one
    function for every call, so the ten single-caption calls compile once."""

    def objective(params, images, tokens, key):
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        mask = (targets != 0).astype(jnp.float32)
        outputs = model.apply({"params": params}, images, inputs, key=key, train=True)
        return caption_loss(outputs, targets, mask, 0.0, config.train).loss

    return jax.jit(jax.value_and_grad(objective))


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_group_gradient_is_the_mean_of_single_caption_gradients(attention):
    """Hard with p_expected = 1: every row takes the expected context (eq. 13), so the
    gradient is deterministic and comparable; per-row sampling is checked below."""
    config, model, params = model_and_params(attention, p_expected=1.0)
    images, tokens = group_batch()
    key = jax.random.key(3)
    value_and_grad = loss_and_grads(config, model)
    loss, grads = value_and_grad(params, images, tokens, key)
    singles = [value_and_grad(params, images[row // PER_IMAGE][None], tokens[row][None], key)
               for row in range(len(tokens))]
    np.testing.assert_allclose(loss, np.mean([single for single, _ in singles]), rtol=1e-5)
    mean = jax.tree.map(lambda *g: np.mean(g, axis=0), *[g for _, g in singles])
    assert float(jnp.abs(grads["encoder"]["Conv_0"]["kernel"]).max()) > 0
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(mean))
    jax.tree.map_with_path(
        lambda path, a, b: np.testing.assert_allclose(
            a, b, rtol=1e-4, atol=1e-5 * scale, err_msg=jax.tree_util.keystr(path)),
        grads, mean)


def per_pair_teacher_force(model, annotations, tokens, key, train):
    """``Captioner.teacher_force`` as it was with one row per image (before groups)."""
    cache = model.prepare(annotations)
    switch_key, scan_key = jax.random.split(key)
    use_expected = model.expected_mask(switch_key, tokens.shape[0])
    _, steps = scan_decoder(
        model.step_module, cache.carry, tokens, cache.annotations, cache.projected,
        use_expected, jax.random.split(scan_key, tokens.shape[1]), train,
        annotation_gradients=annotations_have_gradients(model.encoder),
        scan_impl=model.scan_impl)
    return DecoderOutputs(steps=steps, used_expected=use_expected)


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_one_caption_per_image_is_the_per_pair_step_bit_for_bit(attention):
    config, model, params = model_and_params(attention, dropout=0.3)
    images, tokens = group_batch(images=8, per_image=1)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    mask = (targets != 0).astype(jnp.float32)
    key = jax.random.key(7)

    def objective(params, forward):
        outputs = model.apply({"params": params}, images, inputs, key, True, method=forward)
        return caption_loss(outputs, targets, mask, 0.5, config.train).loss

    def grouped(module, images, inputs, key, train):
        return module(images, inputs, key=key, train=train)

    def per_pair(module, images, inputs, key, train):
        return per_pair_teacher_force(module, module.encode(images, train=train), inputs, key,
                                      train)

    now = jax.jit(jax.value_and_grad(lambda p: objective(p, grouped)))(params)
    before = jax.jit(jax.value_and_grad(lambda p: objective(p, per_pair)))(params)
    jax.tree.map(np.testing.assert_array_equal, now, before)


def test_rows_that_do_not_split_over_the_images_are_a_callers_bug():
    """Not a UserError: the CLI's one-line message is for bad input, and no config reaches
    this (the pipeline makes whole groups); a library caller gets an AssertionError."""
    _, model, params = model_and_params()
    images, tokens = group_batch(images=3, per_image=1)
    rows = np.concatenate([tokens, tokens[:1]])[:, :-1]  # 4 rows over 3 images
    with pytest.raises(AssertionError, match="4 caption rows do not split evenly over 3 images"):
        model.apply({"params": params}, images, rows, train=False)


def test_hard_attention_samples_and_switches_per_caption_row():
    _, model, params = model_and_params("hard", p_expected=0.5)
    images = group_batch(images=4, per_image=10)[0]
    # The same caption ten times per image: rows differ only by their own draws.
    tokens = np.tile(group_batch(images=1, per_image=1)[1][:, :-1], (40, 1))
    outputs = jax.jit(lambda p, k: model.apply({"params": p}, images, tokens, key=k,
                                               train=True))(params, jax.random.key(1))
    used = np.asarray(outputs.used_expected).reshape(4, 10)
    assert (used.any(axis=1) & ~used.all(axis=1)).any(), used  # mixed within an image
    sampled = np.asarray(outputs.steps.location)[~used.reshape(-1)]
    assert len({tuple(row) for row in sampled}) > 1  # each sampled row drew its own locations


def test_groups_stay_whole_on_each_device():
    mesh = parallel.make_mesh()
    images, tokens = group_batch(images=4, per_image=PER_IMAGE)
    batch = parallel.global_batch(mesh, {"image": images, "tokens": tokens})
    image_shards = {shard.device: shard.index[0] for shard in batch["image"].addressable_shards}
    for shard in batch["tokens"].addressable_shards:
        rows, images_there = shard.index[0], image_shards[shard.device]
        assert (rows.start, rows.stop) == (images_there.start * PER_IMAGE,
                                           images_there.stop * PER_IMAGE)


class Reversed:
    """A generator whose permutation is known: n-1, ..., 0."""

    def permutation(self, count):
        return np.arange(count)[::-1]


@pytest.mark.parametrize("count,expected", [
    (0, np.zeros((0, 5), int)),
    (1, [[0, 0, 0, 0, 0]]),
    (3, [[2, 1, 0, 2, 1]]),
    (5, [[4, 3, 2, 1, 0]]),
    (7, [[6, 5, 4, 3, 2], [1, 0, 6, 5, 4]]),  # the short group filled from the first one
])
def test_caption_groups_by_hand(count, expected):
    np.testing.assert_array_equal(caption_groups(count, 5, Reversed()), expected)


def test_caption_groups_visit_every_caption_and_fill_without_repeats():
    rng = np.random.default_rng(0)
    for count in range(1, 13):
        groups = caption_groups(count, 5, rng)
        assert groups.shape == (-(-count // 5), 5)
        assert set(groups.ravel()) == set(range(count))
        if count >= 5:
            assert all(len(set(group)) == 5 for group in groups)


@pytest.mark.parametrize("value,batch_size,message", [
    (0, 10, "config.data.captions_per_image=0: expected a positive whole number"),
    (-5, 10, "config.data.captions_per_image=-5: expected a positive whole number"),
    (2.5, 10, "config.data.captions_per_image=2.5: expected a positive whole number"),
    (True, 10, "config.data.captions_per_image=True: expected a positive whole number"),
    (5, 64, "config.train.batch_size=64 must be a multiple of config.data.captions_per_image=5"),
])
def test_bad_captions_per_image_is_one_line_naming_the_key(value, batch_size, message):
    config = get_config("smoke")
    del config.data["captions_per_image"]  # the field is typed: any value, as a saved JSON has
    config.data.captions_per_image = value
    config.train.batch_size = batch_size
    with pytest.raises(ValueError, match=message) as error:
        check_values(config)
    assert "\n" not in str(error.value)


def test_config_without_the_key_is_one_caption_per_image():
    """Runs saved before the key existed trained on pairs: they read as C = 1 and resume under
    a config with C = 1, not under one with C = 5."""
    config = get_config("smoke")
    del config.data["captions_per_image"]
    assert captions_per_image(config.data, 8) == 1
    saved, current = config_to_dict(config), config_to_dict(get_config("smoke"))
    assert current["data"]["captions_per_image"] == 1
    assert config_differences(saved, current, set()) == []
    current["data"]["captions_per_image"] = 5
    assert config_differences(saved, current, set()) == ["data.captions_per_image: 1 -> 5"]


def test_images_per_batch_must_divide_over_devices(tmp_path):
    """20 caption rows (a multiple of the 4 test devices) of 10 captions per image: 2 images
    cannot split over the devices; refused before any data is read, naming both keys."""
    config = get_config("smoke")
    config.data.captions_per_image, config.train.batch_size = 10, 20
    with pytest.raises(ValueError, match=r"images per batch \(config.train.batch_size / "
                       r"config.data.captions_per_image=10\)=2 must be a multiple of the number "
                       r"of devices \(4\)"):
        train_and_evaluate(config, tmp_path / "run")
