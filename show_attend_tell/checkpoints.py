"""Orbax checkpoints in ``<workdir>/checkpoints``: everything needed to resume or evaluate.

Each step directory holds two items: ``state`` (params, optimizer state, step, RNG, the
hard-attention baseline; array tree) and ``meta`` (JSON: format version, config, vocabulary,
data-iterator position, validation metrics). Orbax writes a step to a temporary directory
and renames it when complete, so a process killed mid-save leaves nothing that is restored;
steps to drop are renamed into ``.deleted/`` before they are removed, so a kill mid-delete
leaves no half-deleted step either. Leftovers of both are removed when training reopens the
folder. Kept: the last ``keep`` steps plus the best one by the validation metric.
"""

import shutil
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from flax.serialization import to_state_dict
from orbax.checkpoint.checkpoint_managers import preservation_policy

FORMAT = "show_attend_tell/1"
# Orbax removes a dropped step with rmtree, which a kill can interrupt, leaving a step that
# still looks committed; renaming it here first (atomic) hides it from every later listing.
TRASH = ".deleted"
# A save interrupted by a kill leaves ``<step><this>``. Orbax removes these in a background
# thread when a manager opens, so a listing right after opening could still see them; they are
# removed here, synchronously, first.
TMP_MARKER = ".orbax-checkpoint-tmp"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, of an unknown format, or does not fit the model."""


class Checkpoints:
    """Save and restore train states and their metadata under ``<workdir>/checkpoints``."""

    def __init__(self, workdir, keep: int = 2, best_metric: str | None = None,
                 read_only: bool = False):
        self.directory = Path(workdir).absolute() / "checkpoints"
        self.best_metric = best_metric
        policies = [preservation_policy.LatestN(n=max(keep, 1))]
        if best_metric:
            policies.append(
                preservation_policy.BestN(
                    get_metric_fn=lambda metrics: metrics[best_metric],
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"{workdir}: no checkpoints/ directory (train a model there first)")
        if not read_only:
            self._remove_interrupted_saves()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                preservation_policy=preservation_policy.AnyPreservationPolicy(policies),
                create=not read_only,
                read_only=read_only,
                # Saves are rare and small here; a synchronous save makes "the checkpoint is
                # on disk" true when save() returns, which the signal handler relies on.
                enable_async_checkpointing=False,
                todelete_subdir=None if read_only else TRASH,
                cleanup_tmp_directories=not read_only,
            ),
            # Handlers given up front let a fresh (e.g. read-only) manager read item metadata.
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()},
        )
        if not read_only:
            self._empty_trash()

    def _remove_interrupted_saves(self) -> None:
        if jax.process_index() == 0 and self.directory.is_dir():
            for path in self.directory.glob(f"*{TMP_MARKER}*"):
                shutil.rmtree(path, ignore_errors=True)

    def _empty_trash(self) -> None:
        if jax.process_index() == 0:
            shutil.rmtree(self.directory / TRASH, ignore_errors=True)

    def steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The kept step with the highest validation metric, or None if none was evaluated."""
        scored = []
        for step in self.steps():
            value = self.restore_meta(step).get("validation", {}).get(self.best_metric or "")
            if value is not None:
                scored.append((value, step))
        return max(scored)[1] if scored else None

    def resolve(self, which: str | int) -> int:
        """``'latest'``, ``'best'`` or a step number -> an existing step."""
        if isinstance(which, int) or str(which).isdigit():
            step = int(which)
            if step not in self.steps():
                raise CheckpointError(
                    f"{self.directory}: no checkpoint at step {step}; have {self.steps()}"
                )
            return step
        if which not in ("latest", "best"):
            raise CheckpointError(f"checkpoint {which!r}: expected latest, best or a step number")
        step = self.latest_step() if which == "latest" else self.best_step()
        if step is None:
            what = "no checkpoint" if which == "latest" else "no evaluated checkpoint"
            raise CheckpointError(f"{self.directory}: {what} to restore")
        return step

    def save(self, step: int, state, meta: dict, metrics: dict | None = None) -> None:
        meta = {**meta, "format": FORMAT}
        if metrics:
            meta["validation"] = metrics
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            metrics=metrics,
            force=True,
        )
        self.manager.wait_until_finished()
        self._empty_trash()

    def restore_meta(self, step: int) -> dict:
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]
        if meta.get("format") != FORMAT:
            raise CheckpointError(
                f"{self.directory / str(step)}: checkpoint format {meta.get('format')!r} is not "
                f"{FORMAT!r} (written by another version of show_attend_tell?)"
            )
        return meta

    def restore_state(self, step: int, abstract_state):
        """Restore into the shapes and shardings of ``abstract_state`` (from ``jax.eval_shape``
        plus shardings); a model whose shapes differ is an error naming the parameters."""
        saved = self.manager.item_metadata(step)["state"]
        mismatches = _shape_mismatches(saved, abstract_state)
        if mismatches:
            raise CheckpointError(
                f"{self.directory / str(step)}: checkpoint does not fit the model: "
                + "; ".join(mismatches[:5])
                + (f" (+{len(mismatches) - 5} more)" if len(mismatches) > 5 else "")
            )
        try:
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
            )
        except ValueError as error:  # orbax: the trees differ beyond params (e.g. optimizer)
            raise CheckpointError(
                f"{self.directory / str(step)}: checkpoint does not fit the training state: "
                + " ".join(str(error).split())[:400]
            ) from error
        return restored["state"]

    def close(self) -> None:
        self.manager.close()


def _shape_mismatches(saved_tree, abstract_state) -> list[str]:
    """Parameter paths whose saved and expected shapes differ, plus missing/extra ones (the
    optimizer state mirrors the parameters, so they decide whether a checkpoint fits)."""
    saved = {
        jax.tree_util.keystr(path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(saved_tree["params"])
        if hasattr(leaf, "shape")
    }
    wanted = {
        jax.tree_util.keystr(path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(
            to_state_dict(abstract_state)["params"]
        )
    }
    lines = [f"missing {p}" for p in sorted(set(wanted) - set(saved))]
    lines += [f"unexpected {p}" for p in sorted(set(saved) - set(wanted))]
    lines += [
        f"{p}: saved {saved[p]}, model {wanted[p]}"
        for p in sorted(set(saved) & set(wanted))
        if saved[p] != wanted[p]
    ]
    return lines
