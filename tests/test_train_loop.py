"""The training loop on a tiny shapes dataset: exact resume, config mismatch, NaN stop."""

import jax
import numpy as np
import pytest

from configs.shapes import get_config
from show_attend_tell.checkpoints import CheckpointError, Checkpoints
from show_attend_tell.train import TrainingDiverged, train_and_evaluate

pytestmark = pytest.mark.slow


def tiny_config(data_dir, variant="smoke_hard", **train):
    config = get_config(variant)
    config.data.data_dir = str(data_dir)
    config.data.builder_config = "tiny"
    config.data.bucket_boundaries = (24,)  # one shape: one compilation
    config.train.schedule = "constant"  # independent of train.steps, so runs can be extended
    config.train.eval_every = 0
    config.train.log_every = 1
    for key, value in train.items():
        config.train[key] = value
    return config


def test_resumed_run_equals_uninterrupted_run_bitwise(tiny_shapes, tmp_path, monkeypatch):
    straight = train_and_evaluate(tiny_config(tiny_shapes, steps=6, checkpoint_every=3),
                                  tmp_path / "straight")
    train_and_evaluate(tiny_config(tiny_shapes, steps=3, checkpoint_every=3), tmp_path / "resumed")

    def no_initialisation(*args, **kwargs):
        raise AssertionError("a resumed run restores into shapes; it initialises no state")

    # A state initialised only to be overwritten costs a random init (seconds for VGG-19) and
    # a second copy of the parameters while the checkpoint is read.
    monkeypatch.setattr("show_attend_tell.train.sharded_state", no_initialisation)
    resumed = train_and_evaluate(tiny_config(tiny_shapes, steps=6, checkpoint_every=3),
                                 tmp_path / "resumed")
    assert int(resumed.step) == int(straight.step) == 6
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert Checkpoints(tmp_path / "resumed", read_only=True).steps() == [3, 6]
    logged = (tmp_path / "resumed" / "metrics.jsonl").read_text().count('"train/loss"')
    assert logged == 6


def test_changed_config_on_existing_workdir_is_an_error_and_changes_nothing(tiny_shapes, tmp_path):
    train_and_evaluate(tiny_config(tiny_shapes, steps=1, checkpoint_every=1), tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    config = tiny_config(tiny_shapes, steps=2)
    config.model.hidden_dim = 8
    config.train.learning_rate = 0.5
    with pytest.raises(CheckpointError, match=r"model.hidden_dim: 16 -> 8; train.learning_rate"):
        train_and_evaluate(config, tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_indivisible_eval_batch_fails_before_the_first_step(tiny_shapes, tmp_path, capsys):
    """Validation would meet it only at its first run (hours in): start-up names the key."""
    from show_attend_tell.cli import main

    with pytest.raises(SystemExit) as error:
        main(["train", "--config", "configs/shapes.py:smoke", "--workdir", str(tmp_path),
              f"--config.data.data_dir={tiny_shapes}", "--config.data.builder_config=tiny",
              "--config.train.steps=2", "--config.train.eval_every=2",
              "--config.eval.batch_size=6"])
    assert error.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "sat train: error: config.eval.batch_size=6 must be a multiple of the number of "
        "devices (4)")
    assert not (tmp_path / "metrics.jsonl").exists()  # no step ran
    assert Checkpoints(tmp_path, read_only=True).steps() == []


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_shapes, tmp_path):
    config = tiny_config(tiny_shapes, "smoke", steps=6, checkpoint_every=1, learning_rate=1e30,
                         grad_clip_norm=1e30, warmup_steps=0)
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train_and_evaluate(config, tmp_path)
    checkpoints = Checkpoints(tmp_path, read_only=True)
    last = checkpoints.latest_step()
    assert last is not None and last < 6
    state = checkpoints.manager.restore(last)["state"]
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state["params"]))


def test_patience_survives_a_resume(tiny_shapes, tmp_path, monkeypatch, capsys):
    """Validation that never improves: with patience 3 the run stops at the 4th evaluation,
    interrupted or not (the count is saved with each checkpoint)."""
    from show_attend_tell import train

    monkeypatch.setattr(train, "evaluate_split", lambda *args, **kwargs: {"CIDEr": 1.0})

    def run(steps, workdir):
        config = tiny_config(tiny_shapes, "smoke", steps=steps, checkpoint_every=1, eval_every=1,
                             patience=3)
        return int(train_and_evaluate(config, workdir).step)

    assert run(12, tmp_path / "straight") == 4
    assert run(2, tmp_path / "resumed") == 2  # evaluations 1 (best) and 2 (1 without gain)
    assert run(12, tmp_path / "resumed") == 4
    assert capsys.readouterr().out.count("early stopping at step 4") == 2
    meta = Checkpoints(tmp_path / "resumed", read_only=True).restore_meta(4)
    assert meta["early_stopping"] == {"best": 1.0, "evaluations_since_best": 3}
