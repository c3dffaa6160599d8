"""Image-grouped training (``data.captions_per_image`` C): captions/s and images/s of the train
step at C = 1 and C = 5, the same B caption rows a step, on (a) the shapes config with its
encoder, (b) the paper-scale decoder on precomputed annotations, (c) the paper-scale step with a
trainable ResNet-101 on 224-pixel images. Prints one JSON line per case and C, then one line per
case with the ratio; the variants of a case are compiled first and timed in alternation.

  .venv/bin/python bench/captions_per_image.py [--cases shapes,paper_features,paper_resnet101]
      [--repeats 5] [--batch CASE=B ...]

``cpu_seconds_per_step`` is the process's user + system time per step: the machine is shared,
so wall time alone says little about what a step costs.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.cases import compiled_step, paper_config, paper_encoder_config, shapes_config  # noqa: E402
from bench.common import emit, matmul_flops, wall_and_cpu_seconds  # noqa: E402

# Case -> (config and sizes, default B caption rows, a multiple of 5: shapes 80 = 16 images x 5
# near its config's 64; paper scale 40, the multiple of 5 nearest the other benches' 32 above it).
CASES = {
    "shapes": (lambda: shapes_config("soft"), 80),
    "paper_features": (lambda: paper_config("soft"), 40),
    "paper_resnet101": (lambda: paper_encoder_config("resnet101"), 40),
}
TARGETS = {"shapes": 2.0, "paper_resnet101": 3.0}  # issue #20: captions/s at C = 5 over C = 1
PER_IMAGE = (1, 5)


def run_case(name: str, batch: int, repeats: int) -> None:
    make, _ = CASES[name]
    steps = {}
    for per_image in PER_IMAGE:
        config, sizes = make()
        config.train.batch_size = batch
        config.data.captions_per_image = per_image
        steps[per_image] = (config, sizes, compiled_step(config, sizes))
    for _, _, case in steps.values():  # warm-up
        case.run_one()
    times = {per_image: [] for per_image in PER_IMAGE}
    for _ in range(repeats):
        for per_image, (_, _, case) in steps.items():
            times[per_image].append(wall_and_cpu_seconds(case.run_one))
    captions_per_second = {}
    for per_image, (_, sizes, case) in steps.items():
        wall = statistics.median(t[0] for t in times[per_image])
        cpu = statistics.median(t[1] for t in times[per_image])
        captions_per_second[per_image] = batch / wall
        emit("captions_per_image", {
            "case": name, "captions_per_image": per_image, "batch_captions": batch,
            "batch_images": batch // per_image, "caption_length": sizes["length"],
            "step_seconds_median": round(wall, 4), "cpu_seconds_per_step": round(cpu, 3),
            "captions_per_second": round(batch / wall, 1),
            "images_per_second": round(batch / per_image / wall, 1),
            "gflop_per_step": round(matmul_flops(case.step, case.state, case.batch) / 1e9, 1),
            "compile_seconds": round(case.compile_seconds, 1), "repeats": repeats,
        })
    ratio = captions_per_second[5] / captions_per_second[1]
    summary = {"case": name, "captions_per_second_ratio_5_vs_1": round(ratio, 2)}
    if name in TARGETS:
        summary.update(target=TARGETS[name], met=ratio >= TARGETS[name])
    emit("captions_per_image_summary", summary)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", action="append", default=[],
                        help="CASE=B caption rows (a multiple of 5)")
    args = parser.parse_args()
    batches = {name: default for name, (_, default) in CASES.items()}
    for item in args.batch:
        name, _, value = item.partition("=")
        batches[name] = int(value)
    for name in args.cases.split(","):
        if name not in CASES:
            parser.error(f"--cases: unknown case {name!r}; expected {', '.join(CASES)}")
        if batches[name] % 5:
            parser.error(f"--batch {name}={batches[name]}: expected a multiple of 5")
        run_case(name, batches[name], args.repeats)


if __name__ == "__main__":
    main()
