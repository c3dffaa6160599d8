"""``make demo``: the embedded default end to end on this machine.

Builds the shapes dataset, trains a soft-attention captioner, evaluates it on the test split,
captions a few test images with attention overlays, and prints where everything is.
Re-running resumes the run in ``runs/demo`` (delete it to start over).
"""

import sys
import time
from pathlib import Path

from PIL import Image

from show_attend_tell.config_loading import config_from_args
from show_attend_tell.data import pipeline
from show_attend_tell.data.build import build_dataset
from show_attend_tell.data.vocab import Vocabulary
from show_attend_tell.evaluation import caption_files, evaluate_checkpoint
from show_attend_tell.train import train_and_evaluate

WORKDIR = Path("runs/demo")
DATA_DIR = "data/tfds"


def export_test_images(config, count: int, folder: Path) -> list[Path]:
    """The first ``count`` test images as PNG files, to caption like a user's photos."""

    folder.mkdir(parents=True, exist_ok=True)
    vocab = Vocabulary.load(WORKDIR / "vocab.json", dataset=config.data.name)
    batch = next(iter(pipeline.eval_batches(
        config, vocab, config.data.test_split, count, 64, num_images=count,
        process_index=0, process_count=1,
    )))
    paths = []
    for row in range(count):
        path = folder / f"test_{int(batch['image_id'][row])}.png"
        Image.fromarray(batch["image"][row]).save(path)
        paths.append(path)
    return paths


def main() -> None:
    start = time.perf_counter()
    # Trains in 5 minutes on 2 CPU cores (README results); the full recipe: configs/shapes.py.
    config = config_from_args("configs/shapes.py:soft", [
        f"data.data_dir={DATA_DIR}", "train.steps=2600", "train.eval_every=1300",
        "data.num_val_images=200",
    ])
    print("== 1/4 building the shapes dataset", flush=True)
    build_dataset(config.data.name, DATA_DIR, config.data.builder_config)
    print("== 2/4 training a soft-attention captioner", flush=True)
    train_and_evaluate(config, WORKDIR)
    trained = time.perf_counter()
    print("== 3/4 evaluating on the test split (beam 3)", flush=True)
    evaluate_checkpoint(WORKDIR, "test", beam_size=3)
    print("== 4/4 captioning test images with attention overlays", flush=True)
    images = export_test_images(config, 4, WORKDIR / "examples")
    failures = caption_files(WORKDIR, [str(p) for p in images], WORKDIR / "captions")
    total = time.perf_counter() - start
    print(f"\nrun directory: {WORKDIR}/ (checkpoints/, metrics.jsonl, tensorboard/, eval/, "
          f"captions/)\ndataset + training took {trained - start:.0f} s; demo took {total:.0f} s")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
