"""What checkpoint digests cost: a save and a restore of a paper-scale train state, and the
part of each spent writing or verifying the SHA-256 digest of every file.

Cases: ``coco`` (configs/coco.py:soft as trained: VGG-19 frozen, H 1800, V 10000, Adam) and
``paper`` (bench/cases.py: the decoder on precomputed annotations, H 512). Files are read back
from the page cache right after the save, so the figures are hashing and orbax, not the disk.

  .venv/bin/python bench/checkpoint_integrity.py [coco|paper ...]
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402

from bench.cases import paper_config  # noqa: E402
from bench.common import emit  # noqa: E402
from show_attend_tell import digests, parallel  # noqa: E402
from show_attend_tell.checkpoints import Checkpoints  # noqa: E402
from show_attend_tell.config_loading import load_config  # noqa: E402
from show_attend_tell.models.captioner import build_captioner  # noqa: E402
from show_attend_tell.state import make_optimizer, sharded_state  # noqa: E402


def state_of(case: str):
    if case == "coco":
        config, vocab = load_config("configs/coco.py:soft"), 10_000
    else:
        config, sizes = paper_config("soft")
        vocab = sizes["vocab"]
    model = build_captioner(config.model, vocab)
    tx = make_optimizer(config.train, config.model.encoder)
    state, _ = sharded_state(model, tx, 0, parallel.make_mesh())
    return jax.block_until_ready(state)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(case: str, repeats: int = 3) -> dict:
    state = state_of(case)
    nbytes = sum(leaf.nbytes for leaf in jax.tree.leaves(state))
    saves, hashes, restores, verifies = [], [], [], []
    for repeat in range(repeats):
        folder = Path(tempfile.mkdtemp(prefix="sat_integrity_"))
        try:
            checkpoints = Checkpoints(folder, keep=1)
            saves.append(timed(lambda r=repeat, c=checkpoints: c.save(r + 1, state, {})))
            step_dir = checkpoints.step_dir(repeat + 1)
            hashes.append(timed(lambda d=step_dir: digests.write_digest(d)))
            verifies.append(timed(lambda d=step_dir: digests.verify_files(d)))
            reader = Checkpoints(folder, read_only=True)
            restores.append(timed(lambda r=repeat, c=reader: jax.block_until_ready(
                c.restore_state(r + 1, state))))
            checkpoints.close()
            reader.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    median = statistics.median
    return {"case": case, "state_mb": round(nbytes / 1e6, 1),
            "save_s": round(median(saves), 3), "of_which_digest_s": round(median(hashes), 3),
            "restore_s": round(median(restores), 3),
            "of_which_verify_s": round(median(verifies), 3),
            "hash_mb_per_s": round(nbytes / 1e6 / median(verifies), 1)}


def main():
    for case in sys.argv[1:] or ["coco", "paper"]:
        emit("checkpoint_integrity", measure(case))


if __name__ == "__main__":
    main()
