"""`sat evaluate`, `sat caption` and `sat compare` on a run trained for two steps."""

import base64
import json

import numpy as np
import pytest
from PIL import Image

from show_attend_tell.cli import main
from show_attend_tell.compare import compare_runs
from show_attend_tell.config_loading import config_from_args
from show_attend_tell.grounding import scene_correct
from show_attend_tell.train import train_and_evaluate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_shapes):
    run = tmp_path_factory.mktemp("run")
    config = config_from_args("configs/shapes.py:smoke", [
        f"data.data_dir={tiny_shapes}", "data.builder_config=tiny", "train.eval_every=0"])
    train_and_evaluate(config, run)
    return run


def test_evaluate_writes_metrics_for_every_test_image(run_dir, capsys):
    main(["evaluate", "--workdir", str(run_dir), "--split", "test", "--beam_size", "2"])
    report = json.loads((run_dir / "eval" / "test_2.json").read_text())
    assert report["protocol"]["images"] == 12 and report["protocol"]["beam_size"] == 2
    assert len({c["image_id"] for c in report["captions"]}) == 12
    for name in ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "scene_accuracy"):
        assert name in report["metrics"]
    assert report["metrics"]["SPICE"] is None
    assert "CIDEr" in capsys.readouterr().out
    for record in report["captions"]:  # what the HTML report draws, per image
        words = record["caption"].split()
        cells = record["attention"]["cells"]
        assert cells == 64  # the smoke encoder's 8×8 map
        assert len(record["attention"]["peak"]) == len(record["locations"]) == len(words)
        q = np.frombuffer(base64.b64decode(record["attention"]["q"]), np.uint8).reshape(len(words), cells)
        assert np.all(q.max(axis=1) == 255)  # each word scaled to its own peak
        assert all(0 <= loc < cells for loc in record["locations"])
        assert record["scene_correct"] == scene_correct(words, record["objects"])


def test_caption_writes_overlays_and_survives_a_bad_file(run_dir, tmp_path, capsys):
    good = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 4), np.uint8),
                    "RGBA").convert("CMYK").save(good)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(SystemExit) as exit_info:
        main(["caption", "--workdir", str(run_dir), str(bad), str(good), "--out",
              str(tmp_path / "out")])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "not a readable image" in captured.err
    assert str(good) in captured.out
    overlay = Image.open(tmp_path / "out" / "photo_attention.png")
    assert overlay.size[0] > 64 and overlay.size[1] > 64


def test_compare_reports_runs_and_what_they_lack(run_dir, tmp_path):
    main(["evaluate", "--workdir", str(run_dir), "--split", "test", "--beam_size", "1"])
    empty = tmp_path / "never_trained"
    empty.mkdir()
    report = compare_runs([str(run_dir), str(empty)], str(tmp_path / "report"), images=1)
    text = report.read_text()
    assert f"| {run_dir.name} | soft | 2 |" in text
    assert "never_trained** lacks: metrics.jsonl" in text
    assert (tmp_path / "report" / "training.png").is_file()
    assert list((tmp_path / "report").glob("attention_0_*.png"))
    page = (tmp_path / "report" / "index.html").read_text()
    assert f'<th scope="row">{run_dir.name}</th>' in page
    assert len(list((tmp_path / "report" / "images").iterdir())) == 12
    compare_runs([str(run_dir)], str(tmp_path / "no_overlays"), images=0)  # --images 0
    assert not list((tmp_path / "no_overlays").glob("attention_*.png"))
    assert (tmp_path / "no_overlays" / "index.html").is_file()


def test_reports_are_named_by_what_was_measured_and_never_replace_another(run_dir, capsys):
    main(["evaluate", "--workdir", str(run_dir)])  # the whole split at the config's beam (2)
    full = run_dir / "eval" / "test_2.json"
    before = full.read_bytes()
    out = capsys.readouterr().out
    assert "checkpoint_step=2, checkpoint_chosen=latest: no validated step kept (default)" in out
    main(["evaluate", "--workdir", str(run_dir), "--num_images", "3"])
    main(["evaluate", "--workdir", str(run_dir), "--num_images", "3", "--beam_size", "1"])
    assert full.read_bytes() == before
    partial = json.loads((run_dir / "eval" / "test_2_3images.json").read_text())
    assert partial["protocol"]["images"] == 3 and partial["protocol"]["beam_size"] == 2
    assert json.loads((run_dir / "eval" / "test_2_beam1_3images.json").read_text())[
        "protocol"]["beam_size"] == 1
    from show_attend_tell.compare import read_run

    assert read_run(run_dir)["test"]["protocol"]["images"] == 12  # never a partial report


def test_an_existing_report_of_another_measurement_is_refused(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "eval").mkdir(exist_ok=True)
    other = copy / "eval" / "test_2.json"  # e.g. written from another dataset build
    other.write_text(json.dumps({"protocol": {"images": 1000, "split": "test"}}))
    before = other.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--workdir", str(copy)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "not overwritten" in err and "images: 1000 -> 12" in err
    assert other.read_bytes() == before


def test_caption_outputs_of_files_with_the_same_name_do_not_collide(run_dir, tmp_path, capsys):
    paths = []
    for folder, color in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "x.png")
        Image.new("RGB", (40, 40), color).save(paths[-1])
    main(["caption", "--workdir", str(run_dir), *map(str, paths), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    overlays = [tmp_path / "out" / folder / "x_attention.png" for folder in ("a", "b")]
    assert all(path.is_file() for path in overlays)
    assert overlays[0].read_bytes() != overlays[1].read_bytes()
    assert "checkpoint step 2 (latest: no validated step kept (default))" in captured.err


def test_compare_labels_runs_whose_folders_share_a_name(run_dir, tmp_path):
    import shutil

    runs = [tmp_path / "a" / "run", tmp_path / "b" / "run"]
    for run in runs:
        shutil.copytree(run_dir, run)
    report = compare_runs([str(r) for r in runs], str(tmp_path / "report"), images=1)
    text = report.read_text()
    assert "| a-run | soft |" in text and "| b-run | soft |" in text
    assert {p.name for p in (tmp_path / "report").glob("attention_0_*.png")} == {
        "attention_0_a-run.png", "attention_0_b-run.png"}


def test_evaluate_survives_its_step_being_pruned_before_it_is_pinned(run_dir, tmp_path, capsys,
                                                                     monkeypatch):
    """The step chosen is pruned before the reader pins it (the real race, with training in
    another process, is in test_reliability.py): the next choice is used and named."""
    import shutil

    from show_attend_tell.checkpoints import Checkpoints

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    original = Checkpoints.pinned
    pruned = []

    def prune_first(self, step):
        if not pruned:  # what a running `sat train` does to a step it drops
            pruned.append(step)
            (copy / "checkpoints" / ".deleted").mkdir()
            (copy / "checkpoints" / str(step)).rename(copy / "checkpoints" / ".deleted" / str(step))
        return original(self, step)

    monkeypatch.setattr(Checkpoints, "pinned", prune_first)
    main(["evaluate", "--workdir", str(copy), "--num_images", "2"])
    captured = capsys.readouterr()
    assert pruned == [2]
    assert "checkpoint step 2 was removed while it was read" in captured.err
    assert "checkpoint_step=1, checkpoint_chosen=latest: no validated step kept (default); " \
           "step 2 was pruned while read" in captured.out
    assert not list((copy / "checkpoints").glob(".pinned-*"))  # the pinned copy is gone
