"""What the fused custom VJP of the scanned decoder is worth: the paper-scale train step with
``model.scan_impl`` = ``reference`` (autodiff of ``nn.scan``) and ``fused``, both compiled in
one process and timed in alternation, so load from elsewhere falls on both alike. Prints one
JSON line per case: each variant's median and fastest wall and CPU seconds per step, and
fused ÷ reference for each.

  .venv/bin/python bench/scan_impl.py [--cases paper_soft,paper_hard] [--rounds 6 --steps 3]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.cases import CASES, compiled_step  # noqa: E402
from bench.common import emit  # noqa: E402

IMPLS = ("reference", "fused")


def run_case(name: str, rounds: int, steps: int) -> None:
    config, sizes = CASES[name]()
    runs = {}
    for impl in IMPLS:
        config.model.scan_impl = impl
        runs[impl] = compiled_step(config, sizes).run_one
        runs[impl]()  # warm-up
    wall = {impl: [] for impl in IMPLS}
    cpu = {impl: [] for impl in IMPLS}
    for round_ in range(rounds):
        # Alternate which variant goes first so neither always follows the other.
        for impl in IMPLS if round_ % 2 == 0 else IMPLS[::-1]:
            for _ in range(steps):
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                runs[impl]()
                wall[impl].append(time.perf_counter() - start_wall)
                cpu[impl].append(time.process_time() - start_cpu)
    figures = {"case": name, "rounds": rounds, "steps_per_round": steps,
               "load_average_1min": round(os.getloadavg()[0], 1)}
    for impl in IMPLS:
        figures[f"{impl}_wall_s"] = round(statistics.median(wall[impl]), 4)
        figures[f"{impl}_cpu_s"] = round(statistics.median(cpu[impl]), 4)
        # The fastest step is the one other jobs disturbed least.
        figures[f"{impl}_fastest_wall_s"] = round(min(wall[impl]), 4)
        figures[f"{impl}_fastest_cpu_s"] = round(min(cpu[impl]), 4)
    for kind in ("wall", "cpu", "fastest_wall", "fastest_cpu"):
        ratio = figures[f"fused_{kind}_s"] / figures[f"reference_{kind}_s"]
        figures[f"fused_over_reference_{kind}"] = round(ratio, 3)
    emit("scan_impl", figures)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="paper_soft,paper_hard")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    args = parser.parse_args()
    for name in args.cases.split(","):
        run_case(name, args.rounds, args.steps)


if __name__ == "__main__":
    main()
