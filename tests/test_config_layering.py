"""Every config file gives, for every variant it accepts, the ConfigDict recorded in
tests/data/config_snapshot.json, and rejects the variants it rejected then.

The snapshot was written by the config files as they were before ``configs/common.py``
existed (one file per dataset, coco.py built on shapes.py), so a refactoring of the layering
that changes any key, value or value type fails here. Rewrite it only for an intended change:
  python tests/test_config_layering.py ROOT > tests/data/config_snapshot.json
(ROOT: the folder holding the ``configs/`` package to record).
"""

import importlib
import json
import sys
from pathlib import Path

import ml_collections
import pytest

SNAPSHOT = Path(__file__).parent / "data" / "config_snapshot.json"
FILES = ("shapes", "coco", "flickr8k")
# Every variant name any config file documents, plus the default (no ``:arg``, or an empty one).
NAMES = (None, "", "soft", "hard", "smoke", "smoke_hard", "scst", "scst_hard", "smoke_scst")


def describe(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
    """Flattened ``key -> [type name, value]``; a placeholder shows as ``FieldReference[type]``
    so that a changed declaration (not only a changed value) shows too."""
    flat = {}
    for key, field in config._fields.items():  # the raw fields keep FieldReferences
        name = f"{prefix}{key}"
        if isinstance(field, ml_collections.ConfigDict):
            flat[f"{name}/"] = ["ConfigDict", [field.is_type_safe, field.convert_dict,
                                               field.is_locked]]
            flat.update(describe(field, name + "."))
        elif isinstance(field, ml_collections.FieldReference):
            flat[name] = [f"FieldReference[{field.get_type().__name__}]", field.get()]
        else:
            flat[name] = [type(field).__name__, field]
    return flat


def record(module) -> dict:
    """``variant -> describe(config)``, or ``variant -> "rejected"`` where it raises."""
    out = {}
    for name in NAMES:
        try:
            config = module.get_config(name)
        except ValueError:
            out[str(name)] = "rejected"
        else:
            out[str(name)] = json.loads(json.dumps(describe(config)))
    return out


def dump(value, depth: int = 0) -> str:
    """JSON with one config key a line, so that a rewritten snapshot diffs readably."""
    if not isinstance(value, dict):
        return json.dumps(value)
    pad = " " * (depth + 1)
    items = ",\n".join(f"{pad}{json.dumps(key)}: {dump(item, depth + 1)}"
                       for key, item in value.items())
    return "{\n" + items + "\n" + " " * depth + "}"


def load_snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text())


@pytest.mark.parametrize("file", FILES)
def test_every_variant_gives_the_recorded_config(file):
    module = importlib.import_module(f"configs.{file}")
    expected, actual = load_snapshot()[file], record(module)
    for name in expected:
        if expected[name] == "rejected" or actual[name] == "rejected":
            assert actual[name] == expected[name], f"configs/{file}.py:{name}"
            continue
        differences = [f"{key}: {expected[name].get(key)} -> {actual[name].get(key)}"
                       for key in sorted(set(expected[name]) | set(actual[name]))
                       if expected[name].get(key) != actual[name].get(key)]
        assert not differences, f"configs/{file}.py:{name}: " + "; ".join(differences)


def test_the_snapshot_covers_every_accepted_variant():
    """The snapshot is not vacuous: each file accepts its documented variants."""
    snapshot = load_snapshot()
    accepted = {file: {name for name, value in snapshot[file].items() if value != "rejected"}
                for file in FILES}
    assert accepted["shapes"] == {"None", "", "soft", "hard", "smoke", "smoke_hard", "scst",
                                  "scst_hard", "smoke_scst"}
    assert accepted["coco"] == accepted["flickr8k"] == accepted["shapes"] - {"scst_hard"}
    assert snapshot["coco"]["hard"]["model.attention"] == ["str", "hard"]


@pytest.mark.parametrize("file", FILES)
def test_an_unknown_variant_names_the_file_and_the_allowed_ones(file):
    module = importlib.import_module(f"configs.{file}")
    with pytest.raises(ValueError) as info:
        module.get_config("medium")
    message = str(info.value)
    assert f"configs/{file}.py" in message and "'medium'" in message
    for name in ("soft", "hard", "smoke", "smoke_hard", "scst", "smoke_scst"):
        assert name in message


if __name__ == "__main__":
    sys.path.insert(0, str(Path(sys.argv[1]).resolve()))
    modules = {file: importlib.import_module(f"configs.{file}") for file in FILES}
    assert all(str(Path(sys.argv[1]).resolve()) in m.__file__ for m in modules.values())
    print(dump({file: record(module) for file, module in modules.items()}))
