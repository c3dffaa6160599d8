"""``train.init_from = WORKDIR[:best|latest|STEP]``: start a run from another run's parameters
(and vocabulary), with a fresh optimizer and step — e.g. self-critical training from a
cross-entropy run."""

import jax
from flax.serialization import from_state_dict, to_state_dict

from show_attend_tell.checkpoints import CheckpointError, Checkpoints
from show_attend_tell.data.vocab import Vocabulary
from show_attend_tell.paths import Path

WHICH = ("best", "latest")


def parse(spec: str) -> tuple[Path, str]:
    """``"runs/x:best"`` -> (runs/x, "best"); no suffix means ``latest``."""
    path, sep, which = spec.rpartition(":")
    if sep and (which in WHICH or which.isdigit()):
        return Path(path), which
    return Path(spec), "latest"


def source_vocabulary(spec: str) -> Vocabulary:
    """The source run's vocabulary (its output layer is tied to it)."""
    path, which = parse(spec)
    checkpoints = _open(path)
    meta = checkpoints.restore_meta(checkpoints.resolve(which))
    checkpoints.close()
    return Vocabulary.from_dict(meta["vocabulary"])


def _open(path: Path) -> Checkpoints:
    try:
        return Checkpoints(path, read_only=True)
    except CheckpointError as error:
        raise CheckpointError(f"config.train.init_from: {error}") from error


def load_params(spec: str, params, shardings):
    """The source checkpoint's parameters in the structure and shardings of ``params`` (this
    run's freshly initialised ones) -> (params, "WORKDIR:STEP" resolved)."""
    path, which = parse(spec)
    checkpoints = _open(path)
    step = checkpoints.resolve(which)
    saved = checkpoints.manager.restore(step)["state"]["params"]
    checkpoints.close()
    wanted = {jax.tree_util.keystr(p): leaf.shape
              for p, leaf in jax.tree_util.tree_leaves_with_path(to_state_dict(params))}
    found = {jax.tree_util.keystr(p): leaf.shape
             for p, leaf in jax.tree_util.tree_leaves_with_path(saved)}
    if wanted != found:
        differing = sorted(k for k in set(wanted) | set(found) if wanted.get(k) != found.get(k))
        raise CheckpointError(
            f"config.train.init_from={spec}: step {step}'s parameters do not fit this model "
            f"({len(differing)} differ, e.g. {differing[:3]}); use the source run's model config")
    restored = from_state_dict(params, saved)
    restored = jax.tree.map(lambda x, s: jax.device_put(x, s), restored, shardings)
    return restored, f"{path}:{step}"
