"""Train-step speed: paper-scale decoder on precomputed annotations (soft, hard) and the
shapes config with its encoder. Prints one JSON line per case.

  .venv/bin/python bench/train_step.py [--cases paper_soft,paper_hard,shapes_soft]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import compiled_flops, emit, matmul_gflops, median_seconds  # noqa: E402
from configs.shapes import get_config  # noqa: E402
from show_attend_tell import parallel  # noqa: E402
from show_attend_tell.models.captioner import build_captioner  # noqa: E402
from show_attend_tell.train import compile_train_step, make_optimizer, sharded_state  # noqa: E402


def paper_config(attention: str, length: int = 22):
    """Paper scale: B 32, 14×14 = 196 annotations of D 2048, E = A = H = 512, V 10000."""
    config = get_config(attention)
    config.model.encoder.name = "precomputed"
    config.model.encoder.kwargs = {"num_annotations": 196, "annotation_dim": 2048}
    config.model.embed_dim = config.model.attention_dim = config.model.hidden_dim = 512
    config.model.dropout = 0.5
    config.train.batch_size = 32
    return config, {"vocab": 10_000, "annotations": (196, 2048), "length": length}


def shapes_config(attention: str):
    return get_config(attention), {"vocab": 40, "image": (64, 64, 3), "length": 14}


def fake_batch(config, sizes, rng):
    batch = config.train.batch_size
    if "image" in sizes:
        inputs = rng.integers(0, 256, (batch, *sizes["image"]), dtype=np.uint8)
    else:
        inputs = rng.normal(size=(batch, *sizes["annotations"])).astype(np.float32)
    tokens = rng.integers(3, sizes["vocab"], (batch, sizes["length"] + 1)).astype(np.int32)
    return {"image": inputs, "tokens": tokens}


def build(config, sizes):
    mesh = parallel.make_mesh()
    model = build_captioner(config.model, sizes["vocab"])
    tx = make_optimizer(config.train)
    state, shardings = sharded_state(model, tx, config.seed, mesh)
    step = compile_train_step(model, tx, config.train, mesh, shardings)
    return mesh, state, step, fake_batch(config, sizes, np.random.default_rng(0))


def run_case(name: str, config, sizes, peak: float) -> None:
    mesh, state, step, batch = build(config, sizes)
    device_batch = parallel.global_batch(mesh, batch)
    start = time.perf_counter()
    compiled = step.lower(state, device_batch).compile()
    compile_seconds = time.perf_counter() - start
    flops = compiled_flops(compiled)
    holder = {"state": state}

    def one():
        holder["state"], metrics = compiled(holder["state"], device_batch)
        jax.block_until_ready(metrics)

    seconds = median_seconds(one, warmup=2, repeats=10)
    achieved = flops / seconds / 1e9
    emit("train_step", {
        "case": name, "batch": config.train.batch_size, "caption_length": sizes["length"],
        "step_seconds_median": round(seconds, 4),
        "images_per_second": round(config.train.batch_size / seconds, 1),
        "gflop_per_step": round(flops / 1e9, 2), "achieved_gflops": round(achieved, 1),
        "matmul_gflops": round(peak, 1), "mfu": round(achieved / peak, 3),
        "compile_seconds": round(compile_seconds, 1),
    })


CASES = {
    "paper_soft": lambda: paper_config("soft"),
    "paper_hard": lambda: paper_config("hard"),
    "shapes_soft": lambda: shapes_config("soft"),
    "shapes_hard": lambda: shapes_config("hard"),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    peak = matmul_gflops()
    for name in args.cases.split(","):
        config, sizes = CASES[name]()
        run_case(name, config, sizes, peak)


if __name__ == "__main__":
    main()
