"""Evaluate a checkpoint: free-running decoding over a split, caption and grounding metrics,
and captions with attention overlays for image files.

Every process reads the whole evaluation split on the host (references and ground-truth
objects stay there) and feeds its own slice of each global batch to the devices; decoded
arrays are gathered back with the host row each came from, so every process holds every
result, paired with its image whatever the order of the mesh's devices.
"""

import json
import os
import sys
import time

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from show_attend_tell import parallel
from show_attend_tell.caption_metrics import caption_scores
from show_attend_tell.checkpoints import CheckpointError, Checkpoints, CorruptCheckpoint
from show_attend_tell.config_loading import config_from_dict
from show_attend_tell.data import feature_cache, pipeline
from show_attend_tell.data.images import load_image_rgb
from show_attend_tell.data.tokenizer import detokenize
from show_attend_tell.data.vocab import Vocabulary
from show_attend_tell.decoding import decode_images
from show_attend_tell.errors import InvalidInput, MissingInput, OutputExists
from show_attend_tell.eval_records import image_record
from show_attend_tell.grounding import grounding_scores, load_objects
from show_attend_tell.models.captioner import build_captioner
from show_attend_tell.paths import Path, absolute
from show_attend_tell.state import TrainState, abstract_state, make_optimizer
from show_attend_tell.visualize import attention_overlay

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
        # Each output's host row travels with it: where a process's rows land in the global
        # array depends on where its devices sit in the mesh, not on the process index.
        batch["row"] = np.arange(len(batch["example_mask"]), dtype=np.int32)
        device_batch = parallel.global_batch(mesh, _process_slice(batch))
        decoded = decode_images(
            model, variables, device_batch["image"], beam_size=beam_size,
            max_length=config.eval.max_length,
            length_normalization=config.eval.length_normalization, sample_key=sample_key,
        )
        tokens, lengths = _to_host(decoded.tokens), _to_host(decoded.lengths)
        alphas, locations = _to_host(decoded.alphas), _to_host(decoded.locations)
        rows = _to_host(device_batch["row"])
        for out in np.argsort(rows):  # host row order: file order
            row = rows[out]
            if not batch["example_mask"][row]:
                continue
            length = int(lengths[out])
            results.append({
                "image_id": int(batch["image_id"][row]),
                "words": vocab.to_text(tokens[out]).split(),
                "alphas": alphas[out, :length],
                "locations": locations[out, :length],
                "references": list(batch["references"][row]),
                "objects": batch["objects"][row] if "objects" in batch else None,
            })
    return results


def score_results(results: list[dict]) -> dict:
    """Caption metrics for every dataset, grounding metrics where objects are known."""

    references = {r["image_id"]: r["references"] for r in results}
    # Words are PTB tokens; detokenize gives the text the PTB tokenizer reads back as them.
    candidates = {r["image_id"]: detokenize(r["words"]) for r in results}
    scores = caption_scores(references, candidates)
    if results and results[0]["objects"] is not None:
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


def load_for_inference(workdir, checkpoint=None):
    """(config, vocabulary, model, params, step, mesh) from a checkpoint alone; ``checkpoint``
    None picks the best validated step where the run kept one, else the latest."""
    return load_chosen(workdir, checkpoint)[:6]


def load_chosen(workdir, checkpoint=None, attempts: int = 3):
    """:func:`load_for_inference` plus how the step was chosen. Readers take no lock: the
    chosen step is pinned (hard-linked, see ``Checkpoints.pinned``) so a running ``sat train``
    can prune it while it is read; a step pruned before it was pinned is chosen again (the
    same rule on what is left) and the note says so; a step given by number is not replaced."""
    checkpoints = Checkpoints(workdir, read_only=True)
    given = checkpoint is not None and str(checkpoint).isdigit()
    notes = []
    try:
        for attempt in range(attempts):
            listed, step = set(checkpoints.steps()), None
            try:
                step, how = checkpoints.choose(checkpoint)
                with checkpoints.pinned(step) as source:
                    loaded = _restore_for_inference(source, step, f"{workdir}: checkpoint {step}")
            except Exception:
                checkpoints.reload()
                vanished = sorted(listed - set(checkpoints.steps()))
                if not vanished or (step is not None and step not in vanished):
                    raise  # not a step pruned under us
                if given or attempt == attempts - 1:
                    raise CheckpointError(
                        f"{checkpoints.step_dir(vanished[-1])}: removed while it was read (pruned "
                        "by a running `sat train`?); run again or pass another --checkpoint"
                    ) from None
                notes.append(f"step {step if step is not None else vanished[-1]} was pruned "
                             "while read")
                print(f"note: checkpoint step {step if step is not None else vanished[-1]} was "
                      "removed while it was read (pruned by a running `sat train`?); choosing "
                      "again", file=sys.stderr)
                continue
            return (*loaded, step, "; ".join([how, *notes]))
    except CorruptCheckpoint as error:
        offer = (f" (--checkpoint {error.newest_verified})"
                 if error.newest_verified is not None else "")
        raise CheckpointError(f"{error}{offer}; nothing was evaluated") from None
    finally:
        checkpoints.close()
    raise AssertionError("unreachable")


def _restore_for_inference(checkpoints: Checkpoints, step: int, where: str):
    meta = checkpoints.restore_meta(step)
    config = config_from_dict(meta["config"])
    vocab = Vocabulary.from_dict(meta["vocabulary"], where=where,
                                 dataset=config.data.name)
    model_config = feature_cache.model_config(config)  # a precomputed encoder with a cache
    model = build_captioner(model_config, len(vocab))
    tx = make_optimizer(config.train, model_config.encoder)
    mesh = parallel.make_mesh()
    state: TrainState = checkpoints.restore_state(
        step, abstract_state(model, tx, config.seed, mesh))
    return config, vocab, model, state.params, mesh


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

    objects = load_objects(objects_path)
    missing = [r["image_id"] for r in results if r["image_id"] not in objects]
    if missing:
        raise InvalidInput(f"{objects_path}: no objects for {len(missing)} evaluated images, "
                         f"e.g. image ids {missing[:5]}")
    for result in results:
        result["objects"] = objects[result["image_id"]]


def report_path(workdir, protocol: dict, default_beam: int, partial: bool) -> Path:
    """``eval/<split>_<step>.json`` for the whole split at the config's beam size; any other
    measurement adds what differs (``_beam<k>``, ``_<n>images``), so no report replaces one
    of another measurement."""
    name = f"{protocol['split']}_{protocol['checkpoint_step']}"
    if protocol["beam_size"] != default_beam:
        name += f"_beam{protocol['beam_size']}"
    if partial:
        name += f"_{protocol['images']}images"
    return Path(workdir) / "eval" / f"{name}.json"


def check_not_replacing(path: Path, protocol: dict) -> None:
    """An existing report of the same name must be of the same measurement (its timing and
    the wording of how the step was chosen aside); a different one is never overwritten."""
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text()).get("protocol", {})
    except (ValueError, AttributeError):
        old = {"unreadable": True}
    ignored = {"seconds", "checkpoint_chosen"}
    differences = sorted(key for key in set(old) | set(protocol) if key not in ignored
                         and old.get(key) != protocol.get(key))
    if differences:
        changes = ", ".join(f"{k}: {old.get(k)!r} -> {protocol.get(k)!r}" for k in differences)
        raise OutputExists(f"{path}: exists with another measurement ({changes}); not "
                              "overwritten, move it away first")


def evaluate_checkpoint(workdir, split="test", beam_size=None, checkpoint=None,
                        num_images=0, objects=None, data_dir=None) -> dict:
    """``sat evaluate``: decode ``split``, print the table, write the report named by
    :func:`report_path`; ``objects``: a JSON file of ground-truth objects per image id, to add
    grounding metrics to a dataset without them; ``data_dir``: the dataset's folder where it
    is not the run's ``config.data.data_dir`` any more."""
    config, vocab, model, params, mesh, step, how = load_chosen(workdir, checkpoint)
    if data_dir:
        config.data.data_dir = str(data_dir)
    elif not feature_cache.enabled(config.data) and not Path(config.data.data_dir).exists():
        raise MissingInput(f"{workdir}: the run's config.data.data_dir "
                                f"{config.data.data_dir!r} does not exist; expected "
                                "--data_dir FOLDER (where the dataset is now)")
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
        "checkpoint_chosen": how, "attention": config.model.attention,
        **({"objects": str(objects)} if objects else {}),
        "seconds": round(time.perf_counter() - start, 1),
    }
    report = {"protocol": protocol, "metrics": scores,
              "captions": [image_record(r) for r in results]}
    if jax.process_index() == 0:
        print(format_table(scores, ", ".join(f"{k}={v}" for k, v in protocol.items())))
        out = report_path(workdir, protocol, config.eval.beam_size, partial=num_images > 0)
        check_not_replacing(out, protocol)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
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


def overlay_paths(paths, out: Path) -> list[Path]:
    """``<out>/<folder>/<stem>_attention.png`` per image, ``<folder>`` being the image's folder
    relative to the folder all images share (so ``a/x.png`` and ``b/x.png`` do not collide);
    names still alike (``x.png`` and ``x.jpg``, a file given twice) get ``_2``, ``_3``."""
    parents = [absolute(path).parent.parts for path in paths]
    common = len(os.path.commonprefix(parents)) if parents else 0
    taken, names = set(), []
    for path, parent in zip(paths, parents, strict=True):
        folder, stem = out.joinpath(*parent[common:]), Path(path).stem
        name, copy = folder / f"{stem}_attention.png", 1
        while name in taken:
            copy += 1
            name = folder / f"{stem}_{copy}_attention.png"
        taken.add(name)
        names.append(name)
    return names


def caption_files(workdir, paths, out=None, beam_size=None, checkpoint=None) -> int:
    """``sat caption``: print a caption per image file and write its attention overlay.
    Unreadable files are reported and skipped; returns how many failed."""

    config, vocab, model, params, mesh, step, how = load_chosen(workdir, checkpoint)
    print(f"sat caption: checkpoint step {step} ({how})", file=sys.stderr)
    model, params = image_captioner(config, len(vocab), model, params)
    beam_size = beam_size or config.eval.beam_size
    out = Path(out) if out else Path(workdir) / "captions"
    out.mkdir(parents=True, exist_ok=True)
    overlays = overlay_paths(paths, out)
    size = model.encoder.image_size
    failures = 0
    for path, overlay in zip(paths, overlays, strict=True):
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
        words = vocab.to_text(np.asarray(decoded.tokens[0])).split()
        overlay.parent.mkdir(parents=True, exist_ok=True)
        attention_overlay(image, words, np.asarray(decoded.alphas[0, :length]), overlay,
                          locations=np.asarray(decoded.locations[0, :length])
                          if config.model.attention == "hard" else None)
        print(f"{path}\t{' '.join(words)}\t{overlay}")
    return failures
