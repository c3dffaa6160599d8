"""Training: one sharded step for soft and hard attention, and the loop around it.

Read top to bottom: config checks → step → sharded set-up → loop (log, validate, checkpoint,
stop on signal). Where a run starts (resume, config match) is in ``resume.py``; the signal,
workdir probe and metric log around the loop in ``run_utils.py``; the train state and optimizer
in ``state.py``. Shape letters: B global batch, T caption steps.
"""

import contextlib
import json
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import tqdm

from show_attend_tell import parallel, scst, warm_start
from show_attend_tell.checkpoints import VERIFIED, Checkpoints
from show_attend_tell.config_loading import ConfigError, config_to_dict
from show_attend_tell.data import feature_cache, pipeline
from show_attend_tell.data.caption_groups import captions_per_image
from show_attend_tell.data.references import image_batches
from show_attend_tell.errors import UserError
from show_attend_tell.evaluation import evaluate_split
from show_attend_tell.losses import caption_loss, update_baseline
from show_attend_tell.models.captioner import Captioner, build_captioner
from show_attend_tell.paths import Path
from show_attend_tell.resume import early_stopping_state, restore_or_start
from show_attend_tell.run_utils import MetricLog, StopSignal, check_workdir_writable
from show_attend_tell.state import TrainState, abstract_state, make_optimizer, sharded_state
from show_attend_tell.weights.pretrained import with_pretrained_encoder
from show_attend_tell.workdir_lock import WorkdirLock

OBJECTIVES = ("xe", "scst")


# Values that must be positive (else training does nothing, divides by zero or ascends).
POSITIVE_KEYS = ("train.steps", "train.batch_size", "train.learning_rate", "train.log_every",
                 "train.checkpoint_every", "eval.batch_size")
NON_NEGATIVE_KEYS = ("train.eval_every", "train.patience", "train.warmup_steps")


# `sat train`'s exit status when a signal stopped it before train.steps, its checkpoint saved
# (EX_TEMPFAIL from sysexits.h: "try again later"); launch scripts requeue the job on it.
EXIT_STOPPED = 75


class TrainingDiverged(UserError, RuntimeError):
    """The loss became NaN or infinite."""


class TrainingStopped(Exception):
    """A signal stopped training before ``train.steps``; the checkpoint of ``step`` is saved.
    The CLI exits with :data:`EXIT_STOPPED`."""

    def __init__(self, step: int, state):
        super().__init__(f"stopped by signal at step {step}")
        self.step, self.state = step, state


def check_values(config) -> None:
    """Numbers no run can use are a :class:`ConfigError` naming the key, before anything runs."""
    for keys, wanted, valid in ((POSITIVE_KEYS, "a positive number", lambda v: v > 0),
                                (NON_NEGATIVE_KEYS, "zero or a positive number",
                                 lambda v: v >= 0)):
        for key in keys:
            group, name = key.split(".")
            value = config[group].get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not math.isfinite(value) or not valid(value):
                raise ConfigError(f"config.{key}={value!r}: expected {wanted}")
    objective = config.train.get("objective", "xe")
    if objective not in OBJECTIVES:
        raise ConfigError(f"config.train.objective={objective!r}; expected one of {list(OBJECTIVES)}")
    if objective == "xe":  # self-critical batches count images, each with all its references
        try:
            captions_per_image(config.data, config.train.batch_size)
        except UserError as error:
            raise ConfigError(str(error)) from None


# ---------------------------------------------------------------- the step


def train_step(model: Captioner, tx, train_config, state: TrainState, batch: dict):
    """One update on a batch ``{'image': uint8 [I,H,W,3], 'tokens': int32 [B,T+1]}``: I = B / C
    images, caption rows i·C .. i·C + C-1 of image i (C = ``data.captions_per_image``, 1: one
    row per image). The encoder runs once per image; the loss is per caption row.

    Soft and hard attention share this function: the model's attention mode decides whether
    the sampled-location terms of eq. 12 are non-zero. Returns the new state and per-batch
    metric values.
    """
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    inputs, targets = batch["tokens"][:, :-1], batch["tokens"][:, 1:]
    mask = (targets != 0).astype(jnp.float32)

    def objective(params):
        outputs = model.apply({"params": params}, batch["image"], inputs, key=key, train=True)
        terms = caption_loss(outputs, targets, mask, state.baseline, train_config)
        return terms.loss, terms

    (_, terms), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        baseline=update_baseline(state.baseline, terms, train_config.baseline_decay),
    )
    metrics = terms._asdict()
    metrics["baseline"] = new_state.baseline
    metrics["grad_norm"] = optax.global_norm(grads)
    return new_state, metrics


def compile_train_step(model, tx, train_config, mesh, state_shardings) -> Callable:
    """``train_step`` jitted with the batch sharded on 'data', the state replicated and
    donated (its buffers are reused for the new state)."""
    step = lambda state, batch: train_step(model, tx, train_config, state, batch)  # noqa: E731
    return jax.jit(
        step,
        in_shardings=(state_shardings, parallel.batch_sharding(mesh)),
        out_shardings=(state_shardings, parallel.replicated(mesh)),
        donate_argnums=0,
    )


# ---------------------------------------------------------------- the loop


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path,
                       resume_from: str = "latest") -> TrainState:
    """Train (resuming from ``workdir`` when it has a checkpoint), validate, checkpoint; the
    workdir is locked against a second writer for the whole run. Raises
    :class:`TrainingStopped` when a signal ended it before ``train.steps``."""
    check_values(config)
    workdir = Path(workdir)
    check_workdir_writable(workdir)
    # Process 0 alone takes the lock: the other processes of the same job share the workdir.
    lock = WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
    with lock:
        checkpoints = Checkpoints(workdir, config.train.keep_checkpoints, config.train.eval_metric)
        try:
            return _train(config, workdir, checkpoints, resume_from)
        finally:
            checkpoints.close()  # also on errors: orbax's background work must not outlive it


def _train(config, workdir: Path, checkpoints: Checkpoints, resume_from: str) -> TrainState:
    mesh = parallel.make_mesh()
    parallel.check_batch_divisible(config.train.batch_size, mesh, "config.train.batch_size")
    if config.train.objective == "xe":  # whole image groups per device
        per_image = captions_per_image(config.data, config.train.batch_size)
        parallel.check_batch_divisible(
            config.train.batch_size // per_image, mesh,
            f"images per batch (config.train.batch_size / config.data.captions_per_image="
            f"{per_image})")
    if config.train.eval_every:  # validation would find it only at its first run, hours in
        parallel.check_batch_divisible(config.eval.batch_size, mesh, "config.eval.batch_size")
    vocab, iterator_state, start, saved_meta = restore_or_start(config, workdir, checkpoints,
                                                                resume_from)

    model_config = feature_cache.model_config(config)  # a precomputed encoder with a cache
    model = build_captioner(model_config, len(vocab))
    image_size = model.encoder.image_size
    tx = make_optimizer(config.train, model_config.encoder)
    abstract = abstract_state(model, tx, config.seed, mesh)
    state_shardings = jax.tree.map(lambda leaf: leaf.sharding, abstract)
    if start is not None:  # into shapes alone: no initialisation made only to be overwritten
        state = checkpoints.restore_state(start, abstract)
    elif config.train.get("init_from"):  # a fresh optimizer and step on the source's params
        state, _ = sharded_state(model, tx, config.seed, mesh)
        params, source = warm_start.load_params(config.train.init_from, state.params,
                                                state_shardings.params)
        state = state.replace(params=params)
        print(f"starting from the parameters of {source}")
    else:  # a fresh run, from the pretrained encoder where the config names one
        encoder = (with_pretrained_encoder({"encoder": abstract.params["encoder"]},
                                           model_config.encoder)["encoder"]
                   if model_config.encoder.get("weights") else None)
        state, _ = sharded_state(model, tx, config.seed, mesh, encoder)
    if start is None and jax.process_index() == 0:
        (workdir / "config.json").write_text(json.dumps(config_to_dict(config), indent=2))
        vocab.save(workdir / "vocab.json")
    if config.train.objective == "scst":
        step_fn = scst.ScstStep(model, tx, config, mesh, state_shardings,
                                scst.document_frequency(workdir, config, vocab))
        batches = image_batches(config, vocab, config.train.batch_size, image_size)
    else:
        compiled = compile_train_step(model, tx, config.train, mesh, state_shardings)
        step_fn = lambda state, local: compiled(state, parallel.global_batch(mesh, local))  # noqa: E731
        batches = pipeline.train_iterator(config, vocab, config.train.batch_size, image_size)
    if iterator_state is not None:
        batches.set_state(iterator_state)

    log = MetricLog(workdir)
    first = int(state.step)
    progress = tqdm(total=config.train.steps, initial=first, disable=jax.process_index() != 0,
                    desc="train", dynamic_ncols=True)
    sums, count, last_good = None, 0, None
    best_value, stale = early_stopping_state(saved_meta, checkpoints, config.train.eval_metric)
    tick = time.perf_counter()

    def meta():
        return {"config": config_to_dict(config), "vocabulary": vocab.to_dict(),
                "data_iterator": batches.get_state(),
                # Early-stopping bookkeeping, so that patience survives a resume.
                "early_stopping": {"best": None if best_value == -np.inf else best_value,
                                   "evaluations_since_best": stale}}

    def save(step, metrics=None):
        checkpoints.save(step, state, meta(), metrics)

    stopped_at = None
    with StopSignal() as stop:
        for step in range(first + 1, config.train.steps + 1):
            state, metrics = step_fn(state, next(batches))
            # NaN, patience and the last step are decided on replicated values, hence alike on
            # every process; a signal may reach one process only, so it is agreed on.
            stop_now = parallel.any_process(stop.requested)
            sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
            count += 1
            should_log = step % config.train.log_every == 0 or step == config.train.steps
            should_eval = config.train.eval_every and step % config.train.eval_every == 0
            should_save = (step % config.train.checkpoint_every == 0 or should_eval
                           or step == config.train.steps or stop_now)
            if should_log or should_save:
                means = {k: float(v) / count for k, v in jax.device_get(sums).items()}
                if not np.isfinite(means["loss"]):
                    raise TrainingDiverged(divergence_message(
                        means["loss"], step - count + 1, step,
                        last_good or checkpoints.latest_step(), checkpoints, start))
                elapsed = time.perf_counter() - tick
                means["steps_per_second"] = count / elapsed
                log.write(step, "train", means)
                progress.set_postfix(loss=f"{means['loss']:.3f}", **(
                    {"acc": f"{means['token_accuracy']:.3f}"} if "token_accuracy" in means
                    else {"cider": f"{means['reward']:.3f}"}))
                progress.update(count)
                sums, count, tick = None, 0, time.perf_counter()
            validation, patience_spent = None, False
            if should_eval:
                validation = evaluate_split(
                    model, state.params, config, vocab, config.data.val_split, mesh,
                    beam_size=1, num_images=config.data.num_val_images, progress=False,
                )
                log.write(step, "val", validation)
                value = validation[config.train.eval_metric]
                if value > best_value:
                    best_value, stale = value, 0
                else:
                    stale += 1
                patience_spent = bool(config.train.patience) and stale >= config.train.patience
            if should_save:
                save(step, validation)
                last_good = step
            if patience_spent:
                print(f"early stopping at step {step}: {config.train.eval_metric} has not "
                      f"improved for {config.train.patience} evaluations")
                break
            if stop_now:
                print(f"stopped by signal at step {step}; checkpoint saved in "
                      f"{checkpoints.directory}; run the same command to resume")
                if step < config.train.steps:
                    stopped_at = step
                break
    progress.close()
    log.close()
    if stopped_at is not None:
        raise TrainingStopped(stopped_at, state)
    return state


def divergence_message(loss, first, last, last_good, checkpoints: Checkpoints,
                       resumed_from: int | None) -> str:
    """Why the loss may be NaN: an unverifiable resumed state is named before the learning rate
    (a corrupt file can hold NaN weights that no learning rate explains)."""
    message = (f"loss is {loss} between steps {first} and {last}; the last good checkpoint "
               f"(step {last_good}) is kept. ")
    if resumed_from is not None and checkpoints.verify(resumed_from) != VERIFIED:
        return message + (f"This run resumed from step {resumed_from}, whose checkpoint has no "
                          "digest and cannot be verified: its weights may be corrupt (check "
                          f"`sat evaluate --checkpoint {resumed_from}`) before lowering "
                          "config.train.learning_rate.")
    return message + "Lower config.train.learning_rate or check the data."
