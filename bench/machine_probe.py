"""How fast this machine is right now: a one-thread float32 512² NumPy matmul, repeated for
``--seconds``. Timings on a shared machine follow its speed (docs/testing.md), so read this
before and after a timed run and report it with the figures.

  .venv/bin/python bench/machine_probe.py [--seconds 3]
"""

import argparse
import json
import os
import time

# One BLAS thread unless the caller says otherwise, set before NumPy starts its thread pool.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        a @ a
        count += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({"bench": "machine_probe",
                      "matmul_512_gflops": round(2 * 512**3 * count / elapsed / 1e9, 1)}))


if __name__ == "__main__":
    main()
