"""The captioner's equations: shapes, attention normalisation, hard sampling, scan == loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from configs.shapes import get_config
from show_attend_tell.models.captioner import Captioner, build_captioner, step_keys_for
from show_attend_tell.models.decoder import DecoderStep
from show_attend_tell.models.encoders import (
    PrecomputedAnnotations,
    build_encoder,
    get_encoder_class,
)
from show_attend_tell.parallel import batch_sharding, make_mesh


def tiny_model(vocab=11, attention="soft", p_expected=0.5, gate="scalar", **overrides):
    config = get_config("smoke").model
    config.attention = attention
    config.p_expected = p_expected
    config.gate = gate
    for key, value in overrides.items():
        config[key] = value
    return build_captioner(config, vocab)


def random_batch(batch=4, length=6, vocab=11, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)
    tokens = rng.integers(1, vocab, (batch, length)).astype(np.int32)
    return jnp.asarray(images), jnp.asarray(tokens)


def init(model, images, tokens):
    return model.init(jax.random.key(0), images, tokens, key=jax.random.key(1), train=True)


def looped_steps(model, variables, images, tokens, key):
    """The training forward pass as a Python loop over :meth:`Captioner.step` (the reference
    for the scanned decoder), outputs stacked as ``[B, T, ...]``."""
    annotations = model.apply(variables, images, train=True, method=Captioner.encode)
    cache = model.apply(variables, annotations, method=Captioner.prepare)
    switch_key, keys = step_keys_for(key, tokens.shape[1])
    use_expected = model.apply(
        variables, switch_key, tokens.shape[0], method=Captioner.expected_mask
    )
    carry, steps = cache.carry, []
    for t in range(tokens.shape[1]):
        carry, out = model.apply(
            variables, cache, carry, tokens[:, t], use_expected, keys[t], True,
            method=Captioner.step,
        )
        steps.append(out)
    return jax.tree.map(lambda *xs: jnp.stack(xs, axis=1), *steps)


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_scanned_decoder_equals_python_loop_over_step(attention):
    model = tiny_model(attention=attention, dropout=0.3)
    images, tokens = random_batch()
    variables = init(model, images, tokens)
    key = jax.random.key(7)
    scanned = model.apply(variables, images, tokens, key=key, train=True)
    looped = looped_steps(model, variables, images, tokens, key)
    for name in looped._fields:
        np.testing.assert_allclose(
            getattr(scanned.steps, name), getattr(looped, name), atol=1e-5, err_msg=name
        )


@pytest.mark.parametrize("attention,encoder", [
    ("soft", "small_convnet"), ("hard", "small_convnet"), ("soft", "precomputed"),
])
def test_scanned_decoder_gradients_equal_python_loop_over_step(attention, encoder):
    """The scanned decoder (default ``model.scan_impl``) gives autodiff's gradients of the
    step-by-step loop, for every parameter and the encoder; tests/test_decoder_scan.py holds
    the other ``scan_impl`` to the same gradients."""
    model = tiny_model(attention=attention, dropout=0.3)
    images, tokens = random_batch()
    if encoder == "precomputed":
        model = model.clone(encoder=PrecomputedAnnotations(num_annotations=9, annotation_dim=8))
        images = jax.random.normal(jax.random.key(2), (tokens.shape[0], 9, 8))
    variables = init(model, images, tokens)
    key = jax.random.key(7)
    weights = jax.random.normal(jax.random.key(3), (*tokens.shape, 11))

    def loss(steps):
        return jnp.sum(steps.logits * weights) + jnp.sum(steps.alpha**2) + jnp.sum(steps.beta)

    scanned = jax.grad(
        lambda v: loss(model.apply(v, images, tokens, key=key, train=True).steps)
    )(variables)
    looped = jax.grad(lambda v: loss(looped_steps(model, v, images, tokens, key)))(variables)
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(looped))
    assert float(jnp.abs(scanned["params"]["step_module"]["lstm_context"]["kernel"]).max()) > 0
    jax.tree.map_with_path(
        lambda path, a, b: np.testing.assert_allclose(
            a, b, rtol=1e-4, atol=1e-5 * scale, err_msg=jax.tree_util.keystr(path)
        ),
        scanned, looped,
    )


@pytest.mark.parametrize(
    "batch,length,vocab,features", [(1, 1, 5, 16), (3, 4, 17, 8), (8, 9, 30, 24)]
)
def test_output_shapes(batch, length, vocab, features):
    config = get_config("smoke").model
    config.encoder.kwargs.features = features
    model = build_captioner(config, vocab)
    images, tokens = random_batch(batch, length, vocab)
    out = model.apply(init(model, images, tokens), images, tokens)
    grid = 64  # 64×64 image, three stride-2 stages -> 8×8
    assert out.steps.logits.shape == (batch, length, vocab)
    assert out.steps.alpha.shape == (batch, length, grid)
    assert out.steps.context.shape == (batch, length, features)
    for name in ("beta", "location", "location_log_prob", "entropy"):
        assert getattr(out.steps, name).shape == (batch, length)
    assert out.used_expected.shape == (batch,)
    assert out.steps.logits.dtype == jnp.float32


def test_alphas_sum_to_one_and_padding_can_be_masked():
    model = tiny_model()
    images, tokens = random_batch(length=7)
    variables = init(model, images, tokens)
    out = model.apply(variables, images, tokens)
    np.testing.assert_allclose(out.steps.alpha.sum(-1), 1.0, atol=1e-5)
    # Logits at step t read only y_0..y_t, so whatever fills the padding after a caption
    # leaves the real steps unchanged and a mask on the loss is enough.
    padded = tokens.at[:, 4:].set(0)
    other = model.apply(variables, images, padded)
    np.testing.assert_allclose(out.steps.logits[:, :4], other.steps.logits[:, :4], atol=1e-6)


def test_hard_sampling_picks_one_annotation_with_alpha_frequencies():
    model = tiny_model(attention="hard", p_expected=0.0)
    images, tokens = random_batch(batch=2, length=1)
    variables = init(model, images, tokens)
    annotations = model.apply(variables, images, method=Captioner.encode)

    def sample(key):
        return model.apply(variables, annotations, tokens, key=key, train=False,
                           method=Captioner.teacher_force)

    outs = jax.vmap(sample)(jax.random.split(jax.random.key(3), 4000))
    assert not bool(outs.used_expected.any())
    locations = outs.steps.location[:, :, 0]  # [N, B]
    chosen = jnp.take_along_axis(annotations[None], locations[..., None, None], axis=2)[..., 0, :]
    np.testing.assert_array_equal(outs.steps.context[:, :, 0], chosen)
    alpha = outs.steps.alpha[0, :, 0]  # α does not depend on the sample at t = 1
    for b in range(2):
        freq = np.bincount(np.asarray(locations[:, b]), minlength=alpha.shape[-1]) / 4000
        # 4000 draws: a 4-sigma band on each cell's frequency.
        sigma = np.sqrt(alpha[b] * (1 - alpha[b]) / 4000)
        assert np.all(np.abs(freq - alpha[b]) <= 4 * sigma + 1e-3)


def test_hard_expected_context_with_p_expected_one():
    model = tiny_model(attention="hard", p_expected=1.0)
    images, tokens = random_batch(length=3)
    variables = init(model, images, tokens)
    out = model.apply(variables, images, tokens, key=jax.random.key(5))
    annotations = model.apply(variables, images, method=Captioner.encode)
    expected = jnp.einsum("btl,bld->btd", out.steps.alpha, annotations)
    assert bool(out.used_expected.all())
    np.testing.assert_allclose(out.steps.context, expected, atol=1e-5)


@pytest.mark.parametrize("switch,expect_mixed", [("image", True), ("batch", False)])
def test_expected_switch_per_image_or_per_batch(switch, expect_mixed):
    model = tiny_model(attention="hard", p_expected=0.5, expected_switch=switch)
    masks = jax.vmap(lambda k: model.apply({}, k, 1000, method=Captioner.expected_mask))(
        jax.random.split(jax.random.key(0), 16)
    )
    if expect_mixed:
        assert 0.45 < float(masks.mean()) < 0.55
    else:  # one draw per batch: each batch all expected or all sampled, and both occur
        assert bool(jnp.all(masks.all(axis=1) | ~masks.any(axis=1)))
        assert 0 < int(masks.all(axis=1).sum()) < len(masks)


def test_soft_context_is_gated_expectation():
    model = tiny_model(gate="scalar")
    images, tokens = random_batch()
    variables = init(model, images, tokens)
    out = model.apply(variables, images, tokens)
    assert bool(jnp.all((out.steps.beta > 0) & (out.steps.beta < 1)))
    none = tiny_model(gate="none")
    assert bool(jnp.all(none.apply(init(none, images, tokens), images, tokens).steps.beta == 1))


@pytest.mark.parametrize(
    "overrides",
    [{"gate": "vector"}, {"attention_activation": "relu"}, {"deep_output": False},
     {"deep_output_tanh": True}, {"dtype": "bfloat16"}],
)
def test_deviation_switches_run(overrides):
    model = tiny_model(**overrides)
    images, tokens = random_batch()
    out = model.apply(init(model, images, tokens), images, tokens)
    assert bool(jnp.isfinite(out.steps.logits).all())


def test_unknown_encoder_lists_known_names():
    with pytest.raises(ValueError, match=r"not a known encoder.*small_convnet"):
        get_encoder_class("vgg_42")
    config = get_config("smoke").model.encoder
    config.name = "nope"
    with pytest.raises(ValueError, match="config.model.encoder.name='nope'"):
        build_encoder(config, jnp.float32)


def test_unknown_attention_mode_is_an_error():
    step = DecoderStep(vocab_size=5, attention_mode="sparse")
    with pytest.raises(ValueError, match="config.model.attention='sparse'"):
        step.init(jax.random.key(0), method=DecoderStep.initial_carry,
                  annotations=jnp.zeros((1, 4, 3)))


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_forward_is_jitted_over_four_devices_with_sharded_batch(attention):
    mesh = make_mesh()
    assert mesh.devices.size == 4
    model = tiny_model(attention=attention)
    images, tokens = random_batch(batch=8)
    variables = init(model, images, tokens)
    images = jax.device_put(images, batch_sharding(mesh))
    tokens = jax.device_put(tokens, batch_sharding(mesh))
    variables = jax.device_put(variables, NamedSharding(mesh, PartitionSpec()))
    forward = jax.jit(lambda v, i, t, k: model.apply(v, i, t, key=k, train=True))
    out = forward(variables, images, tokens, jax.random.key(0))
    assert out.steps.logits.sharding.spec[0] == "data"
    assert len(out.steps.logits.sharding.device_set) == 4
    reference = model.apply(variables, np.asarray(images), np.asarray(tokens),
                            key=jax.random.key(0), train=True)
    np.testing.assert_allclose(out.steps.logits, reference.steps.logits, atol=1e-4)


def numpy_first_step(params, annotations, prev_tokens, init_tanh):
    """One decoder step of the "sgrvinod" variant in float64 NumPy, from the equations:
    h_0, c_0 = f_init(ā) (tanh'ed if ``init_tanh``); e_i = v·relu(W_a a_i + b_a + W_h h_0);
    α = softmax(e); β = σ(W_β h_0 + b_β) ∈ R^D; ẑ = β ⊙ Σ α_i a_i; LSTM gates (i, f, g, o)
    = E y W_e + h_0 W_h + b_h + ẑ W_z; logits = h_1 W_o + b_o (no deep output)."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params["step_module"])
    a = np.asarray(annotations, np.float64)
    mean = a.mean(axis=1)
    h0 = mean @ p["init_hidden"]["kernel"] + p["init_hidden"]["bias"]
    c0 = mean @ p["init_cell"]["kernel"] + p["init_cell"]["bias"]
    if init_tanh:
        h0, c0 = np.tanh(h0), np.tanh(c0)
    att = p["attention"]
    pre = (a @ att["annotation_projection"]["kernel"] + att["annotation_projection"]["bias"]
           + (h0 @ att["hidden_projection"]["kernel"])[:, None])
    e = (np.maximum(pre, 0.0) @ att["score"]["kernel"])[..., 0]
    alpha = np.exp(e - e.max(-1, keepdims=True))
    alpha /= alpha.sum(-1, keepdims=True)
    gate = p["context_gate"]["Dense_0"]
    beta = 1.0 / (1.0 + np.exp(-(h0 @ gate["kernel"] + gate["bias"])))
    gated = beta * np.einsum("bl,bld->bd", alpha, a)
    embedded = p["embed"]["embedding"][prev_tokens]
    gates = (embedded @ p["lstm_embedded"]["kernel"] + h0 @ p["lstm_hidden"]["kernel"]
             + p["lstm_hidden"]["bias"] + gated @ p["lstm_context"]["kernel"])
    i, f, g, o = np.split(gates, 4, axis=-1)

    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    c1 = sigmoid(f) * c0 + sigmoid(i) * np.tanh(g)
    h1 = sigmoid(o) * np.tanh(c1)
    return h1 @ p["output"]["kernel"] + p["output"]["bias"]


@pytest.mark.parametrize("init_activation", ["none", "tanh"])
def test_sgrvinod_mode_equals_a_numpy_forward_pass(init_activation):
    """Vector gate, ReLU attention, no deep output and (``none``) no tanh on the initial
    state: sgrvinod's DecoderWithAttention. Its first step's logits, from the scanned
    teacher-forced pass and from the search step, equal the NumPy equations."""
    model = tiny_model(gate="vector", attention_activation="relu", deep_output=False,
                       init_activation=init_activation)
    images, tokens = random_batch(batch=3, length=2)
    variables = init(model, images, tokens)
    annotations = model.apply(variables, images, method=Captioner.encode)
    scanned = model.apply(variables, annotations, tokens, method=Captioner.teacher_force).steps.logits
    cache = model.apply(variables, annotations, method=Captioner.prepare)
    _, step = model.apply(variables, cache, cache.carry, tokens[:, 0], method=Captioner.step)
    expected = numpy_first_step(variables["params"], annotations, np.asarray(tokens[:, 0]),
                                init_tanh=init_activation == "tanh")
    np.testing.assert_allclose(scanned[:, 0], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(step.logits, expected, rtol=1e-5, atol=1e-5)
    other = numpy_first_step(variables["params"], annotations, np.asarray(tokens[:, 0]),
                             init_tanh=init_activation != "tanh")
    assert np.abs(other - expected).max() > 1e-3  # the switch changes the logits


def test_unknown_init_activation_is_a_clear_error():
    model = tiny_model(init_activation="relu")
    images, tokens = random_batch(batch=1, length=1)
    with pytest.raises(ValueError, match=r"config.model.init_activation='relu'; expected"):
        init(model, images, tokens)
