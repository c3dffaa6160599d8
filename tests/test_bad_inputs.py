"""The bad-input corpus: messy images, captions, Karpathy JSON, configs, checkpoints, flags.

A bad input is a one-line error naming the file or key and what was expected, a non-zero exit
and no change to any existing file; an odd but valid input (grayscale, CMYK, 16-bit, 1x1,
48-megapixel images; empty, emoji, overlong or out-of-vocabulary captions) just works.
Cases already covered elsewhere are not repeated here: test_cli.py (unknown subcommand or
flag, unknown config key, wrong type, missing config file, evaluate without checkpoints/),
test_karpathy.py (every JSON error at the reader), test_checkpoints.py (shape mismatch and
unknown format at the API) and test_vocab.py / test_pipeline.py (tokenising, counting).
"""

import io
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_karpathy import make_dummy
from test_reliability import STEPS
from test_reliability import overrides as smoke_overrides

from show_attend_tell.checkpoints import CheckpointError, Checkpoints
from show_attend_tell.cli import main
from show_attend_tell.config_loading import ConfigError, config_from_args
from show_attend_tell.data import pipeline
from show_attend_tell.data.images import encoded_rgb, load_image_rgb, resize_and_crop
from show_attend_tell.data.vocab import END, UNK
from show_attend_tell.digests import write_digest
from show_attend_tell.train import train_and_evaluate
from show_attend_tell.workdir_lock import LOCK_FILE

SIZE = 32


# ------------------------------------------------------------------------------ helpers
def snapshot(*folders: Path) -> dict:
    """Every file under ``folders`` -> (bytes, mtime in ns); the workdir lock file, which
    records its last holder, is bookkeeping rather than a result and is left out."""
    return {path: (path.read_bytes(), path.stat().st_mtime_ns)
            for folder in folders for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != LOCK_FILE}


def sat(argv: list[str], capsys) -> tuple[int, str]:
    """Run the CLI in-process: (exit status, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *names: str) -> None:
    """Exit status 1 and stderr ending in one error line that contains ``names`` (progress
    bars drawn before it with carriage returns are not lines)."""
    lines = [line for line in re.split(r"[\r\n]+", err) if line.strip()]
    assert code == 1 and lines and "Traceback" not in err, (code, err)
    assert lines[-1].startswith("sat") and sum("error" in line for line in lines) == 1, err
    for name in names:
        assert name in lines[-1], (name, lines[-1])


# ------------------------------------------------------------------------------- images
def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def half_transparent_red() -> Image.Image:
    pixels = np.zeros((20, 20, 4), np.uint8)
    pixels[:, :10] = (255, 0, 0, 255)  # left half opaque red, right half fully transparent
    return Image.fromarray(pixels, "RGBA")


# name -> (file bytes, the RGB the left and right halves must read as)
ODD_IMAGES = {
    "gray.jpg": (lambda: encoded(Image.new("L", (40, 30), 90), "JPEG"), (90, 90, 90), (90, 90, 90)),
    "rgba.png": (lambda: encoded(half_transparent_red(), "PNG"), (255, 0, 0), (255, 255, 255)),
    "cmyk.jpg": (lambda: encoded(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG"),
                 (255, 0, 0), (255, 0, 0)),
    "16bit.png": (lambda: encoded(Image.fromarray(np.full((30, 40), 65535, np.uint16)), "PNG"),
                  (255, 255, 255), (255, 255, 255)),
    "1x1.png": (lambda: encoded(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"),
                (10, 200, 30), (10, 200, 30)),
    "48mp.jpg": (lambda: encoded(Image.new("RGB", (8000, 6000), (30, 60, 90)), "JPEG"),
                 (30, 60, 90), (30, 60, 90)),
}

BAD_IMAGES = {
    "corrupt.jpg": lambda: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4,
    "truncated.jpg": lambda: encoded(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")[:300],
    "zero_bytes.jpg": lambda: b"",
    "text.jpg": lambda: b"this is a caption file, not a photo\n",
}


def assert_halves(rgb: np.ndarray, left, right) -> None:
    assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
    np.testing.assert_allclose(rgb[:, 2], np.broadcast_to(left, (SIZE, 3)), atol=3)
    np.testing.assert_allclose(rgb[:, -3], np.broadcast_to(right, (SIZE, 3)), atol=3)


@pytest.mark.parametrize("name", ODD_IMAGES)
def test_odd_images_read_as_rgb_for_captioning_and_datasets(tmp_path, name):
    make, left, right = ODD_IMAGES[name]
    path = tmp_path / name
    path.write_bytes(make())
    assert_halves(load_image_rgb(path, SIZE), left, right)  # `sat caption`
    stored = encoded_rgb(path)  # what the Karpathy builder stores, as training decodes it
    assert_halves(resize_and_crop(tf.constant(stored), SIZE).numpy(), left, right)


@pytest.mark.parametrize("reader", [lambda path: load_image_rgb(path, SIZE), encoded_rgb],
                         ids=["caption", "dataset"])
@pytest.mark.parametrize("name", BAD_IMAGES)
def test_unreadable_images_are_one_line_errors_naming_the_file(tmp_path, name, reader):
    path = tmp_path / name
    path.write_bytes(BAD_IMAGES[name]())
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="expected a JPEG") as error:
        reader(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
    assert snapshot(tmp_path) == before


def test_image_over_the_decompression_limit_is_an_error_not_a_crash(tmp_path, monkeypatch):
    path = tmp_path / "panorama.png"
    path.write_bytes(encoded(Image.new("RGB", (30, 20)), "PNG"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 600 pixels > 2 x limit
    for reader in (lambda p: load_image_rgb(p, SIZE), encoded_rgb):
        with pytest.raises(ValueError, match=r"panorama.png: not a readable image.*exceeds limit"):
            reader(path)


# ------------------------------------------------------------------------------ captions
MESSY_CAPTIONS = [
    "",  # empty
    "   \t ",  # whitespace only
    "🐶🐶🐶",  # nothing but emoji: no words
    "Un café über-cool 🐶 dog!",  # non-ASCII words survive, the emoji goes
    "un café über cool dog",
    "a zebrafish dog runs",  # "zebrafish" is seen once: below vocab_min_count=2, <unk>
    "a dog runs " * 150,  # 450 words: truncated to max_caption_length
    "a dog runs",
]


@pytest.fixture(scope="module")
def messy_captions_data(tmp_path_factory):
    """A Flickr8k-style dataset whose training captions are the messy ones above."""
    root = make_dummy(tmp_path_factory.mktemp("messy"), "flickr8k")
    annotations = json.loads((root / "dataset_flickr8k.json").read_text())
    for number, entry in enumerate(annotations["images"]):
        if entry["split"] == "train":
            for sentence in entry["sentences"]:
                sentence["raw"] = MESSY_CAPTIONS[(sentence["sentid"] + number) % len(MESSY_CAPTIONS)]
    (root / "dataset_flickr8k.json").write_text(json.dumps(annotations))
    main(["data", "build", "karpathy/flickr8k", "--data_dir", str(root / "tfds"),
          "--manual_dir", str(root)])
    return root / "tfds"


def test_messy_captions_train_skipping_empty_and_truncating_with_a_logged_count(
        messy_captions_data, caplog):
    config = config_from_args("configs/flickr8k.py", [])
    config.data.data_dir = str(messy_captions_data)
    config.data.max_caption_length, config.data.bucket_boundaries = 8, (8,)
    config.data.vocab_min_count = 2
    config.data.captions_per_image = 1  # counts below are of (image, caption) pairs
    vocab = pipeline.build_vocabulary(config)
    assert {"café", "über", "dog"} <= set(vocab.words) and "zebrafish" not in vocab.words
    batches = pipeline.train_iterator(config, vocab, batch_size=2, image_size=SIZE,
                                      process_index=0, process_count=1)
    with caplog.at_level(logging.INFO, logger=pipeline.log.name):
        rows = [row for _ in range(batches.batches_per_epoch() + 1)
                for row in next(batches)["tokens"]]
    decoded = {vocab.to_text(row) for row in rows}
    assert "un café über cool dog" in decoded
    assert "a dog runs a dog runs a dog" in decoded  # 8 words, then <end>
    assert any(UNK in row for row in rows)
    assert all(row[1] != END for row in rows)  # no empty caption is trained on
    # 3 train images x 5 captions cycle through the 8 captions above: 15 captions, of which
    # those at positions 0-2 (no words) and 6 (overlong) of the cycle are counted.
    cycle = [(sentid + number) % len(MESSY_CAPTIONS) for number in range(3)
             for sentid in range(5 * number, 5 * number + 5)]
    empty = sum(index in (0, 1, 2) for index in cycle)
    truncated = cycle.count(6)
    assert f"{truncated} captions truncated to 8 words, {empty} empty skipped" in caplog.text


# ------------------------------------------------------------------------ Karpathy JSON
def break_json(root: Path, change) -> None:
    path = root / "dataset_flickr8k.json"
    data = json.loads(path.read_text())
    change(data["images"])
    path.write_text(json.dumps(data))


KARPATHY_CASES = {
    "missing key": (lambda images: images[2].pop("sentences"),
                    ["dataset_flickr8k.json", "images[2]: missing key 'sentences'"]),
    "wrong type": (lambda images: images[1].update(imgid="1"),
                   ["dataset_flickr8k.json", "images[1]: key 'imgid' should be int, got str"]),
    "duplicate id": (lambda images: images[3].update(imgid=0),
                     ["dataset_flickr8k.json", "images[3]: duplicate image id 0"]),
    "image missing": (lambda images: images[4].update(filename="not_there.jpg"),
                      ["not_there.jpg", "image file missing"]),
}


@pytest.mark.parametrize("case", KARPATHY_CASES)
def test_bad_karpathy_folder_fails_the_build_and_touches_nothing(tmp_path, case, capsys):
    change, names = KARPATHY_CASES[case]
    root = make_dummy(tmp_path / "manual", "flickr8k")
    break_json(root, change)
    data_dir = tmp_path / "tfds"
    (data_dir / "shapes" / "tiny" / "1.0.0").mkdir(parents=True)  # a dataset built earlier
    (data_dir / "shapes" / "tiny" / "1.0.0" / "dataset_info.json").write_text("{}")
    before = snapshot(root, data_dir)
    code, err = sat(["data", "build", "karpathy/flickr8k", "--data_dir", str(data_dir),
                     "--manual_dir", str(root)], capsys)
    assert_one_line_error(code, err, *names)
    after = snapshot(root, data_dir)  # TFDS may add its own bookkeeping, never change files
    assert {path: after.get(path) for path in before} == before
    assert not list(data_dir.glob("karpathy/flickr8k/*"))  # no half-built dataset left


# --------------------------------------------------------------------------------- config
def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "configs" / "mine.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text("from ml_collections import config_dict\n\n\ndef get_config(arg=None):\n"
                    "    config = config_dict.ConfigDict()\n" + body + "    return config\n")
    return path


def test_config_file_with_a_syntax_error_names_file_and_line(tmp_path, capsys):
    path = write_config(tmp_path, "    config.steps = = 3\n")
    code, err = sat(["train", "--config", str(path), "--workdir", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "mine.py", "line 6", "expected Python")
    assert not (tmp_path / "run").exists()


def test_required_value_left_unset_is_named(tmp_path, capsys):
    path = write_config(tmp_path, "    config.data_dir = config_dict.required_placeholder(str)\n"
                                  "    config.steps = config_dict.placeholder(int)\n")
    code, err = sat(["train", "--config", str(path), "--workdir", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "required key(s) data_dir", "--config.data_dir=<value>")
    config = config_from_args(str(path), ["data_dir=/data", "steps=3"])  # placeholders typed
    assert (config.data_dir, config.steps) == ("/data", 3)
    with pytest.raises(ConfigError, match=r"--config.steps='many': expected a int literal"):
        config_from_args(str(path), ["data_dir=/data", "steps=many"])


# ---------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_shapes):
    """A workdir trained on the smoke config as test_reliability.py trains it (the same
    compiled step, a persistent-cache hit) but saved only at the end, and its `sat train`
    arguments."""
    workdir = tmp_path_factory.mktemp("trained")
    overrides = smoke_overrides(tiny_shapes) + ["train.checkpoint_every=100"]
    train_and_evaluate(config_from_args("configs/shapes.py:smoke", overrides), workdir)
    argv = ["train", "--config", "configs/shapes.py:smoke", "--workdir", str(workdir)]
    return workdir, argv + [f"--config.{item}" for item in overrides]


def edited_copy(workdir: Path, target: Path, change) -> Path:
    """A copy of ``workdir`` whose last checkpoint's metadata JSON went through ``change``
    (and a digest of the result, as the writer of such a checkpoint would have made)."""
    shutil.copytree(workdir, target)
    meta_file = next((target / "checkpoints" / str(STEPS) / "meta").glob("*"))
    meta = json.loads(meta_file.read_text())
    change(meta)
    meta_file.write_text(json.dumps(meta))
    write_digest(target / "checkpoints" / str(STEPS))
    return target


def test_train_with_other_model_shapes_changes_nothing(trained, capsys):
    workdir, argv = trained
    before = snapshot(workdir)
    code, err = sat(argv + ["--config.model.hidden_dim=8"], capsys)
    assert_one_line_error(code, err, str(workdir), "model.hidden_dim: 16 -> 8", "use a new --workdir")
    assert snapshot(workdir) == before


def test_evaluate_checkpoint_that_does_not_fit_its_model_changes_nothing(trained, tmp_path,
                                                                          capsys):
    copy = edited_copy(trained[0], tmp_path / "run",
                       lambda meta: meta["config"]["model"].update(hidden_dim=8))
    before = snapshot(copy)
    code, err = sat(["evaluate", "--workdir", str(copy)], capsys)
    assert_one_line_error(code, err, f"checkpoints/{STEPS}", "does not fit the model", "saved (16")
    assert snapshot(copy) == before


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_checkpoint_from_a_newer_format_is_refused_and_kept(trained, tmp_path, capsys, command):
    workdir, argv = trained
    copy = edited_copy(workdir, tmp_path / "run", lambda meta: meta.update(format="show_attend_tell/2"))
    before = snapshot(copy)
    argv = ["evaluate", "--workdir", str(copy)] if command == "evaluate" else (
        [str(copy) if item == str(workdir) else item for item in argv])
    code, err = sat(argv, capsys)
    assert_one_line_error(code, err, f"checkpoints/{STEPS}", "format 'show_attend_tell/2' is not "
                          "'show_attend_tell/1'")
    assert snapshot(copy) == before


def test_evaluate_with_an_empty_checkpoints_folder(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()  # e.g. training was killed before its first save
    code, err = sat(["evaluate", "--workdir", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "checkpoints", "no checkpoint to restore")


def test_checkpoint_whose_optimizer_state_differs_is_one_line(tmp_path):
    params = {"w": np.arange(3.0)}
    Checkpoints(tmp_path).save(1, {"params": params, "opt_state": [np.zeros(3), np.ones(3)]}, {})
    with pytest.raises(CheckpointError, match="does not fit the training state") as error:
        Checkpoints(tmp_path, read_only=True).restore_state(
            1, {"params": params, "opt_state": {"mu": np.zeros(3), "nu": np.ones(3)}})
    assert "\n" not in str(error.value)


# -------------------------------------------------------------------------------- command line
@pytest.mark.parametrize("argv,message", [
    (["train", "--workdir", "run"], "the following arguments are required: --config"),
    (["train", "--config", "configs/shapes.py", "--workdir", "run", "--config.train.steps"],
     "--config.train.steps needs a value: --config.<key>=<value>"),
    (["evaluate", "--workdir", "run", "--beam_size", "three"], "invalid int value: 'three'"),
    (["evaluate", "--workdir", "run", "--beam_size", "0"], "0: expected an integer >= 1"),
    (["evaluate", "--workdir", "run", "--num_images", "-3"], "-3: expected an integer >= 0"),
    (["evaluate", "--workdir", "run", "--checkpoint", "newest"],
     "'newest': expected latest, best or a step number"),
])
def test_missing_or_mistyped_flags_print_usage_and_exit_2(argv, message, capsys):
    code, err = sat(argv, capsys)
    assert code == 2 and err.startswith("usage: sat") and message in err


# ------------------------------------------------------------------ values no run can use
@pytest.mark.parametrize("override,named", [
    ("train.steps=0", "config.train.steps=0: expected a positive number"),
    ("train.steps=-5", "config.train.steps=-5: expected a positive number"),
    ("train.batch_size=0", "config.train.batch_size=0: expected a positive number"),
    ("train.learning_rate=-0.001", "config.train.learning_rate=-0.001: expected a positive"),
    ("train.learning_rate=0", "config.train.learning_rate=0.0: expected a positive"),
    ("train.eval_every=-1", "config.train.eval_every=-1: expected zero or a positive number"),
])
def test_values_no_run_can_use_are_refused_before_anything_is_made(tmp_path, override, named,
                                                                   capsys):
    code, err = sat(["train", "--config", "configs/shapes.py:smoke", "--workdir",
                     str(tmp_path / "run"), f"--config.{override}"], capsys)
    assert_one_line_error(code, err, named)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["train", "--config", "configs/shapes.py:smoke"],
                                     ["evaluate"], ["caption", "x.png"]])
def test_empty_workdir_is_a_usage_error(command, capsys):
    code, err = sat(command + ["--workdir", ""], capsys)
    assert code == 2 and "--workdir: empty path" in err


def test_resume_that_would_move_the_cosine_learning_rate_is_refused(trained, capsys):
    workdir, argv = trained
    before = snapshot(workdir)
    code, err = sat(argv + ["--config.train.steps=20"], capsys)
    assert_one_line_error(code, err, str(workdir), "train.steps 12 -> 20 would move the cosine "
                          "learning rate", "keep train.steps=12")
    assert snapshot(workdir) == before


def huge_png(path: Path, side: int) -> Path:
    """A valid ``side`` x ``side`` black RGB PNG, written without holding its pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    packer, row, data = zlib.compressobj(9), b"\0" * (1 + 3 * side), []
    for _ in range(side):
        data.append(packer.compress(row))
    data.append(packer.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2,
                                                                         0, 0, 0))
                     + chunk(b"IDAT", b"".join(data)) + chunk(b"IEND", b""))
    return path


def test_image_over_the_pixel_budget_is_refused_before_decoding(tmp_path):
    path = huge_png(tmp_path / "wall.png", 13_000)  # 169 megapixels in ~0.5 MB
    assert path.stat().st_size < 2_000_000
    with Image.open(path) as image:  # a valid PNG, under Pillow's own error limit
        assert image.size == (13_000, 13_000)
    for reader in (lambda p: load_image_rgb(p, SIZE), encoded_rgb):
        with pytest.raises(ValueError, match=r"wall.png: 13000×13000 image has 169,000,000 pixels, "
                                             r"more than the 64,000,000 read"):
            reader(path)


def test_train_before_its_dataset_is_built_prints_only_the_one_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "show_attend_tell", "train", "--config", "configs/shapes.py:smoke",
         "--workdir", str(tmp_path / "run"), f"--config.data.data_dir={tmp_path / 'nothing'}"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "cannot schedule" not in result.stderr, result.stderr
    # (TensorFlow's start-up notes, e.g. on oneDNN "round-off errors", are not errors)
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("sat ") or "Error" in line or "Traceback" in line]
    assert errors == [f"sat train: error: dataset shapes/64px_salience is not built in "
                      f"{tmp_path / 'nothing'}; run: sat data build shapes/64px_salience "
                      f"--data_dir {tmp_path / 'nothing'}"], result.stderr
