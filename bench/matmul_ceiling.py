"""An upper bound on the paper-scale train step's MFU with this machine's XLA:CPU matmul
kernels. Every matmul of the step (its jaxpr, a scan body once per iteration) is timed alone
on random data of its own shapes, and the times are summed: that is the step's time if each
matmul ran as fast as it runs in isolation (operands hot in cache, the fastest of several
runs) and everything else — attention's elementwise and memory-bound work, the softmax,
Adam — were free. A tighter bound adds the part of that other work no step can skip, timed the
same way (:func:`other_work_floor`). Prints one JSON line per case, with the slowest matmuls.

  .venv/bin/python bench/matmul_ceiling.py [--cases paper_soft,paper_hard] [--top 10]
"""

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from bench.cases import CASES, compiled_step  # noqa: E402
from bench.common import (  # noqa: E402
    emit,
    equation_flops,
    matmul_equations,
    matmul_gflops,
    median_seconds,
)
from show_attend_tell.state import make_optimizer  # noqa: E402


def seconds_per_call(fn, args, calls: int, bursts: int = 7) -> float:
    """Time of one ``fn(*args)`` in the fastest of ``bursts`` runs of ``calls`` back-to-back
    calls (dispatch overlaps execution). The fastest, not the median: the bound should be
    generous."""

    def burst():
        start = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
        return time.perf_counter() - start

    burst()
    return min(burst() for _ in range(bursts)) / calls


def isolated_matmul_times(jaxpr, rng) -> list[dict]:
    """One row per distinct dot_general of ``jaxpr``: its shapes, how often the step runs it,
    FLOPs and isolated time per run, less the cost of calling a jitted function at all."""
    counts = collections.Counter()
    equations = {}
    for eqn, repeats in matmul_equations(jaxpr):
        if eqn.primitive.name != "dot_general":
            raise SystemExit(f"{eqn.primitive.name}: only dot_general is timed here")
        key = (tuple(v.aval.shape for v in eqn.invars), str(eqn.params["dimension_numbers"]))
        counts[key] += repeats
        equations[key] = eqn
    noop = jax.jit(lambda a, b: a.ravel()[0])
    rows = []
    for key, eqn in equations.items():
        lhs, rhs = (rng.standard_normal(v.aval.shape).astype(np.float32) for v in eqn.invars)
        lhs, rhs = jax.device_put(lhs), jax.device_put(rhs)
        dims = eqn.params["dimension_numbers"]
        dot = jax.jit(lambda a, b, dims=dims: jax.lax.dot_general(a, b, dims))
        calls = 20 if equation_flops(eqn) < 1e8 else 3
        seconds = seconds_per_call(dot, (lhs, rhs), calls)
        overhead = seconds_per_call(noop, (lhs, rhs), calls)
        rows.append({"lhs": list(key[0][0]), "rhs": list(key[0][1]), "dims": key[1],
                     "count": counts[key], "gflop": equation_flops(eqn) / 1e9,
                     "seconds": max(seconds - overhead, 0.0)})
    return rows


def other_work_floor(config, sizes, params, opt_state, rng) -> dict:
    """Seconds per step of work besides the matmuls that the step cannot skip, each part timed
    alone at its fastest: soft attention's forward tanh over [B, L, A] (T times), two plain
    passes over [B, L, A] in its backward pass (the tanh's derivative and the ∂(W_a a)
    accumulator; T times each), the softmax cross-entropy over [B·T, V] with its gradient,
    and the optimizer's update of every parameter."""
    batch, length, vocab = config.train.batch_size, sizes["length"], sizes["vocab"]
    shape = (batch, sizes["annotations"][0], config.model.attention_dim)
    pre = jax.device_put(rng.standard_normal(shape).astype(np.float32))
    logits = jax.device_put(rng.standard_normal((batch * length, vocab)).astype(np.float32))
    labels = jax.device_put(rng.integers(0, vocab, batch * length).astype(np.int32))
    tx = make_optimizer(config.train)
    grads = jax.tree.map(lambda p: 1e-3 * p, params)

    def update(grads, opt_state, params):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    cross_entropy = jax.value_and_grad(
        lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x, y).mean())
    return {
        "attention_tanh": length * seconds_per_call(jax.jit(jnp.tanh), (pre,), 3),
        "attention_backward_passes": 2 * length * seconds_per_call(
            jax.jit(lambda x: 2 * x), (pre,), 3),
        "softmax_cross_entropy": seconds_per_call(jax.jit(cross_entropy), (logits, labels), 3),
        "optimizer_update": seconds_per_call(jax.jit(update), (grads, opt_state, params), 1),
    }


def run_case(name: str, config, sizes, peak: float, top: int) -> None:
    case = compiled_step(config, sizes)
    # Before the step runs: it donates (deletes) the state's buffers.
    other = other_work_floor(config, sizes, case.state.params, case.state.opt_state,
                             np.random.default_rng(1))
    step_seconds = median_seconds(case.run_one, warmup=2, repeats=5)
    start = time.perf_counter()
    rows = isolated_matmul_times(jax.make_jaxpr(case.step)(case.state, case.batch).jaxpr,
                                 np.random.default_rng(0))
    flops = sum(r["count"] * r["gflop"] for r in rows) * 1e9
    matmul_seconds = sum(r["count"] * r["seconds"] for r in rows)
    rows.sort(key=lambda r: r["count"] * r["seconds"], reverse=True)
    bound_seconds = matmul_seconds + sum(other.values())
    emit("matmul_ceiling", {
        "case": name, "step_seconds_median": round(step_seconds, 4),
        "gflop_per_step": round(flops / 1e9, 2),
        "isolated_matmul_seconds": round(matmul_seconds, 4),
        "matmul_gflops": round(peak, 1),
        "mfu_step": round(flops / step_seconds / 1e9 / peak, 3),
        "mfu_ceiling": round(flops / matmul_seconds / 1e9 / peak, 3),
        "other_work_floor_ms": {key: round(1e3 * value, 1) for key, value in other.items()},
        "mfu_bound": round(flops / bound_seconds / 1e9 / peak, 3),
        "distinct_matmuls": len(rows), "timing_seconds": round(time.perf_counter() - start, 1),
        "slowest": [
            {"lhs": r["lhs"], "rhs": r["rhs"], "dims": r["dims"], "count": r["count"],
             "ms_total": round(1e3 * r["count"] * r["seconds"], 1),
             "gflops": round(r["gflop"] / r["seconds"], 1) if r["seconds"] else None}
            for r in rows[:top]
        ],
    })


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="paper_soft",
                        help="paper_soft and/or paper_hard (the shapes cases have convolutions)")
    parser.add_argument("--top", type=int, default=10, help="matmuls listed, slowest first")
    args = parser.parse_args()
    peak = matmul_gflops()
    for name in args.cases.split(","):
        run_case(name, *CASES[name](), peak, args.top)


if __name__ == "__main__":
    main()
