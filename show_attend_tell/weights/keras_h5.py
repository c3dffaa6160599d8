"""Keras Applications weight files (VGG19, ResNet50/101/152) -> flat flax weights.

Reads both layouts: Keras 3 ``.weights.h5`` (``layers/<key>/vars/<i>``, the layer's name in
the ``vars`` group's ``name`` attribute) and the Keras 2 ``.h5`` that
``keras.applications`` downloads (``<layer>/<layer>/<weight>:0`` listed in ``layer_names`` /
``weight_names``). Keras' kernels are already HWIO. The original weights take BGR inputs
(Caffe preprocessing); our modules take RGB, so the first convolution's input channels are
reversed.
"""

from pathlib import Path

import h5py
import numpy as np

from show_attend_tell.errors import MissingInput
from show_attend_tell.weights.store import WeightsError

# The convolution that reads the image, per architecture family.
FIRST_CONV = {"vgg19": "block1_conv1", "resnet50": "conv1_conv", "resnet101": "conv1_conv",
              "resnet152": "conv1_conv"}
BATCHNORM_NAMES = ("scale", "bias", "mean", "var")  # Keras: gamma, beta, moving mean/variance


def read_layers(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> its weight arrays in Keras order (layers without weights left out)."""

    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"Keras weights {path} not found")
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise WeightsError(f"{path} is not an HDF5 file: {error}") from error
    layers = {}
    with file:
        if "layers" in file:
            for key, group in file["layers"].items():
                variables = group.get("vars", {})
                name = variables.attrs.get("name", key) if hasattr(variables, "attrs") else key
                arrays = [variables[str(i)][()] for i in range(len(variables))]
                if arrays:
                    layers[str(name)] = arrays
        else:
            root = file.get("model_weights", file)
            for name in root.attrs.get("layer_names", []):
                name = name.decode() if isinstance(name, bytes) else str(name)
                group = root[name]
                arrays = [group[w.decode() if isinstance(w, bytes) else w][()]
                          for w in group.attrs.get("weight_names", [])]
                if arrays:
                    layers[name] = arrays
    if not layers:
        raise WeightsError(f"{path} holds no Keras layer weights")
    return layers


def keras_to_flax(layers: dict[str, list[np.ndarray]], encoder: str) -> dict[str, np.ndarray]:
    """Flat flax weights (``<layer>/kernel``, ``/bias``, ``/scale``, ``/mean``, ``/var``)."""
    if encoder not in FIRST_CONV:
        raise WeightsError(f"no Keras import for encoder {encoder!r}; expected one of "
                           f"{sorted(FIRST_CONV)}")
    flat = {}
    for name, arrays in layers.items():
        if len(arrays) == 2:  # convolution or dense: kernel, bias
            kernel, bias = arrays
            if name == FIRST_CONV[encoder]:
                kernel = kernel[:, :, ::-1, :]  # BGR -> RGB input channels
            flat[f"{name}/kernel"], flat[f"{name}/bias"] = kernel, bias
        elif len(arrays) == 4 and all(a.ndim == 1 for a in arrays):
            flat.update({f"{name}/{key}": a for key, a in zip(BATCHNORM_NAMES, arrays, strict=True)})
        else:
            raise WeightsError(f"Keras layer {name!r} has {len(arrays)} weights of shapes "
                               f"{[a.shape for a in arrays]}; expected a convolution or a "
                               "batch normalisation")
    return flat
