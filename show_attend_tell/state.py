"""The train state, its optimizer and how it is built: what training creates and what
evaluation restores into (so neither module needs the other for it)."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from show_attend_tell import parallel
from show_attend_tell.errors import InvalidInput
from show_attend_tell.models.captioner import Captioner
from show_attend_tell.models.encoders import example_input
from show_attend_tell.models.frozen_batchnorm import STATISTICS


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 []
    params: Any
    opt_state: Any
    baseline: jax.Array  # float32 [] moving-average reward b of §4.1
    rng: jax.Array  # uint32 [2]: root key data; step keys are fold_in(root, step)


def learning_rate_schedule(train_config) -> optax.Schedule:
    peak, warmup = train_config.learning_rate, train_config.warmup_steps
    if train_config.schedule == "constant":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, peak, max(warmup, 1)), optax.constant_schedule(peak)],
            [max(warmup, 1)],
        )
    if train_config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, peak, max(warmup, 1), max(train_config.steps, warmup + 1), end_value=peak * 0.01
        )
    raise InvalidInput(
        f"config.train.schedule={train_config.schedule!r}; expected constant or cosine"
    )


def parameter_labels(params: dict, encoder_config=None) -> dict:
    """Each parameter's optimizer group: ``"frozen"`` for a frozen encoder
    (``encoder.kwargs.trainable`` false, the paper's choice) and for batch-norm statistics,
    ``"encoder"`` for the rest of the encoder, ``"decoder"`` for everything else."""
    trainable = encoder_config is None or encoder_config.get("kwargs", {}).get("trainable", True)

    def encoder_label(path, _):
        return "encoder" if trainable and path[-1].key not in STATISTICS else "frozen"

    return {name: jax.tree_util.tree_map_with_path(encoder_label, tree) if name == "encoder"
            else jax.tree.map(lambda _: "decoder", tree) for name, tree in params.items()}


def make_optimizer(train_config, encoder_config=None) -> optax.GradientTransformation:
    """Adam (paper, COCO/Flickr30k), RMSProp (Flickr8k) or SGD with momentum, after
    global-norm clipping; a fine-tuned encoder follows the same schedule scaled to
    ``encoder.learning_rate`` (default: the decoder's), a frozen one is never updated."""
    schedule = learning_rate_schedule(train_config)
    optimizers = {"adam": optax.adam, "rmsprop": optax.rmsprop,
                  "sgd": lambda lr: optax.sgd(lr, momentum=0.9)}
    if train_config.optimizer not in optimizers:
        raise InvalidInput(
            f"config.train.optimizer={train_config.optimizer!r}; expected one of {sorted(optimizers)}"
        )
    encoder_rate = (encoder_config or {}).get("learning_rate") or train_config.learning_rate
    scale = encoder_rate / train_config.learning_rate if train_config.learning_rate else 0.0
    groups = {"decoder": optimizers[train_config.optimizer](schedule),
              "encoder": optimizers[train_config.optimizer](lambda step: scale * schedule(step)),
              "frozen": optax.set_to_zero()}
    return optax.chain(
        optax.clip_by_global_norm(train_config.grad_clip_norm),
        optax.multi_transform(groups, lambda params: parameter_labels(params, encoder_config)),
    )


def init_state(model: Captioner, tx, seed: int, encoder_params=None) -> TrainState:
    """A fresh state (pure: traced under ``jit`` with sharded outputs). ``encoder_params``
    (pretrained weights) replace the encoder's random ones before the optimizer state is made;
    under ``jit`` the random ones are then never computed (dead code)."""
    root = jax.random.key(seed)
    init_key, state_key = jax.random.split(root)
    tokens = jnp.zeros((1, 2), jnp.int32)
    params = model.init(init_key, example_input(model.encoder), tokens)["params"]
    if encoder_params is not None:
        params = {**params, "encoder": encoder_params}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        baseline=jnp.zeros((), jnp.float32),
        rng=jax.random.key_data(state_key),
    )


def abstract_state(model, tx, seed, mesh) -> TrainState:
    """The state's shapes, dtypes and replicated shardings, computing nothing: the target to
    restore a checkpoint into (no random initialisation to throw away, no second copy of the
    parameters in memory while restoring)."""
    abstract = jax.eval_shape(lambda: init_state(model, tx, seed))
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(
        leaf.shape, leaf.dtype, sharding=parallel.replicated(mesh)), abstract)


def sharded_state(model, tx, seed, mesh, encoder_params=None) -> tuple[TrainState, Any]:
    """The initial state built directly with replicated shardings (no host copy), and those
    shardings: ``eval_shape`` → shardings → ``jit(init, out_shardings=...)``.
    ``encoder_params``: as in :func:`init_state` (host arrays shaped like the encoder's)."""
    init = lambda encoder: init_state(model, tx, seed, encoder)  # noqa: E731
    shardings = jax.tree.map(lambda leaf: leaf.sharding, abstract_state(model, tx, seed, mesh))
    return jax.jit(init, out_shardings=shardings)(encoder_params), shardings
