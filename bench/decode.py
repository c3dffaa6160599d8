"""Caption decoding speed at paper scale: beam search (K 3) and greedy, 64 images, 20 steps,
on precomputed annotations (L 196, D 2048), E = A = H = 512, V 10000. One JSON line per search:
median wall and CPU seconds (the process's, all threads) of ``--repeats`` runs; with
``--profile``, the milliseconds of one more run by kind of work (bench/decode_profile.py).

  .venv/bin/python bench/decode.py [--images 64 --steps 20 --beams 3,1] [--profile]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.cases import paper_config  # noqa: E402
from bench.common import emit, matmul_flops, matmul_gflops  # noqa: E402
from bench.decode_profile import profile_ms  # noqa: E402
from show_attend_tell import decoding  # noqa: E402
from show_attend_tell.models.captioner import Captioner, build_captioner  # noqa: E402


def search_flops(model, variables, annotations, rows: int, steps: int) -> float:
    """Matmul FLOPs of ``prepare`` plus ``steps`` decoder steps on ``rows`` hypotheses."""
    cache = model.apply(variables, annotations, method=Captioner.prepare)
    prepare = matmul_flops(lambda a: model.apply(variables, a, method=Captioner.prepare),
                           annotations)
    beams = rows // annotations.shape[0]
    wide = cache._replace(carry=jax.tree.map(lambda x: jnp.repeat(x, beams, axis=0), cache.carry))
    step = matmul_flops(
        lambda c: model.apply(variables, c, c.carry, jnp.zeros(rows, jnp.int32),
                              method=Captioner.step), wide)
    return prepare + steps * step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--beams", default="3,1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true",
                        help="add the milliseconds of one run by kind of work")
    args = parser.parse_args()
    config, sizes = paper_config("soft")
    model = build_captioner(config.model, sizes["vocab"])
    rng = np.random.default_rng(0)
    annotations = jnp.asarray(
        rng.normal(size=(args.images, *sizes["annotations"])).astype(np.float32))
    variables = model.init(jax.random.key(0), annotations[:1], jnp.zeros((1, 2), jnp.int32))
    peak = matmul_gflops()
    for beam in (int(b) for b in args.beams.split(",")):
        compiled = decoding._search.lower(model, variables, annotations, beam, args.steps, 0.0,
                                          None, encode=False).compile()

        def run(compiled=compiled):
            return jax.block_until_ready(compiled(variables, annotations, 0.0, None))

        run()
        wall, cpu = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        seconds = statistics.median(wall)
        words = float(np.asarray(run().lengths).mean())
        flops = search_flops(model, variables, annotations, args.images * beam, args.steps)
        figures = {
            "search": "greedy" if beam == 1 else "beam", "beam_size": beam,
            "images": args.images, "max_steps": args.steps, "mean_words": round(words, 1),
            "seconds_median": round(seconds, 3), "seconds_min": round(min(wall), 3),
            "cpu_seconds_median": round(statistics.median(cpu), 3),
            "images_per_second": round(args.images / seconds, 1),
            "gflop_per_image": round(flops / args.images / 1e9, 2),
            "achieved_gflops": round(flops / seconds / 1e9, 1),
            "matmul_gflops": round(peak, 1),
        }
        if args.profile:
            figures["profile_ms"] = profile_ms(run, compiled.as_text())
        emit("decode", figures)


if __name__ == "__main__":
    main()
