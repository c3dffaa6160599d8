"""The shapes TFDS input pipeline against the train step that consumes it: batches/s of the
pipeline alone, and the shapes train step (soft) fed by the pipeline vs. by the same batches
already in memory. One JSON line.

  .venv/bin/python bench/input_pipeline.py [--batches 20]

Needs the shapes dataset in ``data/tfds`` (``sat data build shapes``).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402

from bench.cases import shapes_config  # noqa: E402
from bench.common import emit  # noqa: E402
from show_attend_tell import parallel  # noqa: E402
from show_attend_tell.data import pipeline  # noqa: E402
from show_attend_tell.models.captioner import build_captioner  # noqa: E402
from show_attend_tell.train import compile_train_step, make_optimizer, sharded_state  # noqa: E402


def timed_steps(step, state, batches, mesh):
    """Seconds per step of the training loop's pattern: fetch, put, dispatch; block at the end."""
    start = time.perf_counter()
    count = 0
    for batch in batches:
        state, metrics = step(state, parallel.global_batch(mesh, batch))
        count += 1
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / count, state


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--data_dir", default="data/tfds")
    args = parser.parse_args()
    config, _ = shapes_config("soft")
    config.data.data_dir = args.data_dir
    batch_size = config.train.batch_size
    vocab = pipeline.build_vocabulary(config)
    model = build_captioner(config.model, len(vocab))
    image_size = model.encoder.image_size

    def fresh():
        return pipeline.train_iterator(config, vocab, batch_size, image_size)

    # The pipeline alone, after its shuffle buffer has filled.
    batches = fresh()
    warm = [next(batches) for _ in range(5)]
    start = time.perf_counter()
    kept = [next(batches) for _ in range(args.batches)]
    pipeline_seconds = (time.perf_counter() - start) / args.batches

    mesh = parallel.make_mesh()
    tx = make_optimizer(config.train)
    state, shardings = sharded_state(model, tx, config.seed, mesh)
    step = compile_train_step(model, tx, config.train, mesh, shardings)
    # Compile every bucket width the timed batches use, outside the timings.
    _, state = timed_steps(step, state, {b["tokens"].shape[1]: b for b in warm + kept}.values(),
                           mesh)
    in_memory, state = timed_steps(step, state, kept, mesh)
    batches = fresh()
    for _ in warm:
        next(batches)
    real, state = timed_steps(step, state, (next(batches) for _ in kept), mesh)
    emit("input_pipeline", {
        "dataset": f"shapes/{config.data.builder_config}", "batch": batch_size,
        "batches": args.batches,
        "pipeline_examples_per_second": round(batch_size / pipeline_seconds, 1),
        "step_examples_per_second": round(batch_size / in_memory, 1),
        "step_seconds_in_memory": round(in_memory, 4),
        "step_seconds_with_pipeline": round(real, 4),
        "pipeline_overhead": round(real / in_memory - 1, 3),
    })


if __name__ == "__main__":
    main()
