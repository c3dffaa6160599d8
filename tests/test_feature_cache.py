"""The feature cache: written once, equal to the encoder's annotations, read by training and
evaluation, tied to the encoder that wrote it (the whole training loop on a cache runs in
bench/feature_cache.py)."""

import jax
import numpy as np
import pytest

from show_attend_tell.config_loading import config_from_args
from show_attend_tell.data import feature_cache, pipeline
from show_attend_tell.data.vocab import Vocabulary
from show_attend_tell.models.captioner import build_captioner
from show_attend_tell.models.encoders import build_encoder
from show_attend_tell.weights.store import unflatten

pytestmark = pytest.mark.slow


def test_cache_holds_annotations_and_trains_and_evaluates(tiny_shapes, random_vgg19_weights,
                                                          tmp_path):
    cache = tmp_path / "cache"
    config = config_from_args("configs/coco.py:smoke", [
        f"data.data_dir={tiny_shapes}", "data.name=shapes", "data.builder_config=tiny",
        "data.val_split=validation", "train.eval_every=0",
        f"model.encoder.weights={random_vgg19_weights}"])
    feature_cache.write_cache(config, "train", cache, batch_size=16)
    with pytest.raises(FileExistsError, match="train exists; pass --overwrite"):
        feature_cache.write_cache(config, "train", cache)

    # Cached rows are the encoder's annotations of the same images, in file order.
    encoder = build_encoder(config.model.encoder, np.float32)
    params = unflatten(dict(np.load(random_vgg19_weights)))
    images = next(pipeline.eval_batches(config, None, "train", 8, encoder.image_size))
    config.data.feature_cache = str(cache)
    cached = next(pipeline.eval_batches(config, None, "train", 8, 0))
    # VGG-19 at the smoke variant's 48 pixels: 3 x 3 conv5_4 cells of 512 features.
    assert cached["image"].shape == (8, 9, 512) and cached["image"].dtype == np.float16
    np.testing.assert_array_equal(cached["image_id"], images["image_id"])
    expected = encoder.apply({"params": params}, images["image"])
    np.testing.assert_allclose(cached["image"].astype(np.float32), expected, rtol=2e-3, atol=1e-3)

    # Training batches carry annotations, and the captioner takes them in place of images: with
    # the smoke config's 2 captions per image, 4 images' annotations for 8 caption rows.
    assert config.data.captions_per_image == 2
    batch = next(pipeline.train_iterator(config, Vocabulary.build(["a b"], 1, 10), 8, 0))
    assert batch["image"].shape == (4, 9, 512) and batch["image"].dtype == np.float16
    assert batch["tokens"].shape[0] == 8
    model = build_captioner(feature_cache.model_config(config), vocab_size=10)
    assert model.encoder.num_annotations == 9 and model.encoder.annotation_dim == 512
    variables = model.init(jax.random.key(0), batch["image"], batch["tokens"][:, :-1])
    assert "encoder" not in variables["params"]  # the decoder alone trains

    config.model.encoder.kwargs.image_size = 64
    with pytest.raises(ValueError, match="was written by encoder .* but config.model.encoder is"):
        feature_cache.model_config(config)
