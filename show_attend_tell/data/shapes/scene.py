"""One shapes scene: 1-3 non-overlapping objects on a low-contrast textured background.

Everything is drawn from the ``numpy.random.Generator`` passed in, so a scene is a pure
function of its seed. Sizes are for a 64 px image and scale with ``image_size``: small objects
span 10-14 px and large ones 20-26 px, i.e. at least one cell of the 8x8 attention grid.
"""

import dataclasses

import numpy as np
from PIL import Image, ImageDraw

from show_attend_tell.data.shapes.attributes import COLOURS, SHAPES, SIZES

# Pure, saturated hues: any two differ by >= 100 in some channel, none is close to grey.
RGB = {
    "red": (220, 30, 30),
    "green": (30, 180, 50),
    "blue": (40, 70, 230),
    "yellow": (240, 220, 30),
    "purple": (150, 40, 190),
    "orange": (250, 130, 20),
}
SIZE_RANGE = {"small": (10, 14), "large": (20, 26)}  # object extent in px at 64 px
GAP = 2  # px between objects and to the border, so boxes never touch
MAX_OBJECTS = 3


@dataclasses.dataclass(frozen=True)
class SceneObject:
    size: str
    colour: str
    shape: str
    box: tuple[int, int, int, int]  # (top, left, bottom, right) in px, bottom/right exclusive

    @property
    def phrase(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"


def _boxes_apart(a, b) -> bool:
    return (a[2] + GAP <= b[0] or b[2] + GAP <= a[0] or a[3] + GAP <= b[1]
            or b[3] + GAP <= a[1])


def sample_objects(rng: np.random.Generator, image_size: int) -> list[SceneObject]:
    """1..3 objects with distinct (size, colour, shape) at non-overlapping positions."""
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    scale = image_size / 64
    objects: list[SceneObject] = []
    while len(objects) < count:
        size = SIZES[rng.integers(len(SIZES))]
        colour = COLOURS[rng.integers(len(COLOURS))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        if any((o.size, o.colour, o.shape) == (size, colour, shape) for o in objects):
            continue
        low, high = SIZE_RANGE[size]
        extent = int(round(rng.integers(low, high + 1) * scale))
        # Rejection sampling always succeeds quickly: three large objects fill < 50% of the image.
        for _ in range(100):
            top, left = rng.integers(GAP, image_size - extent - GAP + 1, size=2)
            box = (int(top), int(left), int(top) + extent, int(left) + extent)
            if all(_boxes_apart(box, o.box) for o in objects):
                objects.append(SceneObject(size, colour, shape, box))
                break
        else:
            count = len(objects)  # no room left: keep the scene smaller rather than loop
    return objects


def _background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Mid-grey with blocky and fine noise (+-10 levels): texture, but far from any object colour."""
    base = int(rng.integers(90, 140))
    coarse = rng.integers(-6, 7, (image_size // 8, image_size // 8, 3), dtype=np.int16)
    texture = coarse.repeat(8, axis=0).repeat(8, axis=1)
    fine = rng.integers(-4, 5, (image_size, image_size, 3), dtype=np.int16)
    return (base + texture + fine).astype(np.uint8)  # within 80..150: no clipping needed


def _draw(draw: ImageDraw.ImageDraw, obj: SceneObject, fill: tuple[int, int, int]) -> None:
    top, left, bottom, right = obj.box
    # PIL's outlines include their last pixel: the shape fills exactly rows top..bottom-1.
    x0, y0, x1, y1 = left, top, right - 1, bottom - 1
    if obj.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon(((x0 + x1) / 2, y0, x1, y1, x0, y1), fill=fill)
    elif obj.shape == "diamond":
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        draw.polygon((cx, y0, x1, cy, cx, y1, x0, cy), fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


def render(rng: np.random.Generator, objects: list[SceneObject], image_size: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` image of ``objects``; colours jitter by at most 12 levels."""
    image = Image.fromarray(_background(rng, image_size))
    draw = ImageDraw.Draw(image)
    for obj in objects:
        jitter = rng.integers(-12, 13, size=3)
        fill = tuple(int(c) for c in np.clip(np.asarray(RGB[obj.colour]) + jitter, 0, 255))
        _draw(draw, obj, fill)
    return np.asarray(image)
