"""Which captions of an image train together when a batch holds C captions per image
(``config.data.captions_per_image``).

Shape letters: n captions of an image, C captions per group, G = ⌈n / C⌉ groups.

Each epoch an image's captions are shuffled and cut into groups of C. A last short group is
filled with captions of the same image drawn without replacement from the other groups (the
first ones of the shuffled order, itself random); an image with fewer than C captions repeats
its shuffled captions in turn. So an epoch visits every caption at least once, and an image
with n captions gives ⌈n / C⌉ groups.
"""

import numpy as np

from show_attend_tell.errors import InvalidInput


def captions_per_image(data, batch_size: int) -> int:
    """``data.captions_per_image`` (1 when absent: configs saved before it existed), checked
    against ``batch_size`` caption rows; a value no run can use is one line naming the key."""
    value = data.get("captions_per_image", 1)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InvalidInput(f"config.data.captions_per_image={value!r}: expected a positive "
                           "whole number of captions per image")
    if batch_size % value:
        raise InvalidInput(f"config.train.batch_size={batch_size} must be a multiple of "
                           f"config.data.captions_per_image={value} (a batch holds whole "
                           "image groups)")
    return int(value)


def caption_groups(count: int, per_image: int, rng: np.random.Generator) -> np.ndarray:
    """The groups of one image's ``count`` captions: caption indices ``[G, C]`` (``[0, C]``
    for an image without captions), following the module doc's rule."""
    if not count:
        return np.zeros((0, per_image), np.int64)
    order = rng.permutation(count)
    if count < per_image:
        return np.resize(order, per_image)[None]
    fill = order[: -count % per_image]
    return np.concatenate([order, fill]).reshape(-1, per_image)


def image_rng(group_seed: int, index: int) -> np.random.Generator:
    """The generator of an image's groups in one epoch: a function of the epoch's seed and the
    image's position in the split's file order, whatever order the image is read in."""
    return np.random.default_rng([int(group_seed), int(index)])
