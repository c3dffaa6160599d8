"""Load ``configs/<name>.py:<arg>`` files and apply ``--config.a.b=value`` overrides.

Unknown keys, values of the wrong type and missing files are errors that name the key or
file and what was expected (``ConfigError``, one line).
"""

import ast
import importlib.util
import json
import sys
from pathlib import Path

import ml_collections


class ConfigError(ValueError):
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
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} has no get_config(arg) function")
    config = module.get_config(arg or None)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config must return an ml_collections.ConfigDict")
    return config


def _parse_value(text: str, current, key: str):
    """``text`` converted to the type of the key's current value."""
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key}={text!r}: expected a boolean (true/false)")
    if isinstance(current, str) or current is None:
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise ConfigError(
            f"--config.{key}={text!r}: expected a {type(current).__name__} literal"
        ) from error
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, type(current)):
        raise ConfigError(
            f"--config.{key}={text!r}: expected a {type(current).__name__}, "
            f"got a {type(value).__name__}"
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
    if isinstance(node[leaf], ml_collections.ConfigDict):
        raise ConfigError(f"--config.{key}: is a group of keys, set one of {sorted(node[leaf])}")
    with node.unlocked():
        node[leaf] = _parse_value(text, node[leaf], key)


def config_from_args(spec: str, overrides: list[str]) -> ml_collections.ConfigDict:
    config = load_config(spec)
    for assignment in overrides:
        apply_override(config, assignment)
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


def config_differences(saved: dict, current: dict, ignore: set[str]) -> list[str]:
    """Keys whose values differ between two config dicts, ``ignore`` excepted, as
    ``key: saved -> current`` lines."""
    old, new = flatten(saved), flatten(current)
    lines = []
    for key in sorted(set(old) | set(new)):
        if key in ignore:
            continue
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            lines.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
    return lines
