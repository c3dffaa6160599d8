"""Teacher forcing: the decoder step of :mod:`show_attend_tell.models.decoder` over all T steps.

Shape letters: B images, T caption steps, N = B·K rows (K ≥ 1 per image: captions of the
image in training, rows b·K .. b·K + K-1 reading image b), L annotations,
D annotation dimension, A attention dimension, E embedding dimension, H LSTM hidden size,
V vocabulary size.

Only the recurrence (:meth:`DecoderStep.recur`: attention, gate, LSTM) runs under ``nn.scan``;
the embedding's share of the LSTM gates and the deep output with its ``[E, V]`` projection do
not feed the next step, so they run once on all T steps as large matmuls. Two ways to take the
recurrence's gradients (``config.model.scan_impl``):

* ``"fused"`` (default): the scan under a custom VJP that takes the gradients of the LSTM's
  hidden and context kernels (eq. 1) after the loop, one large matmul each
  (:func:`_fused_backward`); docs/performance.md gives what it is worth.
* ``"reference"``: autodiff of the same scan, the plain path to read and to check the fused
  one against (tests/test_decoder_scan.py: equal outputs and gradients up to float rounding).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from show_attend_tell.errors import InvalidInput
from show_attend_tell.models.decoder import DecoderStep, split_step_key, step_output

SCAN_IMPLS = ("reference", "fused")


def scan_decoder(step: DecoderStep, carry, tokens, annotations, projected, use_expected,
                 keys, train, annotation_gradients: bool = True, scan_impl: str = "fused"):
    """Teacher-forced decoding, equal to calling ``step`` T times with params shared.

    carry (c_0, h_0) ``[N, H]`` each; tokens ``[N, T]`` (y_{t-1} for t = 1..T); a ``[B, L, D]``;
    ``W_a a`` ``[B, L, A]``; use_expected ``[N]`` bool; keys ``[T]`` or None -> (final carry,
    :class:`StepOutput` with a time axis after the batch axis: logits ``[N, T, V]``, alpha
    ``[N, T, L]``, ...). ``annotation_gradients=False`` (frozen or precomputed annotations)
    makes the annotations constants of the backward pass, which spares ∂loss/∂a, a
    ``[B, L, D]`` outer product per step.
    """
    if scan_impl not in SCAN_IMPLS:
        raise InvalidInput(f"config.model.scan_impl={scan_impl!r}; expected one of "
                         f"{list(SCAN_IMPLS)}")
    if keys is None:
        sample_keys = dropout_keys = None
    else:
        sample_keys, dropout_keys = jax.vmap(split_step_key)(keys)
    embedded, embedded_gates = step.embed_inputs(tokens.T)
    recurrence = _fused_recurrence if scan_impl == "fused" else _scan_recurrence
    carry, rec = recurrence(step, carry, embedded_gates, annotations, projected, use_expected,
                            sample_keys, annotation_gradients)
    logits = step.deep_output_logits(embedded, rec.hidden, rec.gated, dropout_keys, train)
    outputs = step_output(logits, rec)
    return carry, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), outputs)


# Under the scan, autodiff would store act(W_a a + W_h h) ``[B, L, A]`` for every step (a
# [T, B, L, A] buffer, the largest of the step); saving only matmul outputs and recomputing the
# elementwise work in the backward pass is cheaper.
_scanned_recur = nn.scan(
    nn.remat(DecoderStep.recur, policy=jax.checkpoint_policies.dots_saveable,
             prevent_cse=False),
    variable_broadcast="params",
    split_rngs={"params": False},
    # recur(carry, embedded_gates, annotations, projected, use_expected, sample_key)
    in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, 0),
    out_axes=0,
)


def _scan_recurrence(module, carry, embedded_gates, annotations, projected, use_expected,
                     sample_keys, annotation_gradients):
    """:meth:`DecoderStep.recur` scanned over T steps: embedded_gates ``[T, N, 4H]``, sample
    keys ``[T]`` or None -> (final carry, :class:`Recurrence` with a leading T axis)."""
    if not annotation_gradients:
        annotations = jax.lax.stop_gradient(annotations)
    return _scanned_recur(module, carry, embedded_gates, annotations, projected, use_expected,
                          sample_keys)


# The LSTM kernels whose gradients :func:`_fused_backward` takes after the scan, each with
# what it multiplies at every step, from the initial carry and the scan's Recurrence.
_DEFERRED_KERNEL_INPUTS = {
    "lstm_context": lambda carry, rec: rec.gated,  # ẑ_t [T, N, D]
    "lstm_hidden": lambda carry, rec: jnp.concatenate([carry[1][None], rec.hidden[:-1]]),  # h_{t-1}
}


def _stop_deferred_kernel_gradients(variables):
    params = dict(variables["params"])
    for name in _DEFERRED_KERNEL_INPUTS:
        params[name] = {**params[name], "kernel": jax.lax.stop_gradient(params[name]["kernel"])}
    return {**variables, "params": params}


_scan_without_deferred_gradients = nn.map_variables(
    _scan_recurrence, "params", trans_in_fn=_stop_deferred_kernel_gradients
)


def _fused_forward(module, carry, *inputs):
    *differentiable, annotation_gradients = inputs
    outputs, vjp = nn.vjp(
        lambda mdl, *args: _scan_without_deferred_gradients(mdl, *args, annotation_gradients),
        module, carry, *differentiable,
    )
    _, rec = outputs
    kernel_inputs = {name: inputs_of(carry, rec)
                     for name, inputs_of in _DEFERRED_KERNEL_INPUTS.items()}
    return outputs, (vjp, kernel_inputs)


def _fused_backward(annotation_gradients, residuals, cotangents):
    """The scan's backward pass without the per-step gradients of the LSTM's context and
    hidden kernels (eq. 1), which follow from the gates' cotangents afterwards.

    Autodiff of the scan adds ``x_tᵀ g_t`` (g_t = ∂loss/∂gates_t ``[N, 4H]``) into a
    ``[D, 4H]`` accumulator at every step: T skinny matmuls and T read-modify-writes of the
    16 MB ``[2048, 2048]`` kernel at paper scale. ``embedded_gates`` adds into the same gates,
    so its cotangent ``[T, N, 4H]`` *is* g, and each kernel's gradient is one
    ``[·, T·N] × [T·N, 4H]`` matmul.
    """
    del annotation_gradients  # already applied in the forward pass's vjp
    vjp, kernel_inputs = residuals
    variables_t, *inputs_t = vjp(cotangents)
    _, gates_t, *_ = inputs_t  # cotangents of (carry, embedded_gates, ...)
    params = dict(variables_t["params"])
    for name, x in kernel_inputs.items():
        kernel = params[name]["kernel"]
        deferred = jnp.einsum("tnx,tng->xg", x, gates_t, preferred_element_type=kernel.dtype)
        params[name] = {**params[name], "kernel": kernel + deferred}
    return ({**variables_t, "params": params}, *inputs_t)


_fused_recurrence = nn.custom_vjp(
    _scan_recurrence, forward_fn=_fused_forward, backward_fn=_fused_backward,
    nondiff_argnums=(7,),  # annotation_gradients
)
