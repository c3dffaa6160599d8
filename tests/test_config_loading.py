"""Config files, overrides and their errors."""

import pytest

from show_attend_tell.config_loading import (
    ConfigError,
    config_differences,
    config_from_args,
    config_from_dict,
    config_to_dict,
)


def test_overrides_are_typed():
    config = config_from_args("configs/shapes.py:hard", [
        "train.steps=7", "train.learning_rate=1", "model.deep_output=false",
        "data.bucket_boundaries=(4, 8)", "model.gate=none",
    ])
    assert config.model.attention == "hard"
    assert config.train.steps == 7
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)
    assert config.model.deep_output is False
    assert config.data.bucket_boundaries == (4, 8)
    assert config.model.gate == "none"


@pytest.mark.parametrize("override,message", [
    ("train.stepz=3", r"--config.train.stepz: unknown key"),
    ("trian.steps=3", r"unknown key 'trian'"),
    ("train.steps=three", r"expected a int"),
    ("train.steps=1.5", r"expected a int, got a float"),
    ("model.deep_output=maybe", r"expected a boolean"),
    ("train=3", r"is a group of keys"),
    ("train.steps", r"expected --config.<key>=<value>"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        config_from_args("configs/shapes.py", [override])


def test_missing_config_file_and_bad_variant():
    with pytest.raises(ConfigError, match="'configs/nope.py' does not exist"):
        config_from_args("configs/nope.py:soft", [])
    with pytest.raises(ValueError, match="unknown variant 'medium'"):
        config_from_args("configs/shapes.py:medium", [])


def test_dict_round_trip_and_differences():
    config = config_from_args("configs/shapes.py", [])
    again = config_from_dict(config_to_dict(config))
    assert config_to_dict(again) == config_to_dict(config)
    assert again.data.bucket_boundaries == config.data.bucket_boundaries
    other = config_from_args("configs/shapes.py", ["train.steps=5", "model.hidden_dim=8"])
    diff = config_differences(config_to_dict(config), config_to_dict(other), {"train.steps"})
    assert diff == ["model.hidden_dim: 256 -> 8"]


def test_a_run_saved_before_a_key_existed_compares_with_that_keys_old_value():
    current = config_to_dict(config_from_args("configs/shapes.py", []))
    saved = config_to_dict(config_from_args("configs/shapes.py", []))
    del saved["model"]["init_activation"]  # written before the switch existed
    assert config_differences(saved, current, set()) == []
    changed = config_to_dict(config_from_args("configs/shapes.py", ["model.init_activation=none"]))
    assert config_differences(saved, changed, set()) == ["model.init_activation: 'tanh' -> 'none'"]
