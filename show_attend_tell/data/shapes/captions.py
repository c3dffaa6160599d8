"""Reference captions of a shapes scene: a small, regular grammar.

Every object is named as ``"<size> <colour> <shape>"`` after ``"a"``; a caption lists all
objects (in a random order), or starts with ``"there is"``, or relates the first two objects
spatially (``"to the left of"``, ``"to the right of"``, ``"above"``, ``"below"``). A lone
object is placed in the image instead (``"on the left"``, ``"at the top"``...).

Object order is ``"shuffled"`` (a new order per caption) or ``"salience"`` (large before small,
then left to right, the same in every caption). Shuffled order leaves the first word of each
phrase unpredictable from the image, and the paper's attention (eq. 4) is computed from
``h_{t-1}``, before the emitted size word is read: so the colour step cannot know which object
the sampled size word named, and models trained on shuffled captions mix attributes across
objects. Salience order is what real captions do (the main object first).
"""

import numpy as np

from show_attend_tell.data.shapes.scene import SceneObject
from show_attend_tell.errors import InvalidInput

CAPTIONS_PER_IMAGE = 5
ORDERS = ("shuffled", "salience")


def relation(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` is relative to ``b``, along the axis on which their centres differ most."""
    dy = (a.box[0] + a.box[2]) - (b.box[0] + b.box[2])
    dx = (a.box[1] + a.box[3]) - (b.box[1] + b.box[3])
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def placement(obj: SceneObject, image_size: int, axis: int) -> str:
    """Which half of the image the centre of ``obj`` is in, along ``axis`` (0: y, 1: x)."""
    centre = obj.box[axis] + obj.box[axis + 2]
    if axis == 0:
        return "at the top" if centre < image_size else "at the bottom"
    return "on the left" if centre < image_size else "on the right"


def _listing(objects: list[SceneObject]) -> str:
    phrases = [f"a {o.phrase}" for o in objects]
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _caption(kind: str, objects: list[SceneObject], image_size: int, index: int) -> str:
    if kind == "there_is":
        return "there is " + _listing(objects)
    if kind == "relation" and len(objects) == 1:
        return f"a {objects[0].phrase} {placement(objects[0], image_size, index % 2)}"
    if kind == "relation":
        first, second, *rest = objects
        text = f"a {first.phrase} {relation(first, second)} a {second.phrase}"
        return text + "".join(f" and a {o.phrase}" for o in rest)
    return _listing(objects)


def salience_order(objects: list[SceneObject]) -> list[SceneObject]:
    """Large objects first, then by the x of the centre (left to right), then by its y."""
    return sorted(objects, key=lambda o: (o.size != "large", o.box[1] + o.box[3], o.box[0] + o.box[2]))


def captions(rng: np.random.Generator, objects: list[SceneObject], image_size: int,
             order: str = "shuffled") -> list[str]:
    """``CAPTIONS_PER_IMAGE`` captions, each naming every object once, in ``order``."""
    kinds = ("list", "there_is", "relation", "relation", "list")
    if order == "salience":
        ordered = salience_order(objects)
        return [_caption(kind, ordered, image_size, index) for index, kind in enumerate(kinds)]
    if order != "shuffled":
        raise InvalidInput(f"caption order {order!r}; expected one of {ORDERS}")
    out = []
    sequence = list(objects)
    for index, kind in enumerate(kinds[:CAPTIONS_PER_IMAGE]):
        # The second relation caption reverses the first ("b right of a" after "a left of b").
        shuffled = [objects[i] for i in rng.permutation(len(objects))]
        sequence = sequence[::-1] if index == 3 else shuffled
        out.append(_caption(kind, sequence, image_size, index))
    return out
