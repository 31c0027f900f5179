"""Building frozen config dataclasses from plain settings: the one place they are merged and validated.

Precedence is CLI over config file over defaults. ``build_dataclass`` turns a plain dict (from
TOML, JSON or parsed flags) into a nested frozen dataclass, coercing strings to the declared
types and rejecting unknown keys with the nearest known one. Range checks live in each
dataclass's ``__post_init__`` so that no invalid config object can exist. The run's own config
(``RunConfig``) lives with the grid it describes, in ``bench.grid``; this module knows no
component, so every component may import it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.errors import ConfigError

DATA_ROOT_ENV = "TEXTCAP_BENCH_DATA"
CACHE_DIR_ENV = "TEXTCAP_BENCH_CACHE"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "textcap-bench")


def default_data_root() -> Path | None:
    value = os.environ.get(DATA_ROOT_ENV)
    return Path(value) if value else None


# -- building and merging ----------------------------------------------------------------


def merge(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep-merge dicts; later layers win, ``None`` values in a layer mean "not given"."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:
                continue
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
    return out


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are distinct (TOML refuses a repeat; JSON would keep the last)."""
    keys = [k for k, _ in pairs]
    twice = [k for i, k in enumerate(keys) if k in keys[:i]]
    if twice:
        raise ValueError(f"the key {twice[0]!r} is given twice in one object")
    return dict(pairs)


def _no_nulls(value: Any, where: str) -> None:
    """A null in a config file would read as "not given" and keep the default: refused instead."""
    if value is None:
        raise ConfigError(f"config file: {where} is null; leave it out for the default, or give the value you want")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _no_nulls(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for item in value:
            _no_nulls(item, f"{where}[]")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``.toml`` or ``.json`` config file into a dict (no null anywhere, no key twice)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.suffix not in (".toml", ".json"):
        raise ConfigError(f"config file {path} must end in .toml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package
                import tomli as tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    _no_nulls(data, "")
    return data


def resolve_config(cls: type, cli: Mapping[str, Any] | None = None, file: str | Path | None = None) -> Any:
    """Defaults, overlaid by the config file, overlaid by CLI values; validated."""
    return build_dataclass(cls, merge(load_config_file(file) if file else {}, cli))


def build_dataclass(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build frozen dataclass ``cls`` from a dict, coercing values to the declared types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__} must be a table of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(names)}"
            raise ConfigError(f"unknown setting {_join(where, key)!r}{hint}")
        kwargs[key] = coerce(value, hints[key], _join(where, key))
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert ``value`` (possibly a CLI string) to type ``hint``, or raise ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is tuple:
        items = _split_list(value)
        if isinstance(value, str) and not items:  # "" or ",": not "the default", which is leaving it out
            raise ConfigError(f"{where} lists nothing ({value!r}); give at least one value, or leave it out")
        if isinstance(value, str) and len(items) != len(value.split(",")):
            raise ConfigError(f"{where} has an empty item ({value!r}); separate values with single commas")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], where) for v in items)
        if len(items) != len(args):
            raise ConfigError(f"{where} must have {len(args)} items, got {len(items)}")
        return tuple(coerce(v, a, where) for v, a in zip(items, args))
    if origin in (dict,) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return build_dataclass(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            number = hint(value) if hint is float or not isinstance(value, float) else None
        except (TypeError, ValueError):
            number = None
        text = value.strip() if isinstance(value, str) else ""
        if isinstance(value, str) and (not text.isascii() or "_" in text):  # "1_0", "٣": not what a user typed
            number = None
        if number is None or (hint is int and isinstance(value, str) and not re.fullmatch(r"[+-]?[0-9]+", text)):
            kind = "an integer" if hint is int else "a number"
            raise ConfigError(f"{where} must be {kind}, got {value!r}")
        if not math.isfinite(number):  # no setting of this project means anything at NaN or infinity
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return number + 0 if number == 0 else number  # -0.0 is 0.0: one cell, one id, one label
    if hint is Path:
        if not isinstance(value, (str, os.PathLike)) or str(value) == "":
            raise ConfigError(f"{where} must be a path, got {value!r}")
        return Path(value).expanduser()
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ConfigError(f"{where}: cannot use {value!r} as {getattr(hint, '__name__', hint)}")


#: Field metadata for a setting added after results existed: while it holds its default it is
#: left out of config dicts, and so out of cell ids and fit keys, which stay what they were.
ADDED_LATER = {"omit_at_default": True}


def config_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) config dataclass; paths become strings. Fields
    marked ``ADDED_LATER`` are left out while they hold their default."""
    if config is None:
        return {}
    return json.loads(json.dumps(_plain(config), default=str))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get("omit_at_default") and getattr(value, f.name) == f.default)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass as a nested dict of plain values (tuples kept), for merging."""
    return {f.name: (config_to_dict(v) if dataclasses.is_dataclass(v := getattr(config, f.name)) else v)
            for f in dataclasses.fields(config)}


def _split_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def switched_off(config_cls: type, settings: Mapping[str, Any]) -> set[str]:
    """The fields of ``config_cls`` that ``settings`` (a nested dict of overrides) leaves unused by
    turning an on/off switch off: ``config_cls.SWITCHED`` maps each switch to the fields only it
    uses (viecap's ``hard_prompt`` to the entity prompt's settings)."""
    off = set()
    for switch, names in getattr(config_cls, "SWITCHED", {}).items():
        value = settings.get(switch)
        if value is None:
            continue
        try:  # a swept value arrives as written: "off", "false", 0 are off
            on = coerce(value, bool, switch)
        except ConfigError:
            continue  # refused where the config is built, with its own message
        if not on:
            off.update(names)
    return off


def check_switched(config: Any, where: str) -> None:
    """Refuse a setting that an off switch of the same config leaves unused: it would be ignored,
    and the record would name a setting that did nothing."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    for switch, names in getattr(type(config), "SWITCHED", {}).items():
        if getattr(config, switch):
            continue
        for name in names:
            f = fields[name]
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            if getattr(config, name) != default:
                raise ConfigError(f"{where}.{name} is unused with {where}.{switch}=false; drop it, or sweep "
                                  f"{where}.{switch} (its off cells then leave {where}.{name} out)")
