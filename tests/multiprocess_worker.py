"""One process of the multi-process test (run by tests/test_multiprocess.py, not by pytest).

Every process builds the same global batch, feeds its own rows, runs a few sharded train
steps on the mesh over all processes' devices, saves a checkpoint collectively, and process 0
writes the parameters to ``<out>/params.npz``.
"""

import sys

import numpy as np


def main(out_dir: str, steps: int) -> None:
    from show_attend_tell import parallel

    parallel.maybe_initialize_distributed()
    import jax

    from configs.shapes import get_config
    from show_attend_tell.checkpoints import Checkpoints
    from show_attend_tell.models.captioner import build_captioner
    from show_attend_tell.state import make_optimizer, sharded_state
    from show_attend_tell.train import compile_train_step

    config = get_config("smoke_hard")
    config.train.optimizer = "sgd"
    config.train.learning_rate = 0.1
    mesh = parallel.make_mesh()
    model = build_captioner(config.model, 12)
    tx = make_optimizer(config.train)
    state, shardings = sharded_state(model, tx, config.seed, mesh)
    step_fn = compile_train_step(model, tx, config.train, mesh, shardings)
    rng = np.random.default_rng(0)
    size = config.train.batch_size
    batch = {"image": rng.integers(0, 256, (size, 64, 64, 3), dtype=np.uint8),
             "tokens": rng.integers(1, 12, (size, 7)).astype(np.int32)}
    rows = size // jax.process_count()
    first = jax.process_index() * rows
    local = {k: v[first:first + rows] for k, v in batch.items()}
    for _ in range(steps):
        state, metrics = step_fn(state, parallel.global_batch(mesh, local))
    Checkpoints(out_dir).save(steps, state, {"process_count": jax.process_count()})
    if jax.process_index() == 0:
        params = {jax.tree_util.keystr(p): np.asarray(leaf)
                  for p, leaf in jax.tree_util.tree_leaves_with_path(state.params)}
        np.savez(f"{out_dir}/params.npz", loss=np.asarray(metrics["loss"]), **params)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
