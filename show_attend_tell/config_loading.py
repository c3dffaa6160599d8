"""Load ``configs/<name>.py:<arg>`` files, apply ``--config.a.b=value`` overrides, and read
a saved run's ``config.json`` back.

Unknown keys, values of the wrong type and missing files are errors that name the key or
file and what was expected (``ConfigError``, one line). Why this is not
``ml_collections.config_flags``: docs/training.md, "Configs and overrides".
"""

import ast
import importlib.util
import json
import sys
from pathlib import Path

import ml_collections
from ml_collections.config_dict import RequiredValueError

from show_attend_tell.errors import InvalidInput


class ConfigError(InvalidInput):
    """A config file, key or value is not what was expected."""


def load_config(spec: str) -> ml_collections.ConfigDict:
    """``path/to/config.py[:arg]`` -> the ``ConfigDict`` its ``get_config(arg)`` returns."""
    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path!r} does not exist (expected configs/<name>.py[:arg])")
    # Config files import their siblings as ``configs.<name>``; make the folder that holds
    # ``configs/`` importable whatever the current directory or entry point.
    root = str(file.resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    module_spec = importlib.util.spec_from_file_location(f"sat_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as error:
        raise ConfigError(f"config file {path!r} line {error.lineno}: {error.msg} (expected "
                          "Python defining get_config(arg))") from error
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} has no get_config(arg) function")
    config = module.get_config(arg or None)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config must return an ml_collections.ConfigDict")
    return config


def _declared_type(node: ml_collections.ConfigDict, leaf: str) -> type:
    """The type ``node.leaf`` accepts: its value's, or for a ``placeholder`` /
    ``required_placeholder`` (value None) the type it was declared with."""
    # Private, but ConfigDict.get_type reads the value first, which raises for a
    # required_placeholder.
    field = node._fields[leaf]
    if isinstance(field, ml_collections.FieldReference):
        return field.get_type()
    return type(field)


def _parse_value(text: str, kind: type, key: str):
    """``text`` converted to ``kind``, the key's declared type."""
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key}={text!r}: expected a boolean (true/false)")
    if kind in (str, type(None)):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise ConfigError(f"--config.{key}={text!r}: expected a {kind.__name__} literal") from error
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is tuple and isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, kind):
        raise ConfigError(
            f"--config.{key}={text!r}: expected a {kind.__name__}, got a {type(value).__name__}"
        )
    return value


def apply_override(config: ml_collections.ConfigDict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` assignment in place; the key must already exist."""
    key, sep, text = assignment.partition("=")
    if not sep:
        raise ConfigError(f"--config.{assignment}: expected --config.<key>=<value>")
    *parents, leaf = key.split(".")
    node = config
    for depth, part in enumerate(parents):
        if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
            known = sorted(node.keys())
            raise ConfigError(
                f"--config.{key}: unknown key {'.'.join(parents[: depth + 1])!r}; known: {known}"
            )
        node = node[part]
    if leaf not in node:
        raise ConfigError(f"--config.{key}: unknown key; known keys here: {sorted(node.keys())}")
    kind = _declared_type(node, leaf)
    if issubclass(kind, ml_collections.ConfigDict):
        raise ConfigError(f"--config.{key}: is a group of keys, set one of {sorted(node[leaf])}")
    with node.unlocked():
        node[leaf] = _parse_value(text, kind, key)


def missing_required(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Keys declared with ``required_placeholder`` that still have no value."""
    missing = []
    for key in config:
        try:
            value = config[key]
        except RequiredValueError:
            missing.append(f"{prefix}{key}")
            continue
        if isinstance(value, ml_collections.ConfigDict):
            missing += missing_required(value, f"{prefix}{key}.")
    return missing


def config_from_args(spec: str, overrides: list[str]) -> ml_collections.ConfigDict:
    config = load_config(spec)
    for assignment in overrides:
        apply_override(config, assignment)
    missing = missing_required(config)
    if missing:
        raise ConfigError(f"{spec}: no value for required key(s) {', '.join(missing)}; "
                          f"expected e.g. --config.{missing[0]}=<value>")
    return config


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
    """A JSON-safe plain dict (tuples become lists)."""
    return json.loads(config.to_json())


def config_from_dict(data: dict) -> ml_collections.ConfigDict:
    """Inverse of :func:`config_to_dict`; lists go back to tuples so types match configs."""

    def convert(value):
        if isinstance(value, dict):
            return ml_collections.ConfigDict({k: convert(v) for k, v in value.items()})
        if isinstance(value, list):
            return tuple(convert(v) for v in value)
        return value

    return convert(data)


def flatten(data: dict, prefix: str = "") -> dict:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


# Keys added after runs were saved, each with the value that does what the code did before it
# existed: a saved config without one reads as having that value, so old runs still resume.
ADDED_KEYS = {"model.init_activation": "tanh", "train.objective": "xe", "train.init_from": "",
              "train.scst.samples": 5, "train.scst.baseline": "greedy",
              "model.scan_impl": "fused", "data.captions_per_image": 1}


def config_differences(saved: dict, current: dict, ignore: set[str]) -> list[str]:
    """Keys whose values differ between two config dicts, ``ignore`` excepted, as
    ``key: saved -> current`` lines; ``saved`` lacking a key of :data:`ADDED_KEYS` has its
    old value."""
    old, new = {**ADDED_KEYS, **flatten(saved)}, flatten(current)
    lines = []
    for key in sorted(set(old) | set(new)):
        if key in ignore:
            continue
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            lines.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
    return lines
