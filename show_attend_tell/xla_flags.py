"""XLA:CPU settings the library turns on by default, before JAX starts its backend.

``--xla_cpu_experimental_ynn_fusion_type=dot`` hands XLA's dot fusions to YNNPACK. On this
project's 2-core CPU it made the shapes train step, whose time is mostly its ConvNet encoder,
1.4× faster (0.267 -> 0.191 s, ``bench/train_step.py --cases shapes_soft``) and
the paper-scale step ~3 % faster; GPU and TPU backends ignore ``xla_cpu_*`` flags.
A flag the user already put in ``XLA_FLAGS`` wins (``--xla_cpu_experimental_ynn_fusion_type=``
turns this one off).
"""

import os
from collections.abc import MutableMapping

DEFAULT_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=dot",)


def add_default_flags(environ: MutableMapping[str, str] = os.environ) -> str:
    """Append each of :data:`DEFAULT_FLAGS` to ``environ['XLA_FLAGS']`` unless that flag is
    already set there (to any value); returns the resulting value. Takes effect only if JAX's
    backend has not started yet."""
    current = environ.get("XLA_FLAGS", "").split()
    present = {item.split("=", 1)[0] for item in current}
    added = [flag for flag in DEFAULT_FLAGS if flag.split("=", 1)[0] not in present]
    environ["XLA_FLAGS"] = " ".join(current + added)
    return environ["XLA_FLAGS"]
