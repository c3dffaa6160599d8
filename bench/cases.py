"""The benchmarked set-ups: the paper-scale decoder on precomputed annotations and the shapes
config with its encoder, built exactly as ``sat train`` builds them."""

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from configs.shapes import get_config
from show_attend_tell import parallel
from show_attend_tell.models.captioner import build_captioner
from show_attend_tell.state import make_optimizer, sharded_state
from show_attend_tell.train import compile_train_step


def paper_config(attention: str = "soft", length: int = 22):
    """Paper scale: B 32, 14×14 = 196 annotations of D 2048, E = A = H = 512, V 10000, T 22,
    dropout 0.5, Adam."""
    config = get_config(attention)
    config.model.encoder.name = "precomputed"
    config.model.encoder.kwargs = {"num_annotations": 196, "annotation_dim": 2048}
    config.model.embed_dim = config.model.attention_dim = config.model.hidden_dim = 512
    config.model.dropout = 0.5
    config.train.batch_size = 32
    config.train.optimizer = "adam"
    return config, {"vocab": 10_000, "annotations": (196, 2048), "length": length}


def shapes_config(attention: str = "soft"):
    return get_config(attention), {"vocab": 40, "image": (64, 64, 3), "length": 14}


def paper_encoder_config(encoder: str = "resnet101", length: int = 22):
    """:func:`paper_config` with a trainable ImageNet CNN on 224-pixel images in place of the
    precomputed annotations (ResNet's last stage pooled to 14×14: 196 annotations of 2048)."""
    config, sizes = paper_config("soft", length)
    config.model.encoder.name = encoder
    config.model.encoder.kwargs = {"trainable": True}
    del sizes["annotations"]
    return config, {**sizes, "image": (224, 224, 3)}


def fake_batch(config, sizes, rng):
    """Random inputs of B / C images (C = ``data.captions_per_image``) and caption tokens
    ``[B, T+1]`` (no padding: every step counts)."""
    batch = config.train.batch_size
    images = batch // config.data.get("captions_per_image", 1)
    if "image" in sizes:
        inputs = rng.integers(0, 256, (images, *sizes["image"]), dtype=np.uint8)
    else:
        inputs = rng.normal(size=(images, *sizes["annotations"])).astype(np.float32)
    tokens = rng.integers(3, sizes["vocab"], (batch, sizes["length"] + 1)).astype(np.int32)
    return {"image": inputs, "tokens": tokens}


def build(config, sizes):
    """(mesh, model, initial state, jitted train step, one device batch)."""
    mesh = parallel.make_mesh()
    model = build_captioner(config.model, sizes["vocab"])
    tx = make_optimizer(config.train)
    state, shardings = sharded_state(model, tx, config.seed, mesh)
    step = compile_train_step(model, tx, config.train, mesh, shardings)
    batch = parallel.global_batch(mesh, fake_batch(config, sizes, np.random.default_rng(0)))
    return mesh, model, state, step, batch


CASES = {
    "paper_soft": lambda: paper_config("soft"),
    "paper_hard": lambda: paper_config("hard"),
    "shapes_soft": lambda: shapes_config("soft"),
    "shapes_hard": lambda: shapes_config("hard"),
}


class CompiledStep(NamedTuple):
    step: Any  # the jitted train step
    state: Any  # its initial state
    batch: dict
    compiled: Any  # the step lowered and compiled for this state and batch
    compile_seconds: float
    run_one: Callable[[], None]  # one step on the compiled program, state carried, blocking


def compiled_step(config, sizes) -> CompiledStep:
    """The train step of a case, compiled, with a function that runs one step of it."""
    _, _, state, step, batch = build(config, sizes)
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    holder = {"state": state}

    def run_one():
        holder["state"], metrics = compiled(holder["state"], batch)
        jax.block_until_ready(metrics)

    return CompiledStep(step, state, batch, compiled, compile_seconds, run_one)
