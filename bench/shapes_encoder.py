"""What the shapes demo's step costs with cheaper variants of its trainable ConvNet (issue #20's
≤ 5 min demo): the configs/shapes.py:soft train step (B 64, T 14) with each encoder variant,
compiled first and timed in alternation. One JSON line per variant.

  .venv/bin/python bench/shapes_encoder.py [--repeats 8]

The variants change ``model.encoder.kwargs`` of the small_convnet (models/encoders.py): ``patch``
(pixels stacked per side before the first convolution), ``widths`` (one stage each; the first at
the stacked resolution, each further one halves it), ``blocks`` (residual convolutions at the
last stage) and ``features`` (D). All give the 8×8 grid (L 64) of the config.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.cases import compiled_step, shapes_config  # noqa: E402
from bench.common import emit, wall_and_cpu_seconds  # noqa: E402

VARIANTS = {
    "config": {},  # patch 2, widths (32, 64, 128), blocks 2, features 128
    "blocks_1": {"blocks": 1},
    "narrow_last_stage": {"widths": (32, 64, 96), "features": 96},
    "patch_4": {"patch": 4, "widths": (64, 128)},
    "patch_4_blocks_1": {"patch": 4, "widths": (64, 128), "blocks": 1},
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    steps = {}
    for name, changes in VARIANTS.items():
        config, sizes = shapes_config("soft")
        config.model.encoder.kwargs.update(changes)
        steps[name] = compiled_step(config, sizes)
        steps[name].run_one()  # warm-up
    times = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, case in steps.items():
            times[name].append(wall_and_cpu_seconds(case.run_one))
    base = statistics.median(t[0] for t in times["config"])
    for name, changes in VARIANTS.items():
        wall = statistics.median(t[0] for t in times[name])
        emit("shapes_encoder", {
            "variant": name, "encoder_kwargs": changes,
            "step_seconds_median": round(wall, 4),
            "cpu_seconds_per_step": round(statistics.median(t[1] for t in times[name]), 3),
            "relative_to_config": round(wall / base, 2), "repeats": args.repeats,
        })


if __name__ == "__main__":
    main()
