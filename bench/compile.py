"""Compile time of the paper-scale train step (soft) at several caption lengths: the decoder
is a scan, so it should not grow with T. One JSON line per length.

  .venv/bin/python bench/compile.py [--lengths 16,32,64]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.cases import build, paper_config  # noqa: E402
from bench.common import emit  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", default="16,32,64")
    args = parser.parse_args()
    for length in (int(t) for t in args.lengths.split(",")):
        config, sizes = paper_config("soft", length)
        _, _, state, step, batch = build(config, sizes)
        start = time.perf_counter()
        lowered = step.lower(state, batch)
        traced = time.perf_counter()
        lowered.compile()
        done = time.perf_counter()
        emit("compile", {
            "case": "paper_soft", "caption_length": length,
            "trace_lower_seconds": round(traced - start, 2),
            "compile_seconds": round(done - traced, 2),
            "total_seconds": round(done - start, 2),
        })


if __name__ == "__main__":
    main()
