"""Checkpoint integrity: every committed step carries a digest, and every restore checks it.

One smoke run saved at steps 6 and 12 is copied and damaged the ways disks and people damage
files (one bit flipped in each data file, truncation, deletion, a corrupt metadata JSON, a
deleted or corrupt digest); `sat evaluate` must refuse each with one line naming the step and
the file and offering step 6, and write no report. `sat train` refuses a corrupt latest step
unless told `--resume_from=verified`, then resumes from step 6 to the same bits as the run
that was never damaged.
"""

import json
import random
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from test_bad_inputs import assert_one_line_error, sat, snapshot
from test_reliability import STEPS
from test_reliability import overrides as smoke_overrides

from show_attend_tell.checkpoints import PENDING, VERIFIED, Checkpoints
from show_attend_tell.config_loading import config_from_args
from show_attend_tell.train import TrainingDiverged, train_and_evaluate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, tiny_shapes):
    """A smoke run with checkpoints at steps 6 and 12, and its `sat train` arguments."""
    workdir = tmp_path_factory.mktemp("saved")
    overrides = smoke_overrides(tiny_shapes) + ["train.checkpoint_every=6"]
    train_and_evaluate(config_from_args("configs/shapes.py:smoke", overrides), workdir)
    assert Checkpoints(workdir, read_only=True).steps() == [6, STEPS]
    argv = ["train", "--config", "configs/shapes.py:smoke", "--workdir", str(workdir)]
    return workdir, argv + [f"--config.{item}" for item in overrides]


def copy_of(run, target: Path) -> tuple[Path, list[str]]:
    workdir, argv = run
    shutil.copytree(workdir, target)
    return target, [str(target) if item == str(workdir) else item for item in argv]


def step_files(workdir: Path, step: int = STEPS) -> list[Path]:
    folder = workdir / "checkpoints" / str(step)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "digest.json")


def flip_bit(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    position = rng.randrange(len(data))
    data[position] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def data_files(workdir: Path) -> list[Path]:
    """The array data files of step 12 (orbax's OCDBT data and index files)."""
    return [p for p in step_files(workdir) if "/state/" in p.as_posix()]


def test_every_step_has_a_digest_that_verifies(saved_run):
    checkpoints = Checkpoints(saved_run[0], read_only=True)
    assert [checkpoints.verify(step) for step in checkpoints.steps()] == [VERIFIED, VERIFIED]
    digest = json.loads((saved_run[0] / "checkpoints" / "12" / "digest.json").read_text())
    listed = sorted(digest["files"])
    assert listed == sorted(p.relative_to(saved_run[0] / "checkpoints" / "12").as_posix()
                            for p in step_files(saved_run[0]))
    assert not list((saved_run[0] / "checkpoints").glob(f"{PENDING}*"))


def test_one_bit_flipped_in_any_state_file_is_refused_by_evaluate(saved_run, tmp_path, capsys):
    rng = random.Random(17)
    names = [p.relative_to(saved_run[0]) for p in data_files(saved_run[0])]
    assert len(names) >= 4
    for number, name in enumerate(names):
        workdir, _ = copy_of(saved_run, tmp_path / f"flip{number}")
        flip_bit(workdir / name, rng)
        before = snapshot(workdir)
        code, err = sat(["evaluate", "--workdir", str(workdir), "--checkpoint", "latest"], capsys)
        assert_one_line_error(code, err, "checkpoint step 12 fails verification",
                              f"{workdir / name}: contents differ", "newest verified step is 6",
                              "--checkpoint 6")
        assert snapshot(workdir) == before and not (workdir / "eval").exists()


DAMAGE = {
    "data file truncated": (lambda w: max(data_files(w), key=lambda p: p.stat().st_size),
                            lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                            "truncated"),
    "data file deleted": (lambda w: max(data_files(w), key=lambda p: p.stat().st_size),
                          Path.unlink, "file missing"),
    "metadata JSON truncated": (lambda w: w / "checkpoints/12/meta/metadata",
                                lambda p: p.write_bytes(p.read_bytes()[:20]), "truncated"),
    "metadata JSON edited, still valid": (
        lambda w: w / "checkpoints/12/meta/metadata",
        lambda p: p.write_text(p.read_text().replace('"seed": 0', '"seed": 1')), "corrupt"),
    "digest deleted": (lambda w: w / "checkpoints/12/digest.json", Path.unlink,
                       "missing (deleted?) while steps [6]"),
    "digest corrupt": (lambda w: w / "checkpoints/12/digest.json",
                       lambda p: p.write_text(p.read_text()[:-40]), "digest itself is unreadable"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_files_are_one_line_naming_the_file(saved_run, tmp_path, case, capsys):
    target, damage, words = DAMAGE[case]
    workdir, argv = copy_of(saved_run, tmp_path / "run")
    path = target(workdir)
    damage(path)
    before = snapshot(workdir)
    for command in (["evaluate", "--workdir", str(workdir)], argv):
        code, err = sat(command, capsys)
        assert_one_line_error(code, err, "checkpoint step 12 fails verification", f"{path}: ",
                              words, "newest verified step is 6")
        assert snapshot(workdir) == before


def test_train_refuses_a_corrupt_latest_step_and_resumes_from_the_verified_one_when_told(
        saved_run, tmp_path, capsys):
    workdir, argv = copy_of(saved_run, tmp_path / "run")
    flip_bit(max(data_files(workdir), key=lambda p: p.stat().st_size), random.Random(3))
    before = snapshot(workdir)
    code, err = sat(argv, capsys)
    assert_one_line_error(code, err, "fails verification", "--resume_from=verified",
                          "resume from step 6")
    assert snapshot(workdir) == before

    from show_attend_tell.cli import main

    main(argv + ["--resume_from=verified"])
    err = capsys.readouterr().err
    assert "WARNING: resuming from step 6" in err and ".corrupt" in err
    assert (workdir / "checkpoints" / ".corrupt" / "12").is_dir()  # kept for inspection
    resumed = Checkpoints(workdir, read_only=True)
    original = Checkpoints(saved_run[0], read_only=True)
    assert resumed.steps() == [6, 12] and resumed.verify(12) == VERIFIED
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(original.manager.restore(12)["state"]),
                            jax.tree.leaves(resumed.manager.restore(12)["state"]), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def test_checkpoints_without_digests_load_as_unverified(saved_run, tmp_path, capsys):
    workdir, _ = copy_of(saved_run, tmp_path / "old")
    for digest in (workdir / "checkpoints").glob("*/digest.json"):
        digest.unlink()  # as written before digests existed
    from show_attend_tell.cli import main

    main(["evaluate", "--workdir", str(workdir), "--num_images", "2"])
    captured = capsys.readouterr()
    assert "checkpoint step 12 is unverified (saved without a digest)" in captured.err
    assert "checkpoint_step=12" in captured.out


def test_a_kill_between_commit_and_digest_is_finished_when_training_reopens(tmp_path):
    state = {"params": {"w": np.arange(5.0)}}
    checkpoints = Checkpoints(tmp_path, keep=3)
    checkpoints.save(1, state, {})
    checkpoints.save(2, state, {})
    folder = tmp_path / "checkpoints"
    (folder / "2" / "digest.json").unlink()  # the kill landed after orbax's commit ...
    (folder / f"{PENDING}2").touch()  # ... and before the digest was written
    reader = Checkpoints(tmp_path, read_only=True)
    assert reader.verify(2) != VERIFIED  # unverified, not an error: the marker says why
    Checkpoints(tmp_path, keep=3)  # training reopens the folder
    assert not (folder / f"{PENDING}2").exists()
    assert Checkpoints(tmp_path, read_only=True).verify(2) == VERIFIED


def test_nan_from_an_unverified_state_does_not_blame_the_learning_rate(saved_run, tmp_path):
    workdir, argv = copy_of(saved_run, tmp_path / "run")
    checkpoints = Checkpoints(workdir, keep=5)
    restored = checkpoints.manager.restore(6)
    state, meta = restored["state"], restored["meta"]
    output = state["params"]["step_module"]["output"]
    output["kernel"] = np.full_like(np.asarray(output["kernel"]), np.nan)  # a flipped exponent
    shutil.rmtree(workdir / "checkpoints" / "6")
    shutil.rmtree(workdir / "checkpoints" / "12")
    checkpoints = Checkpoints(workdir, keep=5)
    checkpoints.save(6, state, {k: v for k, v in meta.items() if k != "format"})
    (workdir / "checkpoints" / "6" / "digest.json").unlink()  # an old, undigested run
    config = config_from_args("configs/shapes.py:smoke",
                              [a.removeprefix("--config.") for a in argv if a.startswith("--config.")])
    with pytest.raises(TrainingDiverged) as error:
        train_and_evaluate(config, workdir)
    message = str(error.value)
    assert "resumed from step 6, whose checkpoint has no digest" in message
    assert "Lower config.train.learning_rate" not in message
