"""Where a run starts: the step to resume from (verified against its digest), the checks that a
resumed run is the same run, and the early-stopping bookkeeping it carries on with."""

import sys

import numpy as np

from show_attend_tell import warm_start
from show_attend_tell.checkpoints import CheckpointError, Checkpoints, CorruptCheckpoint
from show_attend_tell.config_loading import config_differences, config_from_dict, config_to_dict
from show_attend_tell.data import pipeline
from show_attend_tell.data.vocab import Vocabulary
from show_attend_tell.errors import InvalidInput
from show_attend_tell.paths import Path
from show_attend_tell.state import learning_rate_schedule

# Keys that only say how long or how verbosely to run, or where data lives: a resumed run may
# change them; any other difference from the saved config is an error.
RUN_LENGTH_KEYS = {
    "train.steps", "train.log_every", "train.checkpoint_every", "train.eval_every",
    "train.patience", "train.keep_checkpoints", "data.data_dir", "data.num_val_images",
    "eval.batch_size",
}


def resume_step(checkpoints: Checkpoints, resume_from: str, workdir: Path) -> int | None:
    """The step to resume from: the latest, verified against its digest. A step that fails
    verification stops the run naming the file, unless ``resume_from == 'verified'``: then the
    newest verified step is used and the steps after it are moved to ``checkpoints/.corrupt/``
    (kept, never deleted), with a warning."""
    if resume_from not in ("latest", "verified"):
        raise InvalidInput(f"--resume_from={resume_from!r}: expected latest or verified")
    latest = checkpoints.latest_step()
    if latest is None:
        return None
    try:
        checkpoints.verify(latest)
        return latest
    except CorruptCheckpoint as error:
        newest = error.newest_verified
        if newest is None:
            raise CheckpointError(f"{workdir}: {error}; start again with a new --workdir") from None
        if resume_from != "verified":
            raise CheckpointError(
                f"{workdir}: {error}; pass --resume_from=verified to resume from step {newest} "
                f"(later steps are moved to {checkpoints.directory / '.corrupt'})") from None
    later = [step for step in checkpoints.steps() if step > newest]
    moved = checkpoints.move_aside(later)
    print(f"WARNING: resuming from step {newest}, the newest that verifies; steps {later} "
          f"(failing verification or saved after it) were moved to {moved}", file=sys.stderr)
    return newest


def schedule_change(saved_config: dict, config, start: int) -> str | None:
    """How a changed ``train.steps`` would move the learning rate from ``start`` on (under a
    cosine schedule it sets the decay horizon), or None when it would not."""
    saved = config_from_dict(saved_config).train
    if saved.steps == config.train.steps:
        return None
    steps = np.arange(start, min(saved.steps, config.train.steps) + 1)
    before = np.asarray(learning_rate_schedule(saved)(steps))
    after = np.asarray(learning_rate_schedule(config.train)(steps))
    moved = np.flatnonzero(before != after)
    if not len(moved):
        return None
    at = moved[0]
    return (f"train.steps {saved.steps} -> {config.train.steps} would move the "
            f"{config.train.schedule} learning rate (step {steps[at]}: {before[at]:.3g} -> "
            f"{after[at]:.3g}); keep train.steps={saved.steps} or use a new --workdir")


def restore_or_start(config, workdir: Path, checkpoints: Checkpoints, resume_from="latest"):
    """The vocabulary, iterator position, state step and metadata to start from: the latest
    (verified) checkpoint's when there is one (after checking the config matches), a fresh
    one otherwise."""

    latest = resume_step(checkpoints, resume_from, workdir)
    if latest is None:
        if config.train.init_from:  # the source run's vocabulary: its output layer is tied to it
            return warm_start.source_vocabulary(config.train.init_from), None, None, {}
        vocab = pipeline.build_vocabulary(config)
        return vocab, None, None, {}
    meta = checkpoints.restore_meta(latest)
    differences = config_differences(meta["config"], config_to_dict(config), RUN_LENGTH_KEYS)
    if differences:
        raise CheckpointError(
            f"{workdir}: the saved config differs from this run's ({'; '.join(differences)}); "
            "use a new --workdir or the saved config"
        )
    moved = schedule_change(meta["config"], config, latest)
    if moved:
        raise CheckpointError(f"{workdir}: {moved}")
    vocab = Vocabulary.from_dict(meta["vocabulary"], where=f"{workdir}: checkpoint {latest}",
                                 dataset=config.data.name)
    return vocab, meta.get("data_iterator"), latest, meta




def early_stopping_state(saved_meta: dict, checkpoints: Checkpoints, metric: str):
    """(best validation value so far, evaluations since it) from the resumed step's metadata;
    checkpoints saved before this bookkeeping existed give the best kept step's value and 0."""
    saved = saved_meta.get("early_stopping")
    if saved is not None:
        best = saved["best"]
        return (-np.inf if best is None else best), int(saved["evaluations_since_best"])
    best_step = checkpoints.best_step() if saved_meta else None
    if best_step is None:
        return -np.inf, 0
    return checkpoints.restore_meta(best_step)["validation"][metric], 0
