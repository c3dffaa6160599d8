"""The two ways of scanning teacher forcing (models/decoder_scan.py) agree: the fused custom VJP
gives autodiff's outputs and gradients of the plain ``nn.scan`` reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.shapes import get_config
from show_attend_tell.config_loading import config_differences, config_to_dict
from show_attend_tell.models.decoder import DecoderStep
from show_attend_tell.models.decoder_scan import scan_decoder

BATCH, LENGTH, VOCAB, L, D = 3, 5, 13, 7, 6


def repeated_carry(module, annotations, per_image):
    """The initial state once per image, repeated for the image's ``per_image`` caption rows."""
    carry = module.initial_carry(annotations)
    return jax.tree.map(lambda x: jnp.repeat(x, per_image, axis=0), carry)


def teacher_forced(step, variables, annotations, tokens, use_expected, keys, scan_impl,
                   annotation_gradients):
    def run(module, annotations):
        carry = repeated_carry(module, annotations, tokens.shape[0] // annotations.shape[0])
        projected = module.project_annotations(annotations)
        return scan_decoder(module, carry, tokens, annotations, projected, use_expected, keys,
                            True, annotation_gradients, scan_impl)

    return step.apply(variables, annotations, method=run)


SOFT_SWITCHES = {"attention_mode": "soft", "gate": "vector", "attention_activation": "relu",
                 "deep_output_tanh": True}
HARD_SWITCHES = {"attention_mode": "hard", "gate": "none", "deep_output": False,
                 "init_activation": "none"}


# Between them the soft and hard cases turn every deviation switch of DecoderStep; per_image > 1
# is training on image groups (data.captions_per_image): rows i·C .. i·C + C-1 read image i.
@pytest.mark.parametrize("overrides,annotation_gradients,per_image", [
    (SOFT_SWITCHES, True, 1),
    (HARD_SWITCHES, False, 1),
    (SOFT_SWITCHES, True, 3),
    (HARD_SWITCHES, True, 3),
])
def test_fused_scan_equals_reference_outputs_and_gradients(overrides, annotation_gradients,
                                                            per_image):
    step = DecoderStep(vocab_size=VOCAB, embed_dim=8, hidden_dim=10, attention_dim=9,
                       dropout_rate=0.3, **overrides)
    rng = np.random.default_rng(0)
    rows = BATCH * per_image
    annotations = jnp.asarray(rng.normal(size=(BATCH, L, D)), jnp.float32)
    tokens = jnp.asarray(rng.integers(1, VOCAB, (rows, LENGTH)), jnp.int32)
    use_expected = jnp.asarray(np.arange(rows) % 3 == 0)
    keys = jax.random.split(jax.random.key(5), LENGTH)
    variables = jax.jit(lambda: step.init(
        jax.random.key(0), annotations, method=lambda m, a: scan_decoder(
            m, repeated_carry(m, a, per_image), tokens, a, m.project_annotations(a),
            use_expected, keys, True)
    ))()
    weights = jnp.asarray(rng.normal(size=(rows, LENGTH, VOCAB)), jnp.float32)

    def loss(variables, annotations, scan_impl):
        (cell, hidden), steps = teacher_forced(step, variables, annotations, tokens,
                                               use_expected, keys, scan_impl,
                                               annotation_gradients)
        value = (jnp.sum(steps.logits * weights) + jnp.sum(steps.alpha**2)
                 + jnp.sum(steps.beta) + jnp.sum(cell * hidden))
        return value, steps

    results = {
        impl: jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True),
                      static_argnums=2)(variables, annotations, impl)
        for impl in ("reference", "fused")
    }
    (_, reference_steps), reference_grads = results["reference"]
    (_, fused_steps), fused_grads = results["fused"]
    for name in reference_steps._fields:
        np.testing.assert_allclose(getattr(fused_steps, name), getattr(reference_steps, name),
                                   rtol=1e-5, atol=1e-6, err_msg=name)
    # Dropout was on, hard attention sampled: both paths drew the same masks and locations.
    assert float(jnp.abs(fused_steps.logits).max()) > 0
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(reference_grads))
    kernel = reference_grads[0]["params"]["lstm_context"]["kernel"]
    assert float(jnp.abs(kernel).max()) > 0  # a deferred kernel's gradient is really compared
    jax.tree.map_with_path(
        lambda path, a, b: np.testing.assert_allclose(
            a, b, rtol=1e-4, atol=1e-5 * scale, err_msg=jax.tree_util.keystr(path)
        ),
        fused_grads, reference_grads,
    )


def test_unknown_scan_impl_is_a_clear_error():
    step = DecoderStep(vocab_size=VOCAB, embed_dim=4, hidden_dim=4, attention_dim=4)
    annotations = jnp.zeros((1, L, D))
    with pytest.raises(ValueError, match=r"config.model.scan_impl='loop'; expected one of"):
        step.init(jax.random.key(0), annotations, method=lambda m, a: scan_decoder(
            m, m.initial_carry(a), jnp.ones((1, 2), jnp.int32), a, m.project_annotations(a),
            jnp.ones(1, bool), None, False, scan_impl="loop"))


def test_config_saved_before_scan_impl_existed_matches_the_default():
    current = config_to_dict(get_config("soft"))
    saved = config_to_dict(get_config("soft"))
    del saved["model"]["scan_impl"]
    assert config_differences(saved, current, set()) == []
    current["model"]["scan_impl"] = "fused" if current["model"]["scan_impl"] == "reference" \
        else "reference"
    assert config_differences(saved, current, set()) != []
