"""Train-step speed: paper-scale decoder on precomputed annotations (soft, hard) and the
shapes config with its encoder. Prints one JSON line per case.

  .venv/bin/python bench/train_step.py [--cases paper_soft,paper_hard,shapes_soft]

``gflop_per_step`` counts every matmul and convolution of the step (scan bodies once per
step); ``xla_gflop_per_step`` is XLA's own count, which sees a scan body only once.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.cases import CASES, compiled_step  # noqa: E402
from bench.common import (  # noqa: E402
    compiled_flops,
    emit,
    matmul_flops,
    matmul_gflops,
    median_seconds,
)


def run_case(name: str, config, sizes, peak: float, repeats: int) -> None:
    case = compiled_step(config, sizes)
    flops = matmul_flops(case.step, case.state, case.batch)
    seconds = median_seconds(case.run_one, warmup=2, repeats=repeats)
    achieved = flops / seconds / 1e9
    emit("train_step", {
        "case": name, "batch": config.train.batch_size, "caption_length": sizes["length"],
        "step_seconds_median": round(seconds, 4),
        "images_per_second": round(config.train.batch_size / seconds, 1),
        "gflop_per_step": round(flops / 1e9, 2),
        "xla_gflop_per_step": round(compiled_flops(case.compiled) / 1e9, 2),
        "achieved_gflops": round(achieved, 1), "matmul_gflops": round(peak, 1),
        "mfu": round(achieved / peak, 3), "compile_seconds": round(case.compile_seconds, 1),
    })


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    peak = matmul_gflops()
    for name in args.cases.split(","):
        run_case(name, *CASES[name](), peak, args.repeats)


if __name__ == "__main__":
    main()
