"""A Flickr8k-shaped corpus made of shapes scenes, for a dress rehearsal of the real workflow.

``sat data rehearsal --out DIR`` writes what a Flickr8k user downloads, offline:

* ``DIR/dataset_flickr8k.json``: Karpathy's format (``images`` with ``filename``, ``imgid``,
  ``split`` train/val/test/restval, ``sentences`` with ``raw``, ``tokens``, ``sentid``);
* ``DIR/Flicker8k_Dataset/*.jpg``: photos at photo sizes (500×375, 333×500, 640×480, ...),
  each a 64 px shapes scene upscaled and JPEG-compressed, the scene filling the centred square
  and textured background filling the rest (what ``data/images.py``'s centre crop keeps);
* ``DIR/scenes.json``: per ``imgid`` the objects with their boxes in 0..1 of that centred
  square, so grounding (scene accuracy, pointing) can be scored on the captioner's output.

Captions are written the way people write them: capitals, commas, full stops, apostrophes
("There's", "it's"), hyphens ("computer-generated", "light-grey"), 5 per image, up to 28 PTB
tokens. Objects are named in salience order (large first, then left to right), as in the
shapes dataset's default. ``tokens`` hold the project's tokenisation of ``raw``.
"""

import argparse
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from show_attend_tell.caption_metrics import caption_scores
from show_attend_tell.data.shapes.captions import placement, relation, salience_order
from show_attend_tell.data.shapes.scene import SceneObject, render, sample_objects
from show_attend_tell.data.vocab import tokenize
from show_attend_tell.errors import InvalidInput
from show_attend_tell.grounding import load_objects, scene_correct

SCENE = 64  # px side of the rendered scene, as in the shapes dataset
PHOTO_SIZES = ((500, 375), (333, 500), (640, 480), (500, 333), (375, 500), (500, 500))
IMAGE_FOLDER = "Flicker8k_Dataset"


def _a(phrase: str) -> str:
    return f"a {phrase}"


def _listing(objects: list[SceneObject]) -> str:
    phrases = [_a(o.phrase) for o in objects]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def natural_captions(objects: list[SceneObject]) -> list[str]:
    """Five captions of a scene, each naming every object once, in salience order."""
    ordered = salience_order(objects)
    first, rest = ordered[0], ordered[1:]
    if rest:
        located = f"A {first.phrase} is {relation(first, rest[0])} {_a(rest[0].phrase)}"
        located += "".join(f", and there's also {_a(o.phrase)}" for o in rest[1:]) + "."
        seen = f"In the picture we can see {_a(first.phrase)}; it's next to {_listing(rest)}."
    else:
        located = f"A {first.phrase} sits {placement(first, SCENE, 1)} of the picture."
        seen = f"In the picture we can see {_a(first.phrase)}; it's {placement(first, SCENE, 0)}."
    listing = _listing(ordered)
    return [
        located,
        f"There's {listing}.",
        f"{listing[0].upper()}{listing[1:]}, on a grey background.",
        f"This simple, computer-generated picture, made for a dress rehearsal, shows {listing} "
        "on a light-grey background.",
        seen,
    ]


def _photo(rng: np.random.Generator, objects: list[SceneObject], width: int,
           height: int) -> tuple[np.ndarray, list[dict]]:
    """The scene as a ``width``×``height`` photo, and its objects' boxes in 0..1 of the centred
    square of side min(width, height)."""
    side = min(width, height)
    # Render on a square canvas wide enough for the long side at the scene's scale (a multiple
    # of 8 for the background texture), objects shifted to its centre, then cut the short axis.
    canvas = 8 * math.ceil(SCENE * max(width, height) / side / 8)
    offset = (canvas - SCENE) // 2
    shifted = [SceneObject(o.size, o.colour, o.shape,
                           tuple(v + offset for v in o.box)) for o in objects]
    pixels = render(rng, shifted, canvas)
    if width >= height:
        pixels, row_shift, col_shift = pixels[offset:offset + SCENE], offset, 0
    else:
        pixels, row_shift, col_shift = pixels[:, offset:offset + SCENE], 0, offset
    photo = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BICUBIC))
    # Box corners in photo pixels, then relative to the centred square the crop keeps.
    scale_y, scale_x = height / pixels.shape[0], width / pixels.shape[1]
    top, left = (height - side) / 2, (width - side) / 2
    boxes = []
    for obj, moved in zip(objects, shifted, strict=True):
        y0, x0, y1, x1 = moved.box
        y0, y1 = (y0 - row_shift) * scale_y, (y1 - row_shift) * scale_y
        x0, x1 = (x0 - col_shift) * scale_x, (x1 - col_shift) * scale_x
        boxes.append({"bbox": [(y0 - top) / side, (x0 - left) / side, (y1 - top) / side,
                               (x1 - left) / side],
                      "size": obj.size, "colour": obj.colour, "shape": obj.shape})
    return photo, boxes


def split_of(index: int, num_images: int, num_val: int, num_test: int) -> str:
    """Karpathy's layout: the last images are test, before them val; every 10th train image
    is ``restval`` (COCO's name; Flickr builders treat it as its own split)."""
    if index >= num_images - num_test:
        return "test"
    if index >= num_images - num_test - num_val:
        return "val"
    return "restval" if index % 10 == 9 else "train"


def write_corpus(out, num_images: int = 1500, num_val: int = 150, num_test: int = 200,
                 seed: int = 0, quality: int = 85) -> Path:
    """Write the corpus (see the module doc) into ``out``; returns the JSON's path. Refuses a
    folder that already holds a corpus rather than mixing two."""
    out = Path(out)
    json_path = out / "dataset_flickr8k.json"
    if json_path.exists():
        raise InvalidInput(f"{json_path}: already exists; remove it or choose another --out")
    if num_val + num_test >= num_images:
        raise InvalidInput(f"--num_images {num_images} leaves no training images after "
                         f"{num_val} val and {num_test} test")
    (out / IMAGE_FOLDER).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries, scenes = [], {}
    for index in range(num_images):
        objects = sample_objects(rng, SCENE)
        width, height = PHOTO_SIZES[index % len(PHOTO_SIZES)]
        pixels, boxes = _photo(rng, objects, width, height)
        filename = f"{1000000 + index}_{width}x{height}.jpg"
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        (out / IMAGE_FOLDER / filename).write_bytes(buffer.getvalue())
        sentences = [{"raw": raw, "tokens": tokenize(raw), "imgid": index, "sentid": 5 * index + j}
                     for j, raw in enumerate(natural_captions(objects))]
        entries.append({"filename": filename, "imgid": index,
                        "split": split_of(index, num_images, num_val, num_test),
                        "sentences": sentences, "sentids": [s["sentid"] for s in sentences]})
        scenes[str(index)] = {"filename": filename, "objects": boxes}
    (out / "scenes.json").write_text(json.dumps(scenes))
    json_path.write_text(json.dumps({"dataset": "flickr8k", "images": entries}))
    return json_path


def blind_baseline(corpus_json, eval_json) -> dict:
    """What the evaluated captions score against the references (and objects) of *another*
    test image, each image paired with the next: a model that ignored its image would score
    about this. Returns BLEU-4, CIDEr and scene accuracy (×100)."""

    corpus_json = Path(corpus_json)
    references = {entry["imgid"]: [s["raw"] for s in entry["sentences"]]
                  for entry in json.loads(corpus_json.read_text())["images"]}
    objects = load_objects(corpus_json.parent / "scenes.json")
    captions = json.loads(Path(eval_json).read_text())["captions"]
    ids = [c["image_id"] for c in captions]
    shifted = ids[1:] + ids[:1]
    candidates = {other: c["caption"] for other, c in zip(shifted, captions, strict=True)}
    scores = caption_scores({i: references[i] for i in ids}, candidates, meteor=False)
    scene = np.mean([scene_correct(candidates[i].split(), objects[i]) for i in ids])
    return {"BLEU-4": scores["BLEU-4"], "CIDEr": scores["CIDEr"],
            "scene_accuracy": 100.0 * float(scene)}


def main(argv: list[str] | None = None) -> None:
    """``python -m show_attend_tell.data.rehearsal CORPUS_JSON EVAL_JSON``: the blind baseline."""

    parser = argparse.ArgumentParser(description=blind_baseline.__doc__.split(":")[0])
    parser.add_argument("corpus_json", help="the rehearsal's dataset_flickr8k.json")
    parser.add_argument("eval_json", help="a report sat evaluate wrote (eval/*.json)")
    args = parser.parse_args(argv)
    scores = blind_baseline(args.corpus_json, args.eval_json)
    print("captions scored against another image's references (image ignored): "
          + ", ".join(f"{name} {value:.2f}" for name, value in scores.items()))


if __name__ == "__main__":
    main()
