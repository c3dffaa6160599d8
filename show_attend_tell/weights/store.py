"""Converted weights as one ``.npz``: ``"<layer>/<param>"`` -> float32 array, plus
``"__encoder__"`` naming the registry encoder the weights fit (a 0-d string array).

Readable without this package (``numpy.load``); layer and parameter names are the flax ones
of :mod:`show_attend_tell.models` (``block5_conv4/kernel`` ``[3, 3, 512, 512]``, HWIO).
"""

import io

import numpy as np

from show_attend_tell import paths
from show_attend_tell.errors import InvalidInput, MissingInput
from show_attend_tell.paths import Path

ENCODER_KEY = "__encoder__"
SHOWN = 6  # names listed per kind of mismatch before "... and N more"


class WeightsError(InvalidInput):
    """A weights file that is missing, of another encoder, or does not fit the model."""


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        flat.update(flatten(value, f"{name}/") if isinstance(value, dict) else {name: value})
    return flat


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def save_weights(path: str | Path, encoder: str, weights: dict[str, np.ndarray],
                 overwrite: bool = False) -> Path:
    """Write ``weights`` (flat names) for ``encoder``; an existing file is kept unless
    ``overwrite``."""
    path = Path(path)
    if path.suffix != ".npz":
        raise WeightsError(f"{path}: converted weights are written as .npz; name the file *.npz")
    if path.exists() and not overwrite:
        raise WeightsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.asarray(value, np.float32) for name, value in weights.items()}
    buffer = io.BytesIO()
    np.savez(buffer, **{ENCODER_KEY: np.array(encoder)}, **arrays)
    paths.write_atomic(path, buffer.getvalue())  # an interrupted run leaves no half file
    return path


def load_weights(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """(encoder name, flat weights) of a file written by :func:`save_weights`."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"encoder weights {path} not found (config.model.encoder.weights; "
                                "convert them with 'sat weights import')")
    with path.open("rb") as handle, np.load(handle, allow_pickle=False) as file:
        if ENCODER_KEY not in file:
            raise WeightsError(f"{path} has no {ENCODER_KEY!r} entry; it was not written by "
                               "'sat weights import'")
        weights = {name: file[name] for name in file.files if name != ENCODER_KEY}
        return str(file[ENCODER_KEY]), weights


def _listed(names: list[str]) -> str:
    more = f" ... and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def fit_weights(model_params: dict, weights: dict[str, np.ndarray], source: str) -> dict:
    """``weights`` as a tree shaped like ``model_params`` (arrays or shape structs); any
    missing, extra or mis-shaped parameter is an error naming them."""
    expected = flatten(model_params)
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    misshaped = sorted(f"{name} {tuple(weights[name].shape)} (model {tuple(expected[name].shape)})"
                       for name in set(expected) & set(weights)
                       if tuple(weights[name].shape) != tuple(expected[name].shape))
    problems = [f"{kind}: {_listed(names)}" for kind, names in
                (("missing", missing), ("extra", extra), ("mis-shaped", misshaped)) if names]
    if problems:
        raise WeightsError(f"{source} does not fit the encoder: {'; '.join(problems)}")
    return unflatten({name: np.asarray(weights[name], expected[name].dtype) for name in expected})
