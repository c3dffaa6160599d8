"""Evaluate a checkpoint: free-running decoding over a split, caption and grounding metrics,
and captions with attention overlays for image files.

Every process reads the whole evaluation split on the host (references and ground-truth
objects stay there) and feeds its own slice of each global batch to the devices; decoded
arrays are gathered back, so every process holds every result.
"""

import json
import time
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from show_attend_tell import parallel
from show_attend_tell.checkpoints import Checkpoints
from show_attend_tell.config_loading import config_from_dict
from show_attend_tell.data import feature_cache
from show_attend_tell.eval_records import image_record
from show_attend_tell.models.captioner import build_captioner

METRIC_ORDER = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE",
                "scene_accuracy", "pointing_accuracy", "attention_mass_in_box")


def _to_host(array) -> np.ndarray:
    if array.is_fully_addressable:
        return np.asarray(jax.device_get(array))
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def _process_slice(batch: dict) -> dict:
    """This process's rows of a host-global batch."""
    count, index = jax.process_count(), jax.process_index()
    size = len(batch["example_mask"]) // count
    return {k: v[index * size:(index + 1) * size] for k, v in batch.items()
            if isinstance(v, np.ndarray)}


def decode_split(model, params, config, vocab, split, mesh, *, beam_size, num_images=0,
                 progress=True) -> list[dict]:
    """Caption every image of ``split`` once; per image: id, words, α ``[T, L]``, locations,
    references and (shapes) ground-truth objects."""
    from tqdm import tqdm

    from show_attend_tell.data import pipeline
    from show_attend_tell.decoding import decode_images

    parallel.check_batch_divisible(config.eval.batch_size, mesh, "config.eval.batch_size")
    batches = pipeline.eval_batches(
        config, vocab, split, config.eval.batch_size, model.encoder.image_size,
        num_images=num_images, process_index=0, process_count=1,
    )
    variables = {"params": params}
    sample_key = jax.random.key(config.seed) if config.eval.hard_sample else None
    results = []
    show = progress and jax.process_index() == 0
    for batch in tqdm(batches, desc=f"decode {split}", disable=not show, dynamic_ncols=True):
        device_batch = parallel.global_batch(mesh, _process_slice(batch))
        decoded = decode_images(
            model, variables, device_batch["image"], beam_size=beam_size,
            max_length=config.eval.max_length,
            length_normalization=config.eval.length_normalization, sample_key=sample_key,
        )
        tokens, lengths = _to_host(decoded.tokens), _to_host(decoded.lengths)
        alphas, locations = _to_host(decoded.alphas), _to_host(decoded.locations)
        for row in np.flatnonzero(batch["example_mask"]):
            length = int(lengths[row])
            results.append({
                "image_id": int(batch["image_id"][row]),
                "words": vocab.decode(tokens[row]).split(),
                "alphas": alphas[row, :length],
                "locations": locations[row, :length],
                "references": list(batch["references"][row]),
                "objects": batch["objects"][row] if "objects" in batch else None,
            })
    return results


def score_results(results: list[dict]) -> dict:
    """Caption metrics for every dataset, grounding metrics where objects are known."""
    from show_attend_tell.caption_metrics import caption_scores
    from show_attend_tell.data.tokenizer import detokenize

    references = {r["image_id"]: r["references"] for r in results}
    # Words are PTB tokens; detokenize gives the text the PTB tokenizer reads back as them.
    candidates = {r["image_id"]: detokenize(r["words"]) for r in results}
    scores = caption_scores(references, candidates)
    if results and results[0]["objects"] is not None:
        from show_attend_tell.grounding import grounding_scores

        scores.update(grounding_scores([
            {"words": r["words"], "alphas": r["alphas"], "objects": r["objects"]}
            for r in results
        ]))
    return scores


def evaluate_split(model, params, config, vocab, split, mesh, *, beam_size, num_images=0,
                   progress=True) -> dict:
    """Metrics of free-running decoding (never teacher-forced) on ``split``."""
    results = decode_split(model, params, config, vocab, split, mesh, beam_size=beam_size,
                           num_images=num_images, progress=progress)
    return score_results(results)


def load_for_inference(workdir, checkpoint="latest"):
    """(config, vocabulary, model, params, step) from a checkpoint alone."""
    from show_attend_tell.data.vocab import Vocabulary
    from show_attend_tell.train import TrainState, init_state, make_optimizer

    checkpoints = Checkpoints(workdir, read_only=True)
    step = checkpoints.resolve(checkpoint)
    meta = checkpoints.restore_meta(step)
    config = config_from_dict(meta["config"])
    vocab = Vocabulary.from_dict(meta["vocabulary"], where=f"{workdir}: checkpoint {step}",
                                 dataset=config.data.name)
    model_config = feature_cache.model_config(config)  # a precomputed encoder with a cache
    model = build_captioner(model_config, len(vocab))
    tx = make_optimizer(config.train, model_config.encoder)
    mesh = parallel.make_mesh()
    abstract = jax.eval_shape(lambda: init_state(model, tx, config.seed))
    abstract = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=parallel.replicated(mesh)),
        abstract,
    )
    state: TrainState = checkpoints.restore_state(step, abstract)
    checkpoints.close()
    return config, vocab, model, state.params, step, mesh


def format_table(scores: dict, protocol: str) -> str:
    names = [n for n in METRIC_ORDER if n in scores] + sorted(
        n for n in scores if n not in METRIC_ORDER and not isinstance(scores[n], (dict, str))
    )
    width = max(len(n) for n in names)
    lines = [protocol]
    for name in names:
        value = scores[name]
        shown = "n/a" if value is None else (f"{value:.2f}" if isinstance(value, float) else value)
        lines.append(f"  {name:<{width}}  {shown}")
    return "\n".join(lines)


def attach_objects(results: list[dict], objects_path) -> None:
    """Give each result the ground-truth objects of its image from ``objects_path``
    (:func:`grounding.load_objects`), for datasets that have none of their own."""
    from show_attend_tell.grounding import load_objects

    objects = load_objects(objects_path)
    missing = [r["image_id"] for r in results if r["image_id"] not in objects]
    if missing:
        raise ValueError(f"{objects_path}: no objects for {len(missing)} evaluated images, "
                         f"e.g. image ids {missing[:5]}")
    for result in results:
        result["objects"] = objects[result["image_id"]]


def evaluate_checkpoint(workdir, split="test", beam_size=None, checkpoint="latest",
                        num_images=0, objects=None) -> dict:
    """``sat evaluate``: decode ``split``, print the table, write eval/<split>_<step>.json;
    ``objects``: a JSON file of ground-truth objects per image id, to add grounding metrics."""
    config, vocab, model, params, step, mesh = load_for_inference(workdir, checkpoint)
    beam_size = beam_size or config.eval.beam_size
    split_name = {"val": config.data.val_split, "validation": config.data.val_split,
                  "test": config.data.test_split, "train": config.data.train_split}.get(split, split)
    start = time.perf_counter()
    results = decode_split(model, params, config, vocab, split_name, mesh, beam_size=beam_size,
                           num_images=num_images)
    if objects:
        attach_objects(results, objects)
    scores = score_results(results)
    protocol = {
        "dataset": config.data.name, "split": split_name, "images": len(results),
        "beam_size": beam_size, "max_length": config.eval.max_length, "checkpoint_step": step,
        "attention": config.model.attention, "seconds": round(time.perf_counter() - start, 1),
    }
    report = {"protocol": protocol, "metrics": scores,
              "captions": [image_record(r) for r in results]}
    if jax.process_index() == 0:
        out = Path(workdir) / "eval" / f"{split_name}_{step}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
        print(format_table(scores, ", ".join(f"{k}={v}" for k, v in protocol.items())))
        print(f"wrote {out}")
    return report


def image_captioner(config, vocab_size: int, model, params):
    """(model, params) that caption image files. A run trained on a feature cache holds only
    its decoder: the frozen encoder that wrote the cache is rebuilt in front of it (the same
    weights file, or the same seeded init). Its annotations are float32 where the cache's were
    float16, so a caption can differ from the cached image's only by that rounding."""
    if not feature_cache.enabled(config.data):
        return model, params
    _, encoder_params = feature_cache.frozen_encoder(config.model.encoder, config.seed)
    return build_captioner(config.model, vocab_size), {**params, "encoder": encoder_params}


def caption_files(workdir, paths, out=None, beam_size=None, checkpoint="latest") -> int:
    """``sat caption``: print a caption per image file and write its attention overlay.
    Unreadable files are reported and skipped; returns how many failed."""
    import sys

    from show_attend_tell.data.images import load_image_rgb
    from show_attend_tell.decoding import decode_images
    from show_attend_tell.visualize import attention_overlay

    config, vocab, model, params, step, mesh = load_for_inference(workdir, checkpoint)
    model, params = image_captioner(config, len(vocab), model, params)
    beam_size = beam_size or config.eval.beam_size
    out = Path(out) if out else Path(workdir) / "captions"
    out.mkdir(parents=True, exist_ok=True)
    size = model.encoder.image_size
    failures = 0
    for path in paths:
        try:
            image = load_image_rgb(path, size)
        except (OSError, ValueError) as error:
            print(f"sat caption: error: {error}", file=sys.stderr)
            failures += 1
            continue
        decoded = decode_images(model, {"params": params}, image[None], beam_size=beam_size,
                                max_length=config.eval.max_length,
                                length_normalization=config.eval.length_normalization)
        length = int(decoded.lengths[0])
        words = vocab.decode(np.asarray(decoded.tokens[0])).split()
        overlay = out / f"{Path(path).stem}_attention.png"
        attention_overlay(image, words, np.asarray(decoded.alphas[0, :length]), overlay,
                          locations=np.asarray(decoded.locations[0, :length])
                          if config.model.attention == "hard" else None)
        print(f"{path}\t{' '.join(words)}\t{overlay}")
    return failures
