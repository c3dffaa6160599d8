"""The closed world of the shapes dataset: every object is (size, colour, shape).

Captions name each object as the phrase ``"<size> <colour> <shape>"``; grounding metrics
parse generated captions with the same lists.
"""

SIZES = ("small", "large")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "diamond")
