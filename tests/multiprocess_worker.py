"""One process of the multi-process test (run by tests/test_multiprocess.py, not by pytest).

  multiprocess_worker.py OUT_DIR WORKDIR SAT-OVERRIDES...

1. Decodes the test split with fresh parameters (``config.seed``) on a mesh whose devices
   alternate between processes (not grouped by process, as nothing guarantees they are);
   process 0 writes each image's attention maps to ``<out>/eval.npz``, keyed by image id.
2. Runs ``sat train`` on WORKDIR through the real input pipeline; its exit status is this
   process's.
"""

import sys

import numpy as np

# Soft attention: no sampled locations, which a last-bit difference between the topologies'
# reductions could flip.
CONFIG = "configs/shapes.py:smoke"


def interleaved_devices():
    """The devices ordered p0d0, p1d0, p0d1, p1d1, ...: each process's rows of a global
    batch land in non-contiguous places."""
    import jax

    by_process = [[d for d in jax.devices() if d.process_index == p]
                  for p in range(jax.process_count())]
    return [device for group in zip(*by_process, strict=True) for device in group]


def decode_alphas(config, mesh) -> dict[str, np.ndarray]:
    """Image id -> attention maps ``[T, L]`` of greedy decoding with fresh parameters."""
    from show_attend_tell.data import pipeline
    from show_attend_tell.evaluation import decode_split
    from show_attend_tell.models.captioner import build_captioner
    from show_attend_tell.state import make_optimizer, sharded_state

    vocab = pipeline.build_vocabulary(config)
    model = build_captioner(config.model, len(vocab))
    state, _ = sharded_state(model, make_optimizer(config.train), config.seed, mesh)
    results = decode_split(model, state.params, config, vocab, config.data.test_split, mesh,
                           beam_size=1, progress=False)
    return {str(r["image_id"]): r["alphas"] for r in results}


def main(out_dir: str, workdir: str, overrides: list[str]) -> None:
    from show_attend_tell import parallel

    parallel.maybe_initialize_distributed()
    import jax

    from show_attend_tell.cli import main as sat
    from show_attend_tell.config_loading import config_from_args

    config = config_from_args(CONFIG, overrides)
    alphas = decode_alphas(config, parallel.make_mesh(interleaved_devices()))
    if jax.process_index() == 0:
        np.savez(f"{out_dir}/eval.npz", **alphas)
    sat(["train", "--config", CONFIG, "--workdir", workdir,
         *(f"--config.{item}" for item in overrides)])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
