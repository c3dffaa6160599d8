"""ResNet annotations: adaptive average pooling as PyTorch's, and the registered shapes."""

import jax
import numpy as np
import pytest

from show_attend_tell.models.encoders import get_encoder_class
from show_attend_tell.models.resnet import adaptive_avg_pool, adaptive_pool_matrix


def test_adaptive_pool_matches_pytorch_windows():
    # PyTorch's windows for 8 -> 3: [0, 3), [2, 6), [5, 8).
    expected = np.zeros((3, 8))
    for row, (start, end) in enumerate([(0, 3), (2, 6), (5, 8)]):
        expected[row, start:end] = 1 / (end - start)
    np.testing.assert_allclose(adaptive_pool_matrix(8, 3), expected)
    # Upsampling 7 -> 14 repeats every cell twice.
    x = np.random.default_rng(0).normal(size=(1, 7, 7, 2)).astype(np.float32)
    repeated = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(adaptive_avg_pool(x, 14), repeated, rtol=1e-6)


@pytest.mark.parametrize("name,blocks", [("resnet50", 16), ("resnet101", 33), ("resnet152", 50)])
def test_resnets_give_pooled_annotations(name, blocks):
    backbone = get_encoder_class(name)(image_size=64)
    images = np.zeros((1, 64, 64, 3), np.uint8)
    shapes = jax.eval_shape(backbone.init_with_output, jax.random.key(0), images)
    annotations, variables = shapes
    assert annotations.shape == (1, 14 * 14, 2048)
    layers = variables["params"]
    assert sum(name.endswith("_3_conv") for name in layers) == blocks
