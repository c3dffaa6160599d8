"""Greedy and beam search: exactness against brute force, greedy == beam 1, batching, sharding."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.shapes import get_config
from show_attend_tell.decoding import (
    END,
    START,
    _beam,
    decode_annotations,
    decode_images,
    length_penalty,
)
from show_attend_tell.models.captioner import Captioner, build_captioner
from show_attend_tell.parallel import batch_sharding

VOCAB = 6  # <pad> <start> <end> <unk> and two words: 3 emittable words plus <end>
WORDS = (3, 4, 5)
L, D = 4, 8
DECODE_FIELDS = ("tokens", "lengths", "scores", "alphas", "locations")


def tiny_model(attention="soft", vocab=VOCAB):
    config = get_config("smoke").model
    config.attention = attention
    return build_captioner(config, vocab)


def decoder_variables(model, seed, batch=4, vocab=VOCAB):
    """Decoder-only variables and annotations ``[B, L, D]`` of a random model."""
    rng = np.random.default_rng(seed)
    annotations = jnp.asarray(rng.normal(size=(batch, L, D)), jnp.float32)
    tokens = jnp.ones((batch, 2), jnp.int32)
    variables = model.init(jax.random.key(seed), annotations, tokens, method=Captioner.teacher_force)
    # Sharpen the output layer so that hypotheses are far from ties.
    params = jax.tree.map(lambda x: x, variables["params"])
    output = params["step_module"]["output"]
    output["kernel"] = output["kernel"] * 8.0
    output["bias"] = jnp.asarray(rng.normal(size=(vocab,)), jnp.float32)
    return {"params": params}, annotations


@functools.partial(jax.jit, static_argnums=0)
def _teacher_forced_log_probs(model, variables, annotations, inputs):
    logits = model.apply(variables, annotations, inputs, method=Captioner.teacher_force).steps.logits
    return jax.nn.log_softmax(logits, axis=-1)


def sequence_log_probs(model, variables, annotation, sequences, length):
    """Teacher-forced Σ log p of each sequence (words then <end>) for one image ``[L, D]``."""
    inputs = np.zeros((len(sequences), length), np.int32)
    for row, sequence in enumerate(sequences):
        inputs[row, : len(sequence)] = (START, *sequence[:-1])
    batch = jnp.broadcast_to(annotation, (len(sequences), *annotation.shape))
    log_probs = np.asarray(_teacher_forced_log_probs(model, variables, batch, jnp.asarray(inputs)))
    return np.array([
        sum(log_probs[row, t, token] for t, token in enumerate(sequence))
        for row, sequence in enumerate(sequences)
    ])


def all_captions(max_length):
    """Every caption beam search may return: finished ones of at most ``max_length`` tokens
    (<end> included), and unfinished ones cut at ``max_length`` words."""
    finished = [(*words, END) for n in range(max_length)
                for words in itertools.product(WORDS, repeat=n)]
    return finished + list(itertools.product(WORDS, repeat=max_length))


def assert_brute_force_best(model, variables, annotations, alpha, max_length=3):
    """Exhaustive beam search returns, per image, the caption with the best
    ``Σ log p / penalty(tokens)`` of all captions, finished or cut at ``max_length``."""
    # K ≥ the number of candidates at the last step makes beam search exhaustive.
    beam = len(WORDS) ** (max_length - 1) * (len(WORDS) + 1)
    result = decode_annotations(model, variables, annotations, beam_size=beam,
                                max_length=max_length, length_normalization=alpha)
    captions = all_captions(max_length)
    found_captions = []
    for image in range(annotations.shape[0]):
        log_probs = sequence_log_probs(model, variables, annotations[image], captions, max_length)
        ranked = log_probs / length_penalty(np.array([len(c) for c in captions]), alpha)
        best = captions[int(np.argmax(ranked))]
        length = int(result.lengths[image])
        found = tuple(int(x) for x in result.tokens[image, : length + 1])
        assert found == best, (image, found, best)
        assert np.all(np.asarray(result.tokens[image, length + 1:]) == 0)
        np.testing.assert_allclose(result.scores[image], log_probs[captions.index(best)],
                                   rtol=1e-5, atol=1e-5)
        found_captions.append(found)
    return found_captions


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_exhaustive_beam_finds_the_brute_force_best(seed, alpha):
    model = tiny_model()
    variables, annotations = decoder_variables(model, seed)
    assert_brute_force_best(model, variables, annotations, alpha)


@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_at_max_length_an_unfinished_caption_beats_a_worse_finished_one(alpha):
    """With <end> nearly impossible, every finished caption scores about -1e4: the best
    caption is one cut at max_length, though the (exhaustive) beam holds finished ones."""
    model = tiny_model()
    variables, annotations = decoder_variables(model, 8)
    output = variables["params"]["step_module"]["output"]
    output["bias"] = output["bias"].at[END].set(-1e4)
    found = assert_brute_force_best(model, variables, annotations, alpha)
    assert all(END not in caption and len(caption) == 3 for caption in found)


def test_beam_one_is_greedy_and_beam_scores_are_teacher_forced_scores():
    model = tiny_model()
    variables, annotations = decoder_variables(model, 3)
    greedy = decode_annotations(model, variables, annotations, beam_size=1, max_length=6)
    prepared = model.apply(variables, annotations, method=Captioner.prepare)
    beam_one = jax.jit(lambda v, c: _beam(model, v, c, 1, 6, 0.0, None))(variables, prepared)
    for name in ("tokens", "lengths", "locations"):
        np.testing.assert_array_equal(getattr(greedy, name), getattr(beam_one, name), name)
    np.testing.assert_allclose(greedy.scores, beam_one.scores, rtol=1e-6)
    np.testing.assert_allclose(greedy.alphas, beam_one.alphas, rtol=1e-6)

    beam = decode_annotations(model, variables, annotations, beam_size=3, max_length=6)
    for image in range(annotations.shape[0]):
        length = int(beam.lengths[image])
        caption = tuple(int(x) for x in beam.tokens[image, : length + 1])
        if END in caption:
            rescored = sequence_log_probs(model, variables, annotations[image], [caption], 6)
            np.testing.assert_allclose(beam.scores[image], rescored[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_batch_equals_one_image_at_a_time(beam_size):
    model = tiny_model()
    variables, annotations = decoder_variables(model, 4)
    batched = decode_annotations(model, variables, annotations, beam_size=beam_size, max_length=6,
                                 length_normalization=0.7)
    for image in range(4):
        single = decode_annotations(model, variables, annotations[image:image + 1],
                                    beam_size=beam_size, max_length=6, length_normalization=0.7)
        for name in DECODE_FIELDS:
            np.testing.assert_allclose(getattr(single, name)[0], getattr(batched, name)[image],
                                       rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_no_end_by_max_length_returns_the_best_unfinished_caption(beam_size):
    model = tiny_model()
    variables, annotations = decoder_variables(model, 5)
    # <end> becomes (practically) impossible, so no hypothesis ever finishes.
    variables["params"]["step_module"]["output"]["bias"] = (
        variables["params"]["step_module"]["output"]["bias"].at[END].set(-1e4))
    result = decode_annotations(model, variables, annotations, beam_size=beam_size, max_length=6)
    np.testing.assert_array_equal(result.lengths, 6)
    assert not np.any(np.asarray(result.tokens) == END)
    assert np.all(np.isin(np.asarray(result.tokens), WORDS))
    assert np.all(np.isfinite(np.asarray(result.scores)))


@pytest.mark.slow
def test_decode_images_shapes():
    model = tiny_model(vocab=11)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), np.uint8))
    variables = model.init(jax.random.key(0), images, jnp.ones((4, 2), jnp.int32))
    result = decode_images(model, variables, images, beam_size=3, max_length=6)
    assert result.tokens.shape == (4, 6) and result.tokens.dtype == jnp.int32
    assert result.lengths.shape == (4,) and result.lengths.dtype == jnp.int32
    assert result.scores.shape == (4,) and result.scores.dtype == jnp.float32
    assert result.alphas.shape == (4, 6, 64) and result.locations.shape == (4, 6)
    for row in range(4):
        # α of every word and of <end> is a distribution; nothing after <end>.
        steps = min(int(result.lengths[row]) + 1, 6)
        np.testing.assert_allclose(np.asarray(result.alphas[row, :steps]).sum(-1), 1.0, rtol=1e-5)
        assert not np.any(np.asarray(result.alphas[row, steps:]))
        assert not np.any(np.asarray(result.tokens[row, steps:]))


def test_sharded_batch_equals_local_batch(mesh):
    model = tiny_model()
    variables, annotations = decoder_variables(model, 6)
    local = decode_annotations(model, variables, annotations, beam_size=3, max_length=6)
    sharded = decode_annotations(model, variables, jax.device_put(annotations, batch_sharding(mesh)),
                                 beam_size=3, max_length=6)
    assert len(sharded.tokens.sharding.device_set) == 4
    for name in DECODE_FIELDS:
        np.testing.assert_allclose(getattr(sharded, name), getattr(local, name), rtol=1e-5,
                                   atol=1e-6, err_msg=name)


def test_hard_attention_sampling_is_keyed():
    model = tiny_model("hard")
    variables, annotations = decoder_variables(model, 7)
    kwargs = dict(beam_size=3, max_length=6, sample_key=jax.random.key(3))
    sampled = decode_annotations(model, variables, annotations, **kwargs)
    again = decode_annotations(model, variables, annotations, **kwargs)
    for name in DECODE_FIELDS:
        np.testing.assert_array_equal(getattr(sampled, name), getattr(again, name), err_msg=name)
    assert np.all((np.asarray(sampled.locations) >= 0) & (np.asarray(sampled.locations) < L))
    # The key is used: another key draws other locations (4 images x 6 steps from L = 4).
    other = decode_annotations(model, variables, annotations, **{**kwargs,
                                                               "sample_key": jax.random.key(4)})
    assert np.any(np.asarray(other.locations) != np.asarray(sampled.locations))
