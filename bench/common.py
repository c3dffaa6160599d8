"""Shared helpers of the benchmarks: timing, the machine's matmul rate, JSON output."""

import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def median_seconds(fn, *, warmup: int = 2, repeats: int = 10) -> float:
    """Median wall time of ``fn()`` (which must block until its result is ready)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(size: int = 2048) -> float:
    """fp32 GFLOP/s of a large square matmul on random data (constant inputs run ~2× slower
    here, so they would understate the machine)."""
    keys = jax.random.split(jax.random.key(0))
    a = jax.random.normal(keys[0], (size, size), jnp.float32)
    b = jax.random.normal(keys[1], (size, size), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    seconds = median_seconds(lambda: matmul(a, b).block_until_ready())
    return 2 * size**3 / seconds / 1e9


def compiled_flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan")))


def machine() -> dict:
    return {"devices": [str(d) for d in jax.devices()], "cpu_count": os.cpu_count(),
            "jax": jax.__version__, "numpy": np.__version__}


def emit(name: str, figures: dict) -> None:
    print(json.dumps({"bench": name, **figures, "machine": machine()}), flush=True)
    sys.stdout.flush()
