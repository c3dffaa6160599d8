"""Checkpoint round trips and the errors that protect existing checkpoints."""

import functools
import json
import shutil

import jax
import numpy as np
import optax
import pytest

from configs.shapes import get_config
from show_attend_tell import parallel
from show_attend_tell.checkpoints import CheckpointError, Checkpoints
from show_attend_tell.digests import write_digest
from show_attend_tell.models.captioner import build_captioner
from show_attend_tell.state import make_optimizer, sharded_state


@functools.cache
def state_for(hidden=16, vocab=9):
    config = get_config("smoke")
    config.model.hidden_dim = hidden
    model = build_captioner(config.model, vocab)
    tx = make_optimizer(config.train)
    state, _ = sharded_state(model, tx, 0, parallel.make_mesh())
    return state


def trained(state):
    """``state`` after two Adam updates with random gradients: moments and count non-zero, so
    a restore that kept the initial optimizer state would differ."""
    tx = make_optimizer(get_config("smoke").train)
    leaves, tree = jax.tree.flatten(state.params)
    rng = np.random.default_rng(0)

    @jax.jit
    def update(state, grads):
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return state.replace(params=optax.apply_updates(state.params, updates),
                             opt_state=opt_state)

    for _ in range(2):
        state = update(state, jax.tree.unflatten(
            tree, [rng.normal(size=x.shape).astype(np.float32) for x in leaves]))
    return state


def test_round_trip_restores_every_leaf_bitwise(tmp_path):
    state = trained(state_for())
    assert any(np.abs(np.asarray(a)).max() > 0 for a in jax.tree.leaves(state.opt_state))
    state = state.replace(baseline=state.baseline + 1.5, step=state.step + 7)
    checkpoints = Checkpoints(tmp_path, keep=2)
    checkpoints.save(7, state, {"vocabulary": {"words": ["a"]}, "data_iterator": {"epoch": 1}})
    restored = checkpoints.restore_state(7, state_for())
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(a, b)
    assert restored.params["step_module"]["output"]["kernel"].sharding.is_fully_replicated
    meta = checkpoints.restore_meta(7)
    assert meta["data_iterator"] == {"epoch": 1} and meta["format"].startswith("show_attend")


def test_keeps_latest_k_plus_best(tmp_path):
    state = state_for()
    checkpoints = Checkpoints(tmp_path, keep=2, best_metric="CIDEr")
    for step, cider in [(1, 5.0), (2, 50.0), (3, 10.0), (4, None), (5, None)]:
        checkpoints.save(step, state, {}, {"CIDEr": cider} if cider is not None else None)
    assert checkpoints.steps() == [2, 4, 5]
    assert checkpoints.best_step() == 2
    assert checkpoints.resolve("best") == 2 and checkpoints.resolve("latest") == 5
    assert checkpoints.resolve("4") == 4
    with pytest.raises(CheckpointError, match=r"no checkpoint at step 3; have \[2, 4, 5\]"):
        checkpoints.resolve(3)


def test_model_with_other_shapes_is_a_clear_error(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(1, state_for(hidden=16), {})
    with pytest.raises(CheckpointError, match=r"does not fit the model: .*saved \(16.*model \(8"):
        checkpoints.restore_state(1, state_for(hidden=8))


def test_unknown_format_and_missing_checkpoints(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(1, state_for(), {})
    meta_file = next((tmp_path / "checkpoints" / "1" / "meta").glob("*"))
    meta = json.loads(meta_file.read_text())
    meta["format"] = "show_attend_tell/99"
    meta_file.write_text(json.dumps(meta))
    write_digest(tmp_path / "checkpoints" / "1")  # as the other version would have
    with pytest.raises(CheckpointError, match="format 'show_attend_tell/99' is not"):
        Checkpoints(tmp_path, read_only=True).restore_meta(1)
    with pytest.raises(CheckpointError, match="no checkpoints/ directory"):
        Checkpoints(tmp_path / "empty", read_only=True)
    (tmp_path / "fresh" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="no checkpoint to restore"):
        Checkpoints(tmp_path / "fresh", read_only=True).resolve("latest")


def test_default_choice_is_the_best_validated_step_else_the_latest(tmp_path):
    state = state_for()
    meta = {"config": {"train": {"eval_metric": "CIDEr"}}}
    checkpoints = Checkpoints(tmp_path, keep=2, best_metric="CIDEr")
    checkpoints.save(1, state, meta)
    reader = Checkpoints(tmp_path, read_only=True)  # as `sat evaluate` opens a run
    assert reader.choose(None) == (1, "latest: no validated step kept (default)")
    for step, cider in [(2, 50.0), (3, 10.0), (4, None)]:
        checkpoints.save(step, state, meta, {"CIDEr": cider} if cider is not None else None)
    reader = Checkpoints(tmp_path, read_only=True)
    assert reader.choose(None) == (2, "best validation CIDEr (default)")
    assert reader.choose("best") == (2, "best (--checkpoint)")
    assert reader.choose("latest") == (4, "latest (--checkpoint)")
    assert reader.choose("3") == (3, "given step")


def test_close_waits_for_orbax_clean_up_of_killed_saves(tmp_path, monkeypatch):
    """Opening starts removing a killed save's temporary folders in a background thread; a run
    that fails at once (dataset not built) closes right away, and if close() left that thread
    running the interpreter exited under it, printing a traceback."""
    import asyncio

    from orbax.checkpoint._src.path import temporary_paths

    original = temporary_paths.all_temporary_paths

    async def slow(*args, **kwargs):
        await asyncio.sleep(1.0)
        return await original(*args, **kwargs)

    monkeypatch.setattr(temporary_paths, "all_temporary_paths", slow)
    checkpoints = Checkpoints(tmp_path / "run")
    cleanup = checkpoints.manager._cleanup_tmp_directory_future  # noqa: SLF001
    assert cleanup is not None
    checkpoints.close()
    assert not cleanup._t.is_alive()  # noqa: SLF001


def test_a_reader_lists_the_steps_left_when_one_is_pruned_while_it_lists(tmp_path, monkeypatch):
    """`sat train` prunes a step after orbax listed the step folders and before it reads that
    step's metadata (test_reliability's pruning race caught it): opening and reloading a reader
    list the steps that are left instead of failing with FileNotFoundError."""
    from orbax.checkpoint._src.path import step as step_lib

    writer = Checkpoints(tmp_path, keep=3)
    for step in (1, 2, 3):
        writer.save(step, state_for(), {"vocabulary": {"words": ["a"]}})
    writer.close()
    real_find_all, pruned = step_lib._StandardNameFormat.find_all, []

    def find_all_then_prune_the_oldest(self, base_path):
        listed = list(real_find_all(self, base_path))
        if not pruned:
            oldest = min(metadata.step for metadata in listed)
            shutil.rmtree(tmp_path / "checkpoints" / str(oldest))
            pruned.append(oldest)
        return iter(listed)

    monkeypatch.setattr(step_lib._StandardNameFormat, "find_all", find_all_then_prune_the_oldest)
    reader = Checkpoints(tmp_path, read_only=True)
    assert pruned == [1] and reader.steps() == [2, 3]
    pruned.clear()
    reader.reload()
    assert pruned == [2] and reader.steps() == [3]
    reader.close()


def test_a_reader_lists_again_when_pruning_left_its_listing_empty(tmp_path, monkeypatch):
    """Orbax drops a listed step that is gone before its finalization check, and the step saved
    to replace it may still have been a temporary folder when listed: the listing comes back
    empty while a step is on disk (test_reliability's pruning race caught it: "no checkpoint to
    restore"). Opening and reloading a reader list again."""
    from orbax.checkpoint._src.path import step as step_lib

    writer = Checkpoints(tmp_path, keep=1)
    writer.save(7, state_for(), {"vocabulary": {"words": ["a"]}})
    writer.close()
    real_find_all, calls = step_lib._StandardNameFormat.find_all, []

    def empty_on_the_first_call(self, base_path):
        calls.append(base_path)
        return iter([]) if len(calls) == 1 else real_find_all(self, base_path)

    monkeypatch.setattr(step_lib._StandardNameFormat, "find_all", empty_on_the_first_call)
    reader = Checkpoints(tmp_path, read_only=True)
    assert len(calls) == 2 and reader.steps() == [7] and reader.latest_step() == 7
    calls.clear()
    reader.reload()
    assert len(calls) == 2 and reader.steps() == [7]
    reader.close()
    # A folder with no step in it is listed once: an empty listing is believed there.
    calls.clear()
    empty = Checkpoints(tmp_path / "fresh")
    assert len(calls) == 1 and empty.steps() == []
    empty.close()
