"""Per-chip training throughput of the paper-scale decoder on precomputed annotations, over
batch sizes and compute dtypes: the figure a launch plan needs (launch/README.md). One JSON
line per (case, batch, dtype), then one per beam search.

  .venv/bin/python bench/throughput.py --batches 32,256 --dtypes float32,bfloat16

``mfu`` is the achieved matmul rate over this device's measured rate for a large square
matmul in the same dtype (not the vendor's peak). On one device; a pod's throughput is this
times its chips only if the input pipeline keeps up and the per-step all-reduce of the
gradients (~9 M parameters at paper scale) hides behind compute.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax.numpy as jnp  # noqa: E402

from bench.cases import compiled_step, paper_config  # noqa: E402
from bench.common import emit, matmul_flops, matmul_gflops, median_seconds  # noqa: E402


def train_case(attention: str, batch: int, dtype: str, peaks: dict, repeats: int) -> None:
    config, sizes = paper_config(attention)
    config.train.batch_size = batch
    config.model.dtype = dtype
    case = compiled_step(config, sizes)
    flops = matmul_flops(case.step, case.state, case.batch)
    seconds = median_seconds(case.run_one, warmup=2, repeats=repeats)
    achieved = flops / seconds / 1e9
    emit("throughput", {
        "case": f"paper_{attention}", "batch": batch, "dtype": dtype,
        "caption_length": sizes["length"], "step_seconds_median": round(seconds, 5),
        "images_per_second": round(batch / seconds, 1),
        "gflop_per_image": round(flops / batch / 1e9, 3),
        "achieved_gflops": round(achieved, 1), "matmul_gflops": round(peaks[dtype], 1),
        "mfu": round(achieved / peaks[dtype], 3),
        "compile_seconds": round(case.compile_seconds, 1),
    })


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--attention", default="soft,hard")
    parser.add_argument("--batches", default="32")
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--peak_size", type=int, default=2048,
                        help="side of the square matmul that measures the device's rate")
    args = parser.parse_args()
    dtypes = args.dtypes.split(",")
    peaks = {d: matmul_gflops(args.peak_size, jnp.dtype(d)) for d in dtypes}
    for attention in args.attention.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            for dtype in dtypes:
                train_case(attention, batch, dtype, peaks, args.repeats)


if __name__ == "__main__":
    main()
