"""Peak resident memory of the paper-scale train step (soft), and XLA's own account of the
compiled step's buffers. Run in its own process: the peak is this process's high-water mark.

  .venv/bin/python bench/memory.py
"""

import os
import resource
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402

from bench.cases import build, paper_config  # noqa: E402
from bench.common import emit  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main():
    before = peak_rss_mib()
    config, sizes = paper_config("soft")
    _, _, state, step, batch = build(config, sizes)
    compiled = step.lower(state, batch).compile()
    for _ in range(3):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    analysis = compiled.memory_analysis()
    mib = 1 / 2**20
    emit("memory", {
        "case": "paper_soft", "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_after_imports_mib": round(before, 1),
        "xla_temp_mib": round(analysis.temp_size_in_bytes * mib, 1),
        "xla_argument_mib": round(analysis.argument_size_in_bytes * mib, 1),
        "xla_output_mib": round(analysis.output_size_in_bytes * mib, 1),
        "xla_alias_mib": round(analysis.alias_size_in_bytes * mib, 1),
    })


if __name__ == "__main__":
    main()
