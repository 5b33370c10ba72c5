"""One source of truth for configuration: a dataclass. YAML files and ``--key value`` flags only fill it.

Nested dataclasses are addressed with dots (``--model.n_layer 4``); an unknown key is an error that names
the key and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lmstack.errors import LmstackError

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise LmstackError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise LmstackError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(data, dict):
        raise LmstackError(f"{path}: expected a mapping of config keys at the top level")
    return data


def build(cls: type[T], values: dict[str, Any] | None = None, source: str = "config") -> T:
    """Instantiate dataclass ``cls`` from a (nested) mapping, coercing and checking every value."""
    values = values or {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise LmstackError(f"{source}: unknown config key '{key}' for {cls.__name__}; "
                               f"valid keys: {', '.join(fields)}")
        kwargs[key] = coerce(value, hints[key], f"{source}: {key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise LmstackError(f"{source}: {e}") from e


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"model.n_layer": 4} -> {"model": {"n_layer": 4}}"""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base``."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain YAML/JSON-able values (paths, also inside lists and nested configs, as strings)."""
    return _plain(dataclasses.asdict(obj))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Turn ``value`` (from YAML or a CLI string) into type ``hint``, or raise a one-line error."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, where)
            except LmstackError as e:
                errors.append(str(e))
        raise LmstackError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise LmstackError(f"{where}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise LmstackError(f"{where}: expected a mapping")
        return build(hint, value, where)
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (str,)
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise LmstackError(f"{where}: expected a list, got {value!r}")
        return origin(coerce(v, item, where) for v in items)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise LmstackError(f"{where}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise LmstackError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value) if hint is float else int(str(value), 0) if isinstance(value, str) else value
        except ValueError as e:
            raise LmstackError(f"{where}: expected {hint.__name__}, got {value!r}") from e
        if hint is int and (not isinstance(number, int) or isinstance(number, bool)):
            if isinstance(number, float) and number.is_integer():
                return int(number)
            raise LmstackError(f"{where}: expected an integer, got {value!r}")
        return hint(number)
    if hint is Path:
        return Path(value)
    if hint is str:
        return str(value)
    return value
