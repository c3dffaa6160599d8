"""``make bench``: every benchmark, each in its own process (so memory peaks and compile
caches do not leak between them), JSON lines as they come, then a summary against the
targets of issue #8.

  .venv/bin/python bench/run_all.py [--quick]
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPTS = [
    ("train_step.py", []),
    ("matmul_ceiling.py", []),
    ("decode.py", []),
    ("compile.py", []),
    ("input_pipeline.py", []),
    ("memory.py", []),
    ("captions_per_image.py", ["--repeats", "3"]),
]
# Toy sizes for a smoke run (tests): the same code paths in seconds.
QUICK = {
    "train_step.py": ["--cases", "shapes_soft", "--repeats", "1"],
    "decode.py": ["--images", "2", "--steps", "2", "--repeats", "1"],
    "compile.py": ["--lengths", "2"],
    "captions_per_image.py": ["--cases", "shapes", "--repeats", "1", "--batch", "shapes=10"],
}


def run(script: str, extra: list[str]) -> list[dict]:
    process = subprocess.Popen([sys.executable, os.path.join(HERE, script), *extra],
                               stdout=subprocess.PIPE, text=True)
    results = []
    for line in process.stdout:
        print(line, end="", flush=True)
        if line.startswith("{"):
            results.append(json.loads(line))
    if process.wait():
        raise SystemExit(f"bench/{script} failed with exit status {process.returncode}")
    return results


def summary(results: list[dict]) -> list[str]:
    """One line per target of issues #8 and #20 with the measured figure."""
    by = {}
    for r in results:
        by.setdefault(r["bench"], []).append(r)
    lines = []
    for r in by.get("train_step", []):
        if r["case"] == "paper_soft":
            lines.append(f"train step, paper soft: MFU {r['mfu']:.0%} "
                         f"({r['achieved_gflops']} of {r['matmul_gflops']} GFLOP/s)  target ≥ 70 %")
    for r in by.get("matmul_ceiling", []):
        lines.append(f"MFU ceiling, {r['case']}: {r['mfu_ceiling']:.0%} if every matmul ran as "
                     f"fast as alone and nothing else cost time; {r['mfu_bound']:.0%} with the "
                     f"work no step can skip (the step: {r['mfu_step']:.0%})")
    for r in by.get("decode", []):
        if r["beam_size"] == 3:
            lines.append(f"beam search K 3: {r['images_per_second']} images/s  "
                         "target ≥ 35 (issue #8), ≥ 50 (issue #20)")
    compiles = [r["total_seconds"] for r in by.get("compile", [])]
    if compiles:
        lines.append(f"compile at T {[r['caption_length'] for r in by['compile']]}: "
                     f"{compiles} s  target ≤ 30 s, flat")
    for r in by.get("input_pipeline", []):
        lines.append(f"input pipeline: {r['pipeline_overhead']:+.1%} step time  target ≤ 5 %")
    for r in by.get("memory", []):
        lines.append(f"peak memory, paper soft step: {r['peak_rss_mib']:.0f} MiB")
    for r in by.get("captions_per_image_summary", []):
        target = f"  target ≥ {r['target']}× (issue #20)" if "target" in r else ""
        lines.append(f"captions/s at 5 vs 1 caption per image, {r['case']}: "
                     f"{r['captions_per_second_ratio_5_vs_1']}×{target}")
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="toy sizes (smoke test)")
    parser.add_argument("--only", default="", help="comma-separated script names")
    args = parser.parse_args()
    start = time.perf_counter()
    results = []
    for script, extra in SCRIPTS:
        if args.only and script.removesuffix(".py") not in args.only.split(","):
            continue
        if args.quick and script not in QUICK:
            continue
        results += run(script, QUICK.get(script, extra) if args.quick else extra)
    print(f"\n== summary ({time.perf_counter() - start:.0f} s) ==")
    for line in summary(results):
        print(line)


if __name__ == "__main__":
    main()
