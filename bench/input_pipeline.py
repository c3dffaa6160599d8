"""The shapes TFDS input pipeline against the train step that consumes it: examples/s of the
pipeline alone, and the shapes train step (soft) fed by the pipeline vs. by the same batches
already in memory (the two alternated ``--rounds`` times, each step's fastest run kept). One
JSON line.

  .venv/bin/python bench/input_pipeline.py [--batches 20 --rounds 2 --processes 1]

``--processes P``: the pipeline alone is process 0 of P (its rows per second). Every process
forms the whole global batch and keeps its rows (data order independent of P), so a process
does the input work of a 1-process run whatever P.

Builds the shapes dataset in ``--data_dir`` first where it is not there yet (about 15 s; the
same data ``make demo`` builds), so ``make bench`` runs on a fresh clone.
"""

import argparse
import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.cases import shapes_config  # noqa: E402
from bench.common import emit  # noqa: E402
from show_attend_tell import parallel  # noqa: E402
from show_attend_tell.data import pipeline  # noqa: E402
from show_attend_tell.data.build import build_dataset  # noqa: E402
from show_attend_tell.models.captioner import build_captioner  # noqa: E402
from show_attend_tell.state import make_optimizer, sharded_state  # noqa: E402
from show_attend_tell.train import compile_train_step  # noqa: E402


def step_times(step, state, batches, mesh):
    """Seconds of each step of the training loop's pattern (fetch, put, run), blocking after
    each step so steps pair up across runs; tf.data keeps prefetching meanwhile."""
    times = []
    for batch in batches:
        start = time.perf_counter()
        state, metrics = step(state, parallel.global_batch(mesh, batch))
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return np.array(times), state


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data_dir", default="data/tfds")
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    config, _ = shapes_config("soft")
    config.data.data_dir = args.data_dir
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON line
        build_dataset(config.data.name, args.data_dir, config.data.builder_config)
    batch_size = config.train.batch_size
    vocab = pipeline.build_vocabulary(config)
    model = build_captioner(config.model, len(vocab))
    image_size = model.encoder.image_size

    def fresh():
        return pipeline.train_iterator(config, vocab, batch_size, image_size)

    # The pipeline alone (process 0 of --processes), after its shuffle buffer has filled.
    process_zero = pipeline.train_iterator(config, vocab, batch_size, image_size,
                                           process_index=0, process_count=args.processes)
    for _ in range(5):
        next(process_zero)
    start = time.perf_counter()
    rows = sum(len(next(process_zero)["tokens"]) for _ in range(args.batches))
    pipeline_seconds = time.perf_counter() - start
    batches = fresh()
    warm = [next(batches) for _ in range(5)]
    kept = [next(batches) for _ in range(args.batches)]

    mesh = parallel.make_mesh()
    tx = make_optimizer(config.train)
    state, shardings = sharded_state(model, tx, config.seed, mesh)
    step = compile_train_step(model, tx, config.train, mesh, shardings)
    # Compile every bucket width the timed batches use, outside the timings.
    _, state = step_times(step, state, {b["tokens"].shape[1]: b for b in warm + kept}.values(),
                          mesh)
    # Alternate the two feeds and keep each step's fastest run: other load on the machine
    # then inflates neither side more than the other.
    in_memory, real = np.full(len(kept), np.inf), np.full(len(kept), np.inf)
    for _ in range(args.rounds):
        times, state = step_times(step, state, kept, mesh)
        in_memory = np.minimum(in_memory, times)
        batches = fresh()
        for _ in warm:
            next(batches)
        times, state = step_times(step, state, (next(batches) for _ in kept), mesh)
        real = np.minimum(real, times)
    in_memory, real = float(in_memory.mean()), float(real.mean())
    emit("input_pipeline", {
        "dataset": f"shapes/{config.data.builder_config}", "batch": batch_size,
        "batches": args.batches, "processes": args.processes,
        "pipeline_examples_per_second": round(rows / pipeline_seconds, 1),
        "step_examples_per_second": round(batch_size / in_memory, 1),
        "step_seconds_in_memory": round(in_memory, 4),
        "step_seconds_with_pipeline": round(real, 4),
        "pipeline_overhead": round(real / in_memory - 1, 3),
    })


if __name__ == "__main__":
    main()
