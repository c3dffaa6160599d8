"""The shapes dataset: a TFDS builder of synthetic grounded captioning scenes."""

from show_attend_tell.data.shapes.builder import Shapes, ShapesConfig

__all__ = ["Shapes", "ShapesConfig"]
