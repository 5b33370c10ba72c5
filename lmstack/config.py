"""One source of truth for configuration: a dataclass. YAML files and ``--key value`` flags only fill it.

Nested dataclasses are addressed with dots (``--model.n_layer 4``); an unknown key is an error that names
the key and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lmstack.errors import LmstackError

T = TypeVar("T")

# Seeds: a signed 64-bit integer, as OpenAI's API, torch's generators and `seed + 1` in the trainer all allow.
SEED_RANGE = (-2**63, 2**63 - 1)
SEED32 = (0, 2**32 - 1)  # numpy's RandomState (legacy seeding)


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


def build(cls: type[T], values: dict[str, Any] | None = None, source: str = "config",
          flags: dict[str, Any] | None = None, prefix: str = "") -> T:
    """Instantiate dataclass ``cls`` from a (nested) mapping, coercing and checking every value.

    ``flags`` (nested like ``values``: from the command line's ``--section.key value``) win over ``values``
    (from ``source``, a YAML file), and an error in a value names where it came from: the flag
    (``--train.lr: expected float, got 'abc'``) or the file and key (``c.yaml: train.lr: ...``). ``prefix`` is
    the dotted path of ``cls`` inside the outermost config (for those names). A dataclass with named presets
    (a ``profile`` field and ``PROFILES``: name -> nested values) gets the chosen preset under the flags: over the
    file's values when ``--profile`` is a flag, under them when the file names it.
    """
    values, flags = values or {}, flags or {}
    if "PROFILES" in vars(cls):
        # --profile on the command line beats the file's keys (a file may spell out every default); a profile
        # named in the file sits under the file's own keys
        preset = _preset(cls, flags.get("profile", values.get("profile")))
        values = merge(values, preset) if "profile" in flags else merge(preset, values)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key in {**values, **flags}:
        dotted = prefix + key
        where = f"--{dotted}" if key in flags else f"{source}: {dotted}"
        if key not in fields:
            raise LmstackError(f"{where}: unknown config key '{key}' for {cls.__name__}; "
                               f"valid keys: {', '.join(fields)}")
        section = strip_optional(hints[key])
        if (dataclasses.is_dataclass(section) and isinstance(flags.get(key, {}), dict)
                and isinstance(values.get(key, {}), dict)):
            kwargs[key] = build(section, values.get(key), source, flags.get(key), f"{dotted}.")
        else:
            kwargs[key] = coerce(flags[key] if key in flags else values[key], hints[key], where)
        if key == "seed" and kwargs[key] is not None:  # a field may narrow the range: metadata={"bounds": SEED32}
            check_seed(kwargs[key], where, fields[key].metadata.get("bounds", SEED_RANGE))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        given = [source] * bool(values or not flags) + ["the command line"] * bool(flags)
        raise LmstackError(f"{' and '.join(given)}: {e}") from e


def _preset(cls: type, name: Any) -> dict[str, Any]:
    """The values of ``cls``'s preset ``name`` (its ``profile`` field's default when None)."""
    if name is None:
        name = next(f.default for f in dataclasses.fields(cls) if f.name == "profile")
    if name not in cls.PROFILES:
        raise LmstackError(f"profile: unknown profile {name!r}; known profiles: {', '.join(cls.PROFILES)}")
    return cls.PROFILES[name]


def check_seed(seed: int, where: str, bounds: tuple[int, int] = SEED_RANGE) -> int:
    """``seed`` if it is an integer within ``bounds`` (default ``SEED_RANGE``: what torch's generators and
    OpenAI's int64 field take; numpy's ``RandomState`` needs ``SEED32``), else a one-line error naming ``where``."""
    low, high = bounds
    if isinstance(seed, bool) or not isinstance(seed, int) or not low <= seed <= high:
        raise LmstackError(f"{where}: seed {seed!r} is out of range; a seed must be an integer in "
                           f"[{_power(low)}, {_power(high)}]")
    return seed


def _power(n: int) -> str:
    """-2**63 for -9223372036854775808, 2**32 - 1 for 4294967295: a bound as people write it."""
    if n < 0:
        return "-" + _power(-n)
    if n > 1 and n & (n - 1) == 0:
        return f"2**{n.bit_length() - 1}"
    if n > 1 and (n + 1) & n == 0:
        return f"2**{n.bit_length()} - 1"
    return str(n)


def strip_optional(hint: Any) -> Any:
    """``X`` for ``X | None``; any other hint as it is."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint


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
        except (ValueError, TypeError, OverflowError) as e:
            raise LmstackError(f"{where}: expected {hint.__name__}, got {value!r}") from e
        if hint is int and (not isinstance(number, int) or isinstance(number, bool)):
            if isinstance(number, float) and number.is_integer():
                return int(number)
            raise LmstackError(f"{where}: expected an integer, got {value!r}")
        if hint is float and not math.isfinite(float(number)):
            raise LmstackError(f"{where}: expected a finite number, got {value!r}")
        return hint(number)
    if hint is Path:
        return Path(value)
    if hint is str:
        return str(value)
    return value
