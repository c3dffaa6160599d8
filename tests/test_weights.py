"""Keras Applications weights imported into our backbones give Keras' feature maps; bad
weight files are clear errors."""

import numpy as np
import pytest

from show_attend_tell.models.encoders import get_encoder_class
from show_attend_tell.weights.pretrained import import_weights, with_pretrained_encoder
from show_attend_tell.weights.store import WeightsError, load_weights, save_weights, unflatten

# (our encoder, Keras application, Keras layer our annotations equal, image size, batch):
# small images keep the test short; ResNet-152 runs on one image. ResNet-101 differs from
# these only in its stage depths (checked in test_resnet.py).
CASES = [("vgg19", "VGG19", "block5_conv4", 64, 2),
         ("resnet50", "ResNet50", "conv5_block3_out", 64, 2),
         ("resnet152", "ResNet152", "conv5_block3_out", 32, 1)]


def randomized_keras_model(application: str, size: int, seed: int = 0):
    """A Keras Application without downloaded weights, its zero biases and identity batch
    norms replaced by random values so every imported array matters."""
    import keras

    model = getattr(keras.applications, application)(weights=None, include_top=False,
                                                     input_shape=(size, size, 3))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        arrays = layer.get_weights()
        if len(arrays) == 4:  # gamma, beta, moving mean, moving variance
            gamma, beta, mean, var = (a.shape for a in arrays)
            layer.set_weights([rng.uniform(0.5, 1.5, gamma), rng.normal(0, 0.1, beta),
                               rng.normal(0, 0.1, mean), rng.uniform(0.5, 1.5, var)])
        elif len(arrays) == 2:
            layer.set_weights([arrays[0], rng.normal(0, 0.1, arrays[1].shape)])
    return model


@pytest.mark.slow
@pytest.mark.parametrize("encoder,application,layer,size,batch", CASES)
def test_imported_keras_weights_give_keras_feature_map(encoder, application, layer, size, batch,
                                                        tmp_path):
    import keras

    model = randomized_keras_model(application, size)
    model.save_weights(tmp_path / "keras.weights.h5")
    out, unused = import_weights(encoder, tmp_path / "keras.weights.h5", tmp_path / "w.npz")
    assert unused == []
    images = np.random.default_rng(1).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    # Keras' VGG and ResNet share Caffe preprocessing: RGB -> BGR, ImageNet mean subtracted.
    inputs = keras.applications.vgg19.preprocess_input(images.astype(np.float32))
    expected = keras.Model(model.input, model.get_layer(layer).output)(inputs).numpy()
    options = {} if encoder == "vgg19" else {"grid": 0}  # the unpooled last stage
    backbone = get_encoder_class(encoder)(image_size=size, **options)
    name, weights = load_weights(out)
    assert name == encoder
    annotations = np.asarray(backbone.apply({"params": unflatten(weights)}, images))
    # Random weights leave ResNet-152's features in the thousands: compare on their scale.
    scale = np.abs(expected).max()
    np.testing.assert_allclose(annotations.reshape(expected.shape) / scale, expected / scale,
                               atol=1e-4)


def test_keras_classifier_layers_are_reported_unused(tmp_path):
    import keras

    # weights=None takes any input size and class count: a small classifier, quickly built.
    model = keras.applications.VGG19(weights=None, include_top=True, input_shape=(32, 32, 3),
                                     classes=3)
    model.save_weights(tmp_path / "full.weights.h5")
    _, unused = import_weights("vgg19", tmp_path / "full.weights.h5", tmp_path / "w.npz")
    assert unused == ["fc1", "fc2", "predictions"]


def fake_vgg_weights(drop: str = "", reshape: str = "", add: str = "") -> dict:
    from show_attend_tell.weights.pretrained import encoder_param_shapes
    from show_attend_tell.weights.store import flatten

    weights = {k: np.zeros(v.shape, np.float32) for k, v in
               flatten(encoder_param_shapes("vgg19")).items() if k != drop}
    if reshape:
        weights[reshape] = np.zeros(3, np.float32)
    if add:
        weights[add] = np.zeros(1, np.float32)
    return weights


def test_mismatched_file_names_missing_extra_and_misshaped(tmp_path):
    import ml_collections

    from show_attend_tell.weights.pretrained import encoder_param_shapes

    path = save_weights(tmp_path / "bad.npz", "vgg19",
                        fake_vgg_weights(drop="block5_conv4/bias", reshape="block1_conv1/bias",
                                         add="fc1/kernel"))
    params = {"encoder": encoder_param_shapes("vgg19")}
    config = ml_collections.ConfigDict({"name": "vgg19", "weights": str(path)})
    with pytest.raises(WeightsError, match=r"bad.npz does not fit the encoder: missing: "
                       r"block5_conv4/bias; extra: fc1/kernel; mis-shaped: block1_conv1/bias "
                       r"\(3,\) \(model \(64,\)\)"):
        with_pretrained_encoder(params, config)
    config.name = "resnet50"
    with pytest.raises(WeightsError, match="holds 'vgg19' weights but config.model.encoder.name"):
        with_pretrained_encoder(params, config)
    config.weights = str(tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError, match="absent.npz not found"):
        with_pretrained_encoder(params, config)


def test_existing_weights_file_is_kept_unless_overwrite(tmp_path):
    path = save_weights(tmp_path / "w.npz", "vgg19", {"a/kernel": np.ones(2)})
    with pytest.raises(WeightsError, match="w.npz exists; pass --overwrite"):
        save_weights(path, "vgg19", {"a/kernel": np.zeros(2)})
    assert load_weights(path)[1]["a/kernel"].tolist() == [1, 1]
    save_weights(path, "vgg19", {"a/kernel": np.zeros(2)}, overwrite=True)
    assert load_weights(path)[1]["a/kernel"].tolist() == [0, 0]
