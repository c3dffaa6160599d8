"""Flickr8k / Flickr30k / COCO with Karpathy's splits: a TFDS builder over local files."""

from show_attend_tell.data.karpathy.builder import Karpathy, KarpathyConfig

__all__ = ["Karpathy", "KarpathyConfig"]
