"""Shared helpers of the benchmarks: timing, the machine's matmul rate, FLOP counts, JSON
output."""

import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr


def wall_and_cpu_seconds(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``fn()`` (which must block until its result is ready); CPU is
    the process's user + system time, all threads: on a shared machine wall time alone says
    little about what the work costs."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


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


def matmul_gflops(size: int = 2048, dtype=jnp.float32) -> float:
    """GFLOP/s of a large square matmul on random data in ``dtype`` (constant inputs run ~2×
    slower here, so they would understate the machine)."""
    keys = jax.random.split(jax.random.key(0))
    a = jax.random.normal(keys[0], (size, size), dtype)
    b = jax.random.normal(keys[1], (size, size), dtype)
    matmul = jax.jit(jnp.matmul)
    seconds = median_seconds(lambda: matmul(a, b).block_until_ready())
    return 2 * size**3 / seconds / 1e9


def compiled_flops(compiled) -> float:
    """XLA's FLOP count of a compiled program. XLA counts a while loop's body once, not once
    per iteration, so under ``scan`` this is far below the work done: see :func:`matmul_flops`."""
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


def _sub_jaxprs(value):
    if isinstance(value, ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, Jaxpr):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _sub_jaxprs(item)


def matmul_equations(jaxpr, repeats: int = 1):
    """Every ``dot_general`` and ``conv_general_dilated`` equation of ``jaxpr`` and its
    sub-jaxprs, with how many times it runs: a ``scan`` body once per iteration, a ``while``
    body once."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
            yield eqn, repeats
        inner = repeats * (eqn.params["length"] if eqn.primitive.name == "scan" else 1)
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                yield from matmul_equations(sub, inner)


def equation_flops(eqn) -> float:
    """FLOPs of one ``dot_general`` or ``conv_general_dilated`` equation (2 per multiply-add)."""
    out = eqn.outvars[0].aval
    if eqn.primitive.name == "dot_general":
        (contracting, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        return 2.0 * np.prod(out.shape) * np.prod([lhs[d] for d in contracting])
    rhs = eqn.invars[1].aval.shape
    spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, *spatial)
    return 2.0 * np.prod(out.shape) * np.prod([rhs[d] for d in spec[1:]])


def matmul_flops(fn, *args) -> float:
    """FLOPs of every matmul and convolution ``fn(*args)`` runs, counted on its jaxpr with
    each ``scan`` body counted once per iteration (the usual MFU numerator; elementwise work
    is left out). ``while`` loops are counted once, so use it on programs without them."""
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    return sum(repeats * equation_flops(eqn) for eqn, repeats in matmul_equations(jaxpr))
