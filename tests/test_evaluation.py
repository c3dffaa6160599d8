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
