"""The benchmarks' FLOP counter, matmul-ceiling listing and summary (the timed runs themselves
live in bench/, not here)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench.cases import paper_config
from bench.common import compiled_flops, matmul_flops
from bench.matmul_ceiling import isolated_matmul_times, other_work_floor
from bench.run_all import summary
from show_attend_tell.state import make_optimizer


def scanned_matmuls(w, x):
    return jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=10)[0].sum()


def test_matmul_flops_counts_every_scan_iteration_and_xla_does_not():
    w, x = jnp.ones((64, 64)), jnp.ones((8, 64))
    step = 2 * 8 * 64 * 64
    assert matmul_flops(scanned_matmuls, w, x) == 10 * step
    # Backward: per iteration one matmul for dc and one for dw, besides the forward one.
    grad = jax.jit(jax.grad(scanned_matmuls))
    assert matmul_flops(grad, w, x) == 30 * step
    assert compiled_flops(grad.lower(w, x).compile()) < 10 * step


def test_isolated_matmul_times_lists_each_distinct_matmul_with_its_count():
    w, x = jnp.ones((64, 64)), jnp.ones((8, 64))
    grad = jax.jit(jax.grad(scanned_matmuls))
    rows = isolated_matmul_times(jax.make_jaxpr(grad)(w, x).jaxpr, np.random.default_rng(0))
    # Forward c @ w, and in the backward pass dc = g @ wᵀ and dw = cᵀ @ g: 10 times each.
    assert sorted(r["count"] for r in rows) == [10, 10, 10]
    assert sum(r["count"] * r["gflop"] for r in rows) * 1e9 == pytest.approx(matmul_flops(grad, w, x))
    # Each row times a real matmul (positive time) of 2·m·n·k flops: all three are 8×64×64.
    assert all(r["seconds"] > 0 for r in rows)
    assert [r["gflop"] for r in rows] == pytest.approx([2 * 8 * 64 * 64 / 1e9] * 3)


def test_other_work_floor_times_each_part():
    config, _ = paper_config("soft")
    config.train.batch_size = 2
    sizes = {"vocab": 11, "annotations": (4, 8), "length": 3}
    params = {"w": jnp.ones((3, 3))}
    opt_state = make_optimizer(config.train).init(params)
    parts = other_work_floor(config, sizes, params, opt_state, np.random.default_rng(0))
    assert set(parts) == {"attention_tanh", "attention_backward_passes",
                          "softmax_cross_entropy", "optimizer_update"}
    assert all(seconds > 0 for seconds in parts.values())


def test_matmul_flops_counts_convolutions():
    x, kernel = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 16))
    conv = lambda x, k: jax.lax.conv_general_dilated(  # noqa: E731
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert matmul_flops(conv, x, kernel) == 2 * (2 * 8 * 8 * 16) * (3 * 3 * 3)


def test_summary_names_each_target():
    results = [
        {"bench": "train_step", "case": "paper_soft", "mfu": 0.5, "achieved_gflops": 50,
         "matmul_gflops": 100},
        {"bench": "matmul_ceiling", "case": "paper_soft", "mfu_ceiling": 0.79, "mfu_bound": 0.69,
         "mfu_step": 0.5},
        {"bench": "decode", "beam_size": 3, "images_per_second": 40.0},
        {"bench": "compile", "caption_length": 16, "total_seconds": 9.0},
        {"bench": "input_pipeline", "pipeline_overhead": 0.01},
        {"bench": "memory", "peak_rss_mib": 2048.0},
        {"bench": "captions_per_image_summary", "case": "paper_resnet101",
         "captions_per_second_ratio_5_vs_1": 3.21, "target": 3.0, "met": True},
    ]
    text = "\n".join(summary(results))
    for figure in ("MFU 50%", "79%", "69%", "40.0 images/s", "[9.0] s", "+1.0%", "2048 MiB",
                   "paper_resnet101: 3.21×  target ≥ 3.0×"):
        assert figure in text


def test_decode_profile_puts_each_op_in_the_category_of_the_source_ops_it_computes():
    from bench.decode_profile import op_categories

    def meta(name):
        return f'metadata={{op_name="s/while/body/Captioner.step/m.{name}"}}'

    hlo = f"""
%fused_logits (p0: f32[4,8], p1: f32[8,10]) -> f32[4,10] {{
  %dot.1 = f32[4,8] dot(%p2, %p3), {meta("deep_output_logits/hidden_to_output/dot_general")}
  ROOT %dot.2 = f32[4,10] dot(%dot.1, %p1), {meta("deep_output_logits/output/dot_general")}
}}

ENTRY %main (a: f32[2,3,8]) -> f32[4,10] {{
  %ynn_fusion = f32[4,10]{{1,0}} fusion(%x, %y), kind=kCustom, calls=%fused_logits
  %ynn_fusion.1 = f32[4,32]{{1,0}} fusion(%x), {meta("recur/lstm_context/dot_general")}
  %dot.11 = f32[2,1,8]{{2,1,0}} dot(%alpha, %a), lhs_batch_dims={{0}}, lhs_contracting_dims={{1}}
  %dot.10 = f32[12,1]{{1,0}} dot(%ynn_fusion.2, %v), lhs_contracting_dims={{1}}
  %ynn_fusion.2 = f32[12,8]{{1,0}} fusion(%h), kind=kCustom, {meta("recur/attention/tanh")}
  %wrapped_reduce-window.3 = f32[4,2]{{1,0}} fusion(%ynn_fusion, %c), kind=kLoop
  %custom-call = (f32[2,3]{{1,0}}) custom-call(%s), metadata={{op_name="s/while/body/top_k"}}
  %gather.5 = f32[2,3,4]{{2,1,0}} gather(%t), metadata={{op_name="s/while/body/take_along_axis"}}
  ROOT %copy = f32[4,10] copy(%constant)
}}
"""
    categories = op_categories(hlo)
    assert categories["ynn_fusion"].startswith("vocabulary projection")
    assert categories["ynn_fusion.1"].startswith("LSTM gate matmuls")
    assert categories["dot.11"].startswith("context")
    assert categories["dot.10"].startswith("attention score")
    assert categories["ynn_fusion.2"].startswith("attention tanh")
    assert categories["wrapped_reduce-window.3"] == "log-softmax over V"
    assert categories["custom-call"] == "top-k"
    assert categories["gather.5"].startswith("beam bookkeeping")
    assert categories["copy"] == "other"
