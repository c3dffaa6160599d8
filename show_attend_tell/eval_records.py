"""One test image's entry in an eval JSON (``eval/<split>_<step>.json``, key ``captions``):
the caption, its attention stored compactly, and for shapes the scene's objects and grounding.

Shape letters: T caption words, L attention cells (a G×G grid flattened row-major).

Attention is quantised per word: ``q_t = round(255 · α_t / max(α_t))`` as uint8 and
``peak_t = max(α_t)``; ``q`` ``[T, L]`` is base64 in row-major order. Decoding gives
``α_t ≈ peak_t · q_t / 255`` (error at most half a step, 0.2 % of the word's peak), so an image
of T words costs about 4/3 · T · L bytes (a 10-word caption on an 8×8 grid: ~860 bytes;
on a 14×14 grid: ~2.6 KB).
"""

import base64

import numpy as np

from show_attend_tell.errors import InvalidInput
from show_attend_tell.grounding import image_grounding


def quantise_alphas(alphas: np.ndarray) -> dict:
    """α ``[T, L]`` -> ``{"cells": L, "peak": [T floats], "q": base64 of uint8 [T, L]}``."""
    alphas = np.asarray(alphas, np.float64)
    if alphas.ndim != 2:
        raise ValueError(f"alphas must be [T, L], got shape {alphas.shape}")
    peak = alphas.max(axis=1, initial=0.0)
    scale = np.where(peak > 0, peak, 1.0)[:, None]
    q = np.clip(np.rint(255.0 * alphas / scale), 0, 255).astype(np.uint8)
    return {"cells": int(alphas.shape[1]), "peak": [round(float(p), 6) for p in peak],
            "q": base64.b64encode(q.tobytes()).decode("ascii")}


def dequantise_alphas(stored: dict) -> np.ndarray:
    """The inverse of :func:`quantise_alphas`: float α ``[T, L]``."""
    q = np.frombuffer(base64.b64decode(stored["q"]), np.uint8)
    peak = np.asarray(stored["peak"], np.float64)
    if q.size != len(peak) * stored["cells"]:
        raise InvalidInput(f"attention holds {q.size} bytes, expected {len(peak)} words × "
                         f"{stored['cells']} cells")
    return q.reshape(len(peak), stored["cells"]) * (peak[:, None] / 255.0)


def image_record(result: dict) -> dict:
    """An entry of ``decode_split``'s results (``image_id``, ``words``, ``alphas`` ``[T, L]``,
    ``locations`` ``[T]``, ``objects`` or None) -> the JSON-ready record of that image."""
    words = result["words"]
    alphas = np.asarray(result["alphas"])[:len(words)]
    record = {"image_id": int(result["image_id"]), "caption": " ".join(words),
              "attention": quantise_alphas(alphas),
              "locations": [int(v) for v in np.asarray(result["locations"])[:len(words)]]}
    if result.get("objects") is not None:
        record["objects"] = [{"size": o["size"], "colour": o["colour"], "shape": o["shape"],
                              "bbox": [round(float(v), 4) for v in o["bbox"]]}
                             for o in result["objects"]]
        record.update(image_grounding(words, alphas, result["objects"]))
    return record
