"""The feature cache: written once, equal to the encoder's annotations, read by training and
evaluation, tied to the encoder that wrote it."""

import numpy as np
import pytest

from show_attend_tell.config_loading import config_from_args
from show_attend_tell.data import feature_cache, pipeline
from show_attend_tell.models.encoders import build_encoder
from show_attend_tell.train import train_and_evaluate
from show_attend_tell.weights.store import unflatten

pytestmark = pytest.mark.slow


def test_cache_holds_annotations_and_trains_and_evaluates(tiny_shapes, random_vgg19_weights,
                                                          tmp_path):
    cache = tmp_path / "cache"
    config = config_from_args("configs/coco.py:smoke", [
        f"data.data_dir={tiny_shapes}", "data.name=shapes", "data.builder_config=tiny",
        "data.val_split=validation", "train.eval_every=0",
        f"model.encoder.weights={random_vgg19_weights}"])
    for split in ("train", "validation"):
        feature_cache.write_cache(config, split, cache, batch_size=16)
    with pytest.raises(FileExistsError, match="validation exists; pass --overwrite"):
        feature_cache.write_cache(config, "validation", cache)

    # Cached rows are the encoder's annotations of the same images, in file order.
    encoder = build_encoder(config.model.encoder, np.float32)
    params = unflatten(dict(np.load(random_vgg19_weights)))
    images = next(pipeline.eval_batches(config, None, "validation", 8, encoder.image_size))
    config.data.feature_cache = str(cache)
    cached = next(pipeline.eval_batches(config, None, "validation", 8, 0))
    assert cached["image"].shape == (8, 4, 512) and cached["image"].dtype == np.float16
    np.testing.assert_array_equal(cached["image_id"], images["image_id"])
    expected = encoder.apply({"params": params}, images["image"])
    np.testing.assert_allclose(cached["image"].astype(np.float32), expected, rtol=2e-3, atol=1e-3)

    state = train_and_evaluate(config, tmp_path / "run")
    assert int(state.step) == 2 and "encoder" not in state.params  # the decoder alone trains

    config.model.encoder.kwargs.image_size = 64
    with pytest.raises(ValueError, match="was written by encoder .* but config.model.encoder is"):
        feature_cache.model_config(config)
