"""Grounding metrics on the shapes dataset: does the caption name the scene, and does the
attention look at the object it names?

Shape letters: T generated steps, L = G×G attention cells (a CNN feature map flattened
row-major from the top-left), G grid side.

Per image the inputs are the generated words, their attention maps α ``[T, L]`` (α_t of
eq. 5 for the step that emitted word t) and the ground-truth objects, each a dict
``{"bbox": (ymin, xmin, ymax, xmax) in 0..1, "size", "colour", "shape"}``. Captions name an
object with the phrase ``"<size> <colour> <shape>"`` (three consecutive words).

* scene accuracy: the caption's phrases are exactly the multiset of the image's objects.
* pointing accuracy: for each phrase naming exactly one object of the image, the α of the
  phrase's three steps is averaged; a hit when the centre of its argmax cell lies in the
  object's box grown by half a cell on each side (a cell overlapping a small object counts).
* attention mass in box: for the same phrases, the averaged α summed over the cells whose
  centres lie in the (ungrown) box.
"""

import json
import math
from collections import Counter

import numpy as np

from show_attend_tell.data.shapes.attributes import COLOURS, SHAPES, SIZES
from show_attend_tell.errors import InvalidInput
from show_attend_tell.paths import Path

Phrase = tuple[str, str, str]  # (size, colour, shape)


def object_phrases(words: list[str]) -> list[tuple[int, Phrase]]:
    """(index of the first word, (size, colour, shape)) of every object phrase, left to right."""
    phrases, i = [], 0
    while i + 2 < len(words):
        size, colour, shape = words[i:i + 3]
        if size in SIZES and colour in COLOURS and shape in SHAPES:
            phrases.append((i, (size, colour, shape)))
            i += 3
        else:
            i += 1
    return phrases


def _identity(obj: dict) -> Phrase:
    return obj["size"], obj["colour"], obj["shape"]


def scene_correct(words: list[str], objects: list[dict]) -> bool:
    """The caption names each object exactly as often as it occurs, and nothing else."""
    named = Counter(phrase for _, phrase in object_phrases(words))
    return named == Counter(_identity(obj) for obj in objects)


def cell_centres(num_cells: int) -> np.ndarray:
    """``[L, 2]`` (y, x) centres in 0..1 of a G×G grid flattened row-major (L = G²)."""
    side = math.isqrt(num_cells)
    if side * side != num_cells:
        raise InvalidInput(f"attention over {num_cells} cells is not a square grid")
    rows, cols = np.divmod(np.arange(num_cells), side)
    return np.stack([(rows + 0.5) / side, (cols + 0.5) / side], axis=1)


def _inside(points: np.ndarray, bbox, margin: float = 0.0) -> np.ndarray:
    """Which (y, x) points ``[N, 2]`` lie in ``bbox`` grown by ``margin`` on each side."""
    ymin, xmin, ymax, xmax = (float(v) for v in bbox)
    y, x = points[:, 0], points[:, 1]
    return ((y >= ymin - margin) & (y <= ymax + margin)
            & (x >= xmin - margin) & (x <= xmax + margin))


def point_at(attention: np.ndarray, bbox) -> tuple[bool, float]:
    """One averaged map ``[L]`` against one box -> (pointing hit, attention mass in the box)."""
    centres = cell_centres(attention.shape[-1])
    half_cell = 0.5 / math.isqrt(attention.shape[-1])
    hit = bool(_inside(centres[int(np.argmax(attention))][None], bbox, half_cell)[0])
    mass = float(attention[_inside(centres, bbox)].sum())
    return hit, mass


def image_grounding(words: list[str], alphas: np.ndarray, objects: list[dict]) -> dict:
    """Per-image results: ``scene_correct``, and per phrase its grounding (or why it is skipped).

    Returns ``{"scene_correct": bool, "phrases": [{"phrase", "start", "status", "hit",
    "mass"}]}`` where status is ``"scored"``, ``"ambiguous"`` (names several objects) or
    ``"unmatched"`` (names none); hit and mass are None unless scored.
    """
    alphas = np.asarray(alphas, np.float64)
    if alphas.ndim != 2 or alphas.shape[0] < len(words):
        raise InvalidInput(f"alphas {alphas.shape} must be [T ≥ {len(words)} words, L]")
    results = []
    for start, phrase in object_phrases(words):
        matches = [obj for obj in objects if _identity(obj) == phrase]
        entry = {"phrase": " ".join(phrase), "start": start, "hit": None, "mass": None}
        if len(matches) == 1:
            entry["hit"], entry["mass"] = point_at(alphas[start:start + 3].mean(axis=0),
                                                   matches[0]["bbox"])
        entry["status"] = {0: "unmatched", 1: "scored"}.get(len(matches), "ambiguous")
        results.append(entry)
    return {"scene_correct": scene_correct(words, objects), "phrases": results}


def grounding_scores(examples: list[dict]) -> dict:
    """Aggregate over images; each example has ``words``, ``alphas`` ``[T, L]``, ``objects``.

    Returns percentages (×100) ``scene_accuracy``, ``pointing_accuracy`` and
    ``attention_mass_in_box`` (the last two None when no phrase could be scored), and the
    counts ``grounding_images``, ``phrases_scored``, ``phrases_ambiguous``, ``phrases_unmatched``.
    """
    per_image = [image_grounding(e["words"], e["alphas"], e["objects"]) for e in examples]
    phrases = [p for image in per_image for p in image["phrases"]]
    scored = [p for p in phrases if p["status"] == "scored"]
    return {
        "scene_accuracy": (100.0 * float(np.mean([i["scene_correct"] for i in per_image]))
                           if per_image else None),
        "pointing_accuracy": (100.0 * float(np.mean([p["hit"] for p in scored]))
                              if scored else None),
        "attention_mass_in_box": (100.0 * float(np.mean([p["mass"] for p in scored]))
                                  if scored else None),
        "grounding_images": len(per_image),
        "phrases_scored": len(scored),
        "phrases_ambiguous": sum(p["status"] == "ambiguous" for p in phrases),
        "phrases_unmatched": sum(p["status"] == "unmatched" for p in phrases),
    }


def load_objects(path) -> dict[int, list[dict]]:
    """Ground-truth objects of a dataset without them (``sat evaluate --objects``): a JSON file
    ``{"<image id>": {"objects": [{"bbox": [ymin, xmin, ymax, xmax] in 0..1 of the encoder's
    centre crop, "size", "colour", "shape"}, ...]}, ...}`` -> image id -> objects."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        objects = {int(key): [{**obj, "bbox": tuple(float(v) for v in obj["bbox"])}
                              for obj in value["objects"]] for key, value in data.items()}
    except (OSError, json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as error:
        raise InvalidInput(f"{path}: expected a JSON object of image id -> {{'objects': [{{'bbox', "
                         f"'size', 'colour', 'shape'}}]}} ({type(error).__name__}: {error})") from error
    return objects
