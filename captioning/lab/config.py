"""Experiment configs: a frozen dataclass per experiment, filled from a YAML file and ``--key value`` overrides.

Config keys map 1:1 onto the dataclass fields; an unknown key, a value of the wrong type or a missing file
raises a :class:`ConfigError` that names it.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that cannot be applied."""


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of every field of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _scalar(kind: type, value: Any, where: str) -> Any:
    """``value`` as ``kind`` (``bool``, ``int``, ``float`` or ``str``), converting strings from the command line."""
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{where} must be {kind.__name__}, got {value!r}")


def coerce(kind: Any, value: Any, where: str) -> Any:
    """Checks ``value`` against a field type, converting command-line strings and YAML lists.

    Args:
        kind: A field type: ``bool``, ``int``, ``float``, ``str`` or ``tuple[X, ...]`` of those.
        value: A YAML value or a command-line string (comma-separated for tuples).
        where: How to name the key in an error message.
    """
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if isinstance(value, str):
            value = [] if value.strip() in ("", "[]") else [v.strip() for v in value.strip("[]").split(",")]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(_scalar(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    return _scalar(kind, value, where)


def parse_overrides(args: Sequence[str]) -> dict[str, str]:
    """``["--steps", "10", "--lr=0.1"]`` as ``{"steps": "10", "lr": "0.1"}`` (dashes in keys become underscores)."""
    out, i = {}, 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"expected --key value, got {arg!r}")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"override --{key} has no value")
            value, i = args[i + 1], i + 1
        out[key.replace("-", "_")] = value
        i += 1
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file; an empty file is an empty mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values, got {type(data).__name__}")
    return data


def apply(config: T, values: Mapping[str, Any], source: str) -> T:
    """A copy of the dataclass ``config`` with ``values`` replaced, every key and value checked.

    Args:
        config: The config to start from.
        values: Field names and new values.
        source: Where the values come from (a file name, "command line"), for error messages.
    """
    types = field_types(type(config))
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))} for "
                          f"{type(config).__name__}; valid keys: {', '.join(types)}")
    new = {k: coerce(types[k], v, f"{source}: key {k!r}") for k, v in values.items()}
    try:
        return dataclasses.replace(config, **new)
    except ValueError as err:  # a value the config's own checks reject
        raise ConfigError(f"{source}: {err}") from None


def require_positive(config: Any, *names: str) -> None:
    """Raises a ``ValueError`` naming the first of ``names`` whose value in ``config`` is not positive."""
    for name in names:
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)!r}")


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
                preset: Mapping[str, Any] | None = None) -> T:
    """Builds a config: defaults, then the file, then ``preset`` (e.g. ``--quick``), then ``--key value`` overrides.

    Args:
        cls: The experiment's config dataclass.
        path: Optional YAML file of keys to change.
        overrides: Command-line ``--key value`` pairs.
        preset: Optional extra values applied after the file.
    """
    config = cls()
    if path is not None:
        config = apply(config, read_yaml(path), str(path))
    if preset:
        config = apply(config, preset, "preset")
    return apply(config, parse_overrides(overrides), "command line")


def as_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON-ready data."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
