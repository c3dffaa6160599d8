"""The decoder's equations against a float64 NumPy forward pass written from the paper.

The reference reads the parameters out of the Flax variables by name and recomputes eq. 1-3
(LSTM), 4-5 (attention, tanh or ReLU), the gate of §4.2.1 (scalar, vector or none), 7 (deep
output, with or without tanh) and §3.1.2's initial state, without calling any function of the
model. Every parameter (biases included) is random, so a dropped term changes the logits.
Also: teacher forcing is causal (the logits at t never see the tokens after t).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.shapes import get_config
from show_attend_tell.models.captioner import Captioner, build_captioner

VOCAB, L, D, T, B = 7, 4, 3, 4, 3


def model_for(**switches):
    config = get_config("smoke").model
    config.encoder.name = "precomputed"
    config.encoder.kwargs = {"num_annotations": L, "annotation_dim": D}
    config.embed_dim, config.hidden_dim, config.attention_dim = 6, 5, 4
    for key, value in switches.items():
        config[key] = value
    return build_captioner(config, VOCAB)


@functools.cache
def inputs(seed=0):
    rng = np.random.default_rng(seed)
    annotations = rng.normal(size=(B, L, D)).astype(np.float32)
    tokens = rng.integers(1, VOCAB, (B, T)).astype(np.int32)
    return annotations, tokens


def random_variables(model, seed=0):
    """Variables with every leaf random (Flax zero-initialises biases, which would hide them)."""
    annotations, tokens = inputs()
    shapes = jax.eval_shape(functools.partial(model.init, method=Captioner.teacher_force),
                            jax.random.key(seed), annotations, tokens[:, :2])
    leaves, tree = jax.tree.flatten(shapes["params"])
    rng = np.random.default_rng(seed + 1)
    leaves = [jnp.asarray(rng.normal(scale=0.7, size=x.shape), jnp.float32) for x in leaves]
    return {"params": jax.tree.unflatten(tree, leaves)}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def dense(p, x):
    return x @ p["kernel"] + p.get("bias", 0.0)


def numpy_decoder(params, annotations, tokens, switches, locations=None):
    """Teacher-forced logits ``[B, T, V]``, α ``[B, T, L]``, β ``[B, T]`` in float64.

    ``locations`` ``[B, T]`` (hard attention with a sample): z_t = a_{s_t} (eq. 9) instead of
    Σ_i α_ti a_i (eq. 13).
    """
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params["step_module"])
    a = np.asarray(annotations, np.float64)
    mean = a.mean(axis=1)
    h, c = dense(p["init_hidden"], mean), dense(p["init_cell"], mean)
    if switches.get("init_activation", "tanh") == "tanh":
        h, c = np.tanh(h), np.tanh(c)
    act = np.tanh if switches.get("attention_activation", "tanh") == "tanh" else (
        lambda x: np.maximum(x, 0.0))
    att = p["attention"]
    wa = dense(att["annotation_projection"], a)  # [B, L, A]
    logits, alphas, betas = [], [], []
    for t in range(tokens.shape[1]):
        e = (act(wa + (h @ att["hidden_projection"]["kernel"])[:, None]) @ att["score"]["kernel"])[..., 0]
        alpha = np.exp(e - e.max(-1, keepdims=True))
        alpha /= alpha.sum(-1, keepdims=True)
        z = (np.einsum("bl,bld->bd", alpha, a) if locations is None
             else a[np.arange(len(a)), locations[:, t]])
        gate = switches.get("gate", "scalar")
        beta = (np.ones((len(a), 1)) if gate == "none"
                else sigmoid(dense(p["context_gate"]["Dense_0"], h)))
        assert beta.shape[1] == (D if gate == "vector" else 1)
        z_hat = beta * z
        ey = p["embed"]["embedding"][tokens[:, t]]
        gates = (ey @ p["lstm_embedded"]["kernel"] + dense(p["lstm_hidden"], h)
                 + z_hat @ p["lstm_context"]["kernel"])
        i, f, g, o = np.split(gates, 4, axis=-1)  # eq. 1
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)  # eq. 2
        h = sigmoid(o) * np.tanh(c)  # eq. 3
        if switches.get("deep_output", True):  # eq. 7
            pre = ey + dense(p["hidden_to_output"], h) + dense(p["context_to_output"], z_hat)
            if switches.get("deep_output_tanh", False):
                pre = np.tanh(pre)
            logits.append(dense(p["output"], pre))
        else:
            logits.append(dense(p["output"], h))
        alphas.append(alpha)
        betas.append(beta.mean(-1))
    return np.stack(logits, 1), np.stack(alphas, 1), np.stack(betas, 1)


SWITCHES = [
    {},  # the paper: tanh attention, scalar gate, deep output without tanh, tanh h0/c0
    {"gate": "vector"},
    {"gate": "none"},
    {"attention_activation": "relu"},
    {"deep_output": False},
    {"deep_output_tanh": True},
    {"init_activation": "none"},
    {"attention": "hard"},  # deterministic pass: the expected context (eq. 13)
]


def switch_id(switches):
    return ",".join(f"{k}={v}" for k, v in switches.items()) or "paper"


@pytest.mark.parametrize("switches", SWITCHES, ids=switch_id)
def test_teacher_forced_pass_and_step_equal_numpy(switches):
    model = model_for(**switches)
    variables = random_variables(model)
    annotations, tokens = inputs()
    out = model.apply(variables, annotations, tokens, method=Captioner.teacher_force).steps
    logits, alpha, beta = numpy_decoder(variables["params"], annotations, tokens, switches)
    np.testing.assert_allclose(out.logits, logits, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(out.alpha, alpha, rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(out.beta, beta, rtol=2e-4, atol=1e-5)
    # The search step (one call per token) computes the same first two steps.
    cache = model.apply(variables, annotations, method=Captioner.prepare)
    carry = cache.carry
    for t in range(2):
        carry, step = model.apply(variables, cache, carry, tokens[:, t], method=Captioner.step)
        np.testing.assert_allclose(step.logits, logits[:, t], rtol=2e-4, atol=2e-4)
    # A switch that keeps the parameters' shapes matters: the paper's equations on the same
    # parameters give other logits (the gate and deep-output switches change the parameters).
    if set(switches) & {"attention_activation", "deep_output_tanh", "init_activation"}:
        paper, _, _ = numpy_decoder(variables["params"], annotations, tokens, {})
        assert np.abs(paper - logits).max() > 1e-2


def test_hard_attention_sample_feeds_the_sampled_annotation():
    """With p_expected = 0 every image samples s_t ~ α_t (eq. 8) and z_t = a_{s_t} (eq. 9)."""
    model = model_for(attention="hard", p_expected=0.0)
    variables = random_variables(model)
    annotations, tokens = inputs()
    out = model.apply(variables, annotations, tokens, key=jax.random.key(3), method=Captioner.teacher_force)
    assert not bool(out.used_expected.any())
    locations = np.asarray(out.steps.location)
    logits, alpha, _ = numpy_decoder(variables["params"], annotations, tokens,
                                     {"attention": "hard"}, locations=locations)
    np.testing.assert_allclose(out.steps.logits, logits, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(out.steps.context,
                               annotations[np.arange(B)[:, None], locations], atol=1e-6)
    chosen = np.take_along_axis(alpha, locations[..., None], -1)[..., 0]
    np.testing.assert_allclose(out.steps.location_log_prob, np.log(chosen), rtol=1e-4, atol=1e-5)
    entropy = -(alpha * np.log(alpha)).sum(-1)
    np.testing.assert_allclose(out.steps.entropy, entropy, rtol=1e-4, atol=1e-5)


def test_teacher_forcing_is_causal():
    """Changing the inputs at positions ≥ t+1 never changes the logits at steps ≤ t, in the
    scanned pass and in the step function; changing the input at t does."""
    model = model_for()
    variables = random_variables(model)
    annotations, tokens = inputs()
    base = np.asarray(model.apply(variables, annotations, tokens, method=Captioner.teacher_force)
                      .steps.logits)
    for t in range(T - 1):
        changed = tokens.copy()
        changed[:, t + 1:] = tokens[:, t + 1:] % (VOCAB - 1) + 1  # 1..V-1, shifted by one
        assert (changed[:, t + 1:] != tokens[:, t + 1:]).all()
        out = np.asarray(model.apply(variables, annotations, changed, method=Captioner.teacher_force)
                         .steps.logits)
        np.testing.assert_array_equal(out[:, : t + 1], base[:, : t + 1])
        assert np.abs(out[:, t + 1] - base[:, t + 1]).max() > 1e-3
    cache = model.apply(variables, annotations, method=Captioner.prepare)
    carry = cache.carry
    for t in range(2):
        carry, step = model.apply(variables, cache, carry, tokens[:, t], method=Captioner.step)
        np.testing.assert_allclose(step.logits, base[:, t], rtol=1e-5, atol=1e-5)
