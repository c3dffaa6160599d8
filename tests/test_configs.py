"""Every config's smoke variant trains two steps (and validates) on fake data."""

import pytest

from show_attend_tell.config_loading import config_from_args
from show_attend_tell.data.build import build_dataset
from show_attend_tell.train import train_and_evaluate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tfds")
    build_dataset("shapes", folder, "fake", num_train=16, num_validation=8, num_test=8)
    return folder


@pytest.mark.parametrize("spec", ["configs/shapes.py:smoke", "configs/coco.py:smoke",
                                  "configs/flickr8k.py:smoke_hard"])
def test_smoke_variant_trains_two_steps(spec, fake_data, tmp_path):
    # The real datasets cannot be had offline; the synthetic one stands in, resized to each
    # config's encoder input (VGG-19 at 32 px in the smoke variants).
    overrides = [f"data.data_dir={fake_data}", "data.name=shapes", "data.builder_config=fake",
                 "data.val_split=validation"]
    validates = spec.startswith("configs/shapes.py")  # one validation run is enough (METEOR's
    if not validates:                                  # Java start-up costs ~15 s each)
        overrides.append("train.eval_every=0")
    state = train_and_evaluate(config_from_args(spec, overrides), tmp_path)
    assert int(state.step) == 2
    assert (tmp_path / "checkpoints" / "2").is_dir()
    assert ('"val/CIDEr"' in (tmp_path / "metrics.jsonl").read_text()) == validates


def test_unimplemented_encoder_fails_clearly():
    config = config_from_args("configs/coco.py:smoke", ["model.encoder.name=resnet50"])
    from show_attend_tell.models.captioner import build_captioner

    with pytest.raises(ValueError, match=r"'resnet50' is not a known encoder; expected one of"):
        build_captioner(config.model, 10)
