"""Orbax checkpoints in ``<workdir>/checkpoints``: everything needed to resume or evaluate.

Each step directory holds two items: ``state`` (params, optimizer state, step, RNG, the
hard-attention baseline; array tree) and ``meta`` (JSON: format version, config, vocabulary,
data-iterator position, validation metrics). Orbax writes a step to a temporary directory
and renames it when complete, so a process killed mid-save leaves nothing that is restored;
steps to drop are renamed into ``.deleted/`` before they are removed, so a kill mid-delete
leaves no half-deleted step either. On an object store (``gs://``), which has no atomic
rename, orbax writes a step in place and lists it only once its commit marker exists; a step to
drop loses its marker first (:class:`_UncommitFirst`). Leftovers of all these are removed when
training reopens the folder. Kept: the last ``keep`` steps plus the best one by the validation
metric.

Integrity: after a step commits, the main process writes ``<step>/digest.json`` (SHA-256 of
every file, see ``digests.py``); every restore verifies the files it reads against it, and a
difference is a :class:`CorruptCheckpoint` naming the step and the file, with the newest step
that still verifies. A marker ``.pending-digest-<step>`` exists from before the save until the
digest is written, so a kill between commit and digest is finished (hashed) when training
reopens the folder, not mistaken for a deleted digest. Steps written before digests existed
have none in any step: they load, reported as unverified; a step without a digest in a run
whose other steps have one is an error.
"""

import contextlib
import errno
import os
import pathlib
import secrets
import socket
import sys
from collections.abc import Callable

import jax
import orbax.checkpoint as ocp
from flax.serialization import to_state_dict
from orbax.checkpoint.checkpoint_managers import preservation_policy

from show_attend_tell import digests, paths
from show_attend_tell.errors import MissingInput, UserError

FORMAT = "show_attend_tell/1"
# Orbax removes a dropped step with rmtree, which a kill can interrupt, leaving a step that
# still looks committed; renaming it here first (atomic) hides it from every later listing.
TRASH = ".deleted"
# A save interrupted by a kill leaves ``<step><this>``. Orbax removes these in a background
# thread when a manager opens, so a listing right after opening could still see them; they are
# removed here, synchronously, first.
TMP_MARKER = ".orbax-checkpoint-tmp"
PENDING = ".pending-digest-"
# Steps that fail verification, moved here (kept for inspection) when training resumes from
# an earlier verified step.
CORRUPT = ".corrupt"
VERIFIED, UNVERIFIED = "verified", "unverified (saved without a digest)"
# A reader's hard-linked copy of the step it reads: ``.pinned-<host>-<pid>-<random>/``. Pruning
# unlinks the step's names, never the files' contents, so the copy stays whole.
PINNED = ".pinned-"
# On an object store orbax writes a step in place and marks it complete with this object last
# (a step without it is never listed); removing it first makes any later removal crash-safe.
COMMIT_MARKER = "commit_success.txt"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, of an unknown format, or does not fit the model."""


class CorruptCheckpoint(CheckpointError):
    """A step's files differ from its digest; ``newest_verified`` is the newest step (below
    it) that still verifies, or None."""

    def __init__(self, step: int, problem: str, newest_verified: int | None):
        self.step, self.problem, self.newest_verified = step, problem, newest_verified
        offer = (f"the newest verified step is {newest_verified}" if newest_verified is not None
                 else "no earlier step verifies")
        super().__init__(f"checkpoint step {step} fails verification: {problem}; {offer}")


class Checkpoints:
    """Save and restore train states and their metadata under ``<workdir>/checkpoints``."""

    def __init__(self, workdir, keep: int = 2, best_metric: str | None = None,
                 read_only: bool = False):
        self.directory = paths.absolute(workdir) / "checkpoints"
        self.local = paths.is_local(self.directory)
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
        if not self.local:
            _check_object_store_client(self.directory)
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"{workdir}: no checkpoints/ directory (train a model there first)")
        if not read_only:
            self._remove_interrupted_saves()
            self._finish_pending_digests()
            self._remove_abandoned_pins()
        self._verified: dict[int, str] = {}
        self.manager = _despite_pruning(lambda: ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                preservation_policy=preservation_policy.AnyPreservationPolicy(policies),
                create=not read_only,
                read_only=read_only,
                # Saves are rare and small here; a synchronous save makes "the checkpoint is
                # on disk" true when save() returns, which the signal handler relies on.
                enable_async_checkpointing=False,
                # Object stores have no atomic rename: orbax ignores this there, and
                # _UncommitFirst makes deletes crash-safe instead.
                todelete_subdir=None if read_only or not self.local else TRASH,
                cleanup_tmp_directories=not read_only,
            ),
            # Handlers given up front let a fresh (e.g. read-only) manager read item metadata.
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()},
        ), self.directory)
        if not read_only:
            self._empty_trash()
            if not self.local:
                self.manager._checkpoint_deleter = _UncommitFirst(  # noqa: SLF001
                    self.manager._checkpoint_deleter, self)  # noqa: SLF001

    def _remove_interrupted_saves(self) -> None:
        """Locally an interrupted save is ``<step>.orbax-checkpoint-tmp-*``; on an object store
        it is a ``<step>/`` without its commit marker (a save or a delete cut short)."""
        if jax.process_index() != 0 or not self.directory.is_dir():
            return
        for path in self.directory.glob(f"*{TMP_MARKER}*"):
            path.rmtree(missing_ok=True)
        if not self.local:
            for path in self.directory.iterdir():
                if path.name.isdigit() and not (path / COMMIT_MARKER).exists():
                    path.rmtree(missing_ok=True)

    def uncommit(self, step: int) -> None:
        """On an object store, remove ``step``'s commit marker (one object: atomic), so that
        the step is no longer listed before any of its other files goes."""
        if not self.local:
            (self.step_dir(step) / COMMIT_MARKER).unlink(missing_ok=True)

    def _finish_pending_digests(self) -> None:
        """A kill between a step's commit and its digest leaves the marker: hash that step
        now (what orbax committed is complete); a kill before the commit left no step."""
        if jax.process_index() != 0 or not self.directory.is_dir():
            return
        for marker in self.directory.glob(f"{PENDING}*"):
            step_dir = self.directory / marker.name[len(PENDING):]
            if self._committed(step_dir) and not digests.has_digest(step_dir):
                digests.write_digest(step_dir)
            marker.unlink()

    def _committed(self, step_dir) -> bool:
        return step_dir.is_dir() and (self.local or (step_dir / COMMIT_MARKER).exists())

    def _remove_abandoned_pins(self) -> None:
        """Pinned copies left by readers of this host that were killed."""
        if jax.process_index() != 0 or not self.directory.is_dir():
            return
        for pin in self.directory.glob(f"{PINNED}*"):
            host, _, rest = pin.name[len(PINNED):].rpartition("-")[0].rpartition("-")
            if host == socket.gethostname() and rest.isdigit() and not _alive(int(rest)):
                pin.rmtree(missing_ok=True)

    @contextlib.contextmanager
    def pinned(self, step: int):
        """A read-only :class:`Checkpoints` over a hard-linked copy of ``step``, so that a
        running ``sat train`` pruning the step cannot remove files while they are read; the copy
        is removed afterwards. Where links cannot be made (read-only folder, no hard links) the
        step is read in place, as it is on an object store (no links there). A step removed
        before the copy was complete raises FileNotFoundError."""
        self.verify(step, state=False)  # a digest deleted in a digested run stays an error
        if not self.local:
            yield self
            return
        source = self.step_dir(step)
        root = self.directory / f"{PINNED}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            local_source = pathlib.Path(source)  # hard links: a local file system's
            for path in sorted(local_source.rglob("*")):
                target = root / "checkpoints" / str(step) / path.relative_to(local_source).as_posix()
                if path.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.link(path, target)
            if not source.is_dir():  # renamed for deletion while linking: the copy may lack files
                raise MissingInput(errno.ENOENT, "step removed while pinned", str(source))
        except FileNotFoundError:
            root.rmtree(missing_ok=True)
            raise
        except OSError:
            root.rmtree(missing_ok=True)
            yield self
            return
        reader = Checkpoints(root, read_only=True)
        try:
            yield reader
        except CorruptCheckpoint as error:  # name the step's own files, offer this run's steps
            problem = error.problem.replace(str(reader.directory), str(self.directory))
            raise CorruptCheckpoint(step, problem, self.newest_verified(below=step)) from None
        finally:
            reader.close()
            root.rmtree(missing_ok=True)

    def _empty_trash(self) -> None:
        if jax.process_index() == 0 and self.local:
            (self.directory / TRASH).rmtree(missing_ok=True)

    def steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def reload(self) -> None:
        """Re-list the steps on disk (another process may have saved or pruned some)."""
        def relisted():
            self.manager.reload()
            return self.manager

        _despite_pruning(relisted, self.directory)
        self._verified.clear()

    def step_dir(self, step: int) -> paths.Path:
        return self.directory / str(step)

    def verify(self, step: int, state: bool = True) -> str:
        """:data:`VERIFIED` or :data:`UNVERIFIED`; files that differ from the digest raise
        :class:`CorruptCheckpoint`. ``state=False`` checks all but the (large) array files."""
        if state and step in self._verified:
            return self._verified[step]
        try:
            status = self._check(step, state)
        except digests.IntegrityError as error:
            raise CorruptCheckpoint(step, str(error), self.newest_verified(below=step)) from None
        if state:
            self._verified[step] = status
        return status

    def _check(self, step: int, state: bool) -> str:
        step_dir = self.step_dir(step)
        if not digests.has_digest(step_dir):
            others = [s for s in self.steps() if s != step and digests.has_digest(self.step_dir(s))]
            pending = (self.directory / f"{PENDING}{step}").exists()
            if others and not pending:
                raise digests.IntegrityError(
                    f"{step_dir / digests.DIGEST_FILE}: missing (deleted?) while steps {others} "
                    "of this run have one")
            return UNVERIFIED
        digests.verify_files(step_dir, (lambda name: True) if state
                             else (lambda name: not name.startswith("state/")))
        return VERIFIED

    def newest_verified(self, below: int | None = None) -> int | None:
        """The newest step (below ``below``) whose files all match its digest."""
        for step in sorted(self.steps(), reverse=True):
            if below is not None and step >= below:
                continue
            try:
                if self._check(step, state=True) == VERIFIED:
                    return step
            except digests.IntegrityError:
                continue
        return None

    def move_aside(self, steps: list[int]) -> paths.Path:
        """Rename ``steps`` into ``.corrupt/`` (kept for inspection, never listed again)."""
        target = self.directory / CORRUPT
        target.mkdir(parents=True, exist_ok=True)
        for step in steps:
            self.uncommit(step)  # an object store copies file by file: unlisted first
            destination, copy = target / str(step), 1
            while destination.exists():
                copy += 1
                destination = target / f"{step}.{copy}"
            self.step_dir(step).rename(destination)
        self.reload()
        return target

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def metric_name(self) -> str | None:
        """The validation metric that ranks steps: the one given, else the run's own
        (``train.eval_metric`` in the newest step's config)."""
        if self.best_metric or self.latest_step() is None:
            return self.best_metric
        config = self.restore_meta(self.latest_step()).get("config", {})
        return config.get("train", {}).get("eval_metric") or None

    def best_step(self) -> int | None:
        """The kept step with the highest validation metric, or None if none was evaluated."""
        metric = self.metric_name()
        scored = []
        for step in self.steps():
            value = self.restore_meta(step).get("validation", {}).get(metric or "")
            if value is not None:
                scored.append((value, step))
        return max(scored)[1] if scored else None

    def choose(self, which: str | int | None) -> tuple[int, str]:
        """(step, how it was chosen): ``None`` picks the best step where the run kept one
        (evaluated on validation), else the latest; otherwise as :meth:`resolve`."""
        if which is None:
            best = self.best_step()
            if best is not None:
                return best, f"best validation {self.metric_name()} (default)"
            return self.resolve("latest"), "latest: no validated step kept (default)"
        step = self.resolve(which)
        return step, ("given step" if isinstance(which, int) or str(which).isdigit()
                      else f"{which} (--checkpoint)")

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
        main = jax.process_index() == 0
        pending = self.directory / f"{PENDING}{step}"
        if main:
            pending.touch()
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            metrics=metrics,
            force=True,
        )
        self.manager.wait_until_finished()
        if main:
            digests.write_digest(self.step_dir(step))
            pending.unlink()
        self._empty_trash()

    def restore_meta(self, step: int) -> dict:
        self.verify(step, state=False)
        try:
            meta = self.manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as error:  # noqa: BLE001  (orbax/JSON errors name no file)
            raise CheckpointError(
                f"{self.step_dir(step) / 'meta'}: unreadable checkpoint metadata "
                f"({_first_line(error)})") from error
        if not isinstance(meta, dict):
            raise CheckpointError(f"{self.step_dir(step) / 'meta'}: metadata is not a JSON object")
        if meta.get("format") != FORMAT:
            raise CheckpointError(
                f"{self.directory / str(step)}: checkpoint format {meta.get('format')!r} is not "
                f"{FORMAT!r} (written by another version of show_attend_tell?)"
            )
        return meta

    def restore_state(self, step: int, abstract_state):
        """Restore into the shapes and shardings of ``abstract_state`` (from ``jax.eval_shape``
        plus shardings); a model whose shapes differ is an error naming the parameters. The
        step's files are verified against its digest first."""
        status = self.verify(step)
        if status != VERIFIED and jax.process_index() == 0:
            print(f"note: checkpoint step {step} is {status}: its files cannot be checked",
                  file=sys.stderr)
        try:
            saved = self.manager.item_metadata(step)["state"]
        except Exception as error:  # noqa: BLE001
            raise CheckpointError(f"{self.step_dir(step) / 'state'}: unreadable array metadata "
                                  f"({_first_line(error)})") from error
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
        except Exception as error:  # noqa: BLE001  (a damaged file of an unverified step)
            raise CheckpointError(f"{self.step_dir(step) / 'state'}: unreadable arrays "
                                  f"({_first_line(error)})") from error
        return restored["state"]

    def close(self) -> None:
        # Opening a manager starts removing temporary folders of killed saves in a thread, and
        # orbax's close() does not wait for it (its save() does): a run that fails right after
        # opening (e.g. its dataset is not built) exited under that thread, which then printed
        # "cannot schedule new futures after interpreter shutdown" with a traceback.
        cleanup = getattr(self.manager, "_cleanup_tmp_directory_future", None)
        if cleanup is not None:
            cleanup.result()
        self.manager.close()


class _UncommitFirst:
    """Orbax's step deleter, removing a step's commit marker before its files: on an object
    store orbax removes a step object by object, and a delete cut short would otherwise leave
    a listed step with files missing. What such a cut leaves is an uncommitted folder, never
    listed, removed when training next opens the folder."""

    def __init__(self, deleter, checkpoints: "Checkpoints"):
        self._deleter, self._checkpoints = deleter, checkpoints

    def delete(self, step: int) -> None:
        if jax.process_index() == 0:
            self._checkpoints.uncommit(step)
        self._deleter.delete(step)

    def delete_steps(self, steps) -> None:
        if jax.process_index() == 0:
            for step in steps:
                self._checkpoints.uncommit(step)
        self._deleter.delete_steps(steps)

    def close(self) -> None:
        self._deleter.close()


def _despite_pruning(list_steps: Callable[[], ocp.CheckpointManager], directory,
                     attempts: int = 5) -> ocp.CheckpointManager:
    """``list_steps()`` (a manager that has listed the steps), listed again where a step vanished
    under it. Orbax lists the step folders, then checks and reads each one: a `sat train` that
    prunes a step in between (a reader takes no lock) makes the read fail with
    FileNotFoundError, or drops the step silently when it is gone before its check. Where the
    step saved to replace it was still a temporary folder when listed, nothing is left: a
    listing with no step while a step folder is on disk is taken again too."""
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            manager = list_steps()
        except FileNotFoundError:
            if last:
                raise
            continue
        if last or manager.all_steps() or not _has_step_folder(directory):
            return manager
    raise AssertionError("unreachable")


def _has_step_folder(directory) -> bool:
    return directory.is_dir() and any(path.name.isdigit() for path in directory.iterdir())


def _check_object_store_client(directory) -> None:
    """Orbax lists and deletes steps under ``gs://`` after asking the bucket (with
    google-cloud-storage) whether it has a hierarchical namespace: without that package a run
    would fail at its first listing; say so up front instead."""
    # Imported here, on gs:// only: a private orbax module, which an orbax release may move;
    # local runs should not depend on it.
    from orbax.checkpoint._src.path import gcs_utils

    try:
        gcs_utils.is_hierarchical_namespace_enabled(directory)
    except ImportError as error:
        raise CheckpointError(
            f"{directory}: orbax needs google-cloud-storage for gs:// checkpoints ({error}); "
            "pip install 'show_attend_tell[gcs]'") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _first_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


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
