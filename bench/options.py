"""``--set`` and ``--sweep`` settings: parsing them, routing each to the methods (or the encoder)
it is for, and refusing a key that nothing takes.

A key is ``field`` (every selected method that has the field), ``method.field`` (that method
only) or ``encoder.field`` (the encoder's batch sizes and loader threads); nested fields are
dotted (``decoder.width``, ``capdec.decoder.lr``).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections.abc import Iterable
from typing import Any

from bench.errors import ConfigError

ENCODER = "encoder"


def literal(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` flags as a dict (later flags win)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        if not value.strip():  # an empty value is never read as "the default" (decoder.gpt2_path= would train a random GPT-2)
            raise ConfigError(f"--set {key.strip()}= gives no value; leave the flag out for the default, or give the value you want")
        value = literal(value.strip())
        if isinstance(value, str) and not value.strip():  # '""': as empty as no value
            raise ConfigError(f"--set {key.strip()}={item.partition('=')[2].strip()} gives no value; leave the flag out "
                              "for the default, or give the value you want")
        if value is None:  # a later layer's None means "not given": it would silently keep the setting as it was
            raise ConfigError(f"--set {key.strip()}=null cannot unset a setting; leave the flag out, or give the value you want")
        out[key.strip()] = value
    return out


def parse_sweeps(items: Iterable[str], fixed: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    """``--sweep KEY=V1,V2`` flags as a dict of value lists; a key given twice, or also with
    ``--set``, is an error."""
    sweep: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ConfigError(f"--sweep expects KEY=V1,V2,..., got {item!r}")
        if key in sweep or key in (fixed or {}):
            raise ConfigError(f"--sweep {key} is given twice (or also with --set)")
        if "[" in values or "]" in values:  # split at commas, a list's own commas would cut it apart
            raise ConfigError(f"--sweep {key}: a list-valued setting cannot be swept on the command line (its commas "
                              "separate the sweep's values); give it in a config file's [sweep] table")
        sweep[key] = [literal(v.strip()) for v in values.split(",")]
        if any(v is None or v == "" for v in sweep[key]):
            raise ConfigError(f"--sweep {key}: every value must be given (no empty item and no null), got {values!r}")
    return sweep


def split_encoder_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(method options, encoder options): ``encoder.field`` keys go to the encoder (``RunConfig``
    refuses its ``name``: that is ``--encoder``'s)."""
    methods = {k: v for k, v in options.items() if not k.startswith(ENCODER + ".")}
    encoder = {k[len(ENCODER) + 1:]: v for k, v in options.items() if k.startswith(ENCODER + ".")}
    return methods, encoder


def expand_method_tables(options: dict[str, Any]) -> dict[str, Any]:
    """A key that is a method's name with a table as its value (``[method_options.capdec]`` in a
    TOML config: ``{"capdec": {"noise_variance": 0.1, "decoder": {"lr": 0.002}}}``) as that
    method's dotted keys, one per leaf (``capdec.noise_variance``, ``capdec.decoder.lr``), so that
    it layers over a table for every method; every other key as it is."""
    from bench.plugins import METHODS

    def flat(prefix: str, table: dict[str, Any]) -> dict[str, Any]:  # every leaf as its own dotted key, so tables layer
        out: dict[str, Any] = {}
        for field, inner in table.items():
            out.update(flat(f"{prefix}.{field}", inner) if isinstance(inner, dict) and inner else {f"{prefix}.{field}": inner})
        return out

    out: dict[str, Any] = {}
    for key, value in options.items():
        if "." not in key and key in METHODS and isinstance(value, dict):
            out.update(flat(key, value))
        else:
            out[key] = value
    # settings for every method first, then one method's: the more specific layers over the
    # general whatever order a file or the flags gave them in
    general = {k: v for k, v in out.items() if split_option(k)[0] is None}
    return {**general, **{k: v for k, v in out.items() if k not in general}}


def split_option(key: str) -> tuple[str | None, str]:
    """A key as (the one method it names, or None for all; the dotted setting)."""
    from bench.plugins import METHODS

    head, _, rest = key.partition(".")
    return (METHODS.canonical(head), rest) if head in METHODS else (None, key)


def fields_of(method: str) -> set[str]:
    from bench.plugins import METHODS

    return {f.name for f in dataclasses.fields(METHODS.get(method).Config)}


def applies(key: str, method: str) -> bool:
    target, setting = split_option(key)
    return bool(setting) and (target == method or (target is None and setting.split(".")[0] in fields_of(method)))


def options_for(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``options`` that are for ``method``, as a nested dict of its config."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if applies(key, method):
            _assign(out, split_option(key)[1], value)
    return out


def check_options(methods: list[str], options: dict[str, Any], sweep_keys: Iterable[str] = ()) -> None:
    """Every key must name a setting of at least one of ``methods``; a key that names a method
    must name a selected one (a setting for a method that does not run would be ignored); and no
    two keys may set one setting of one method (``decoder.width`` beside ``capdec.decoder.width``:
    one of them would be dropped, by the order of the flags). A table followed by a field inside
    it (``--decoder gpt2 --set decoder.lr=...``) layers, and is allowed."""
    swept = set(sweep_keys)
    for key in options:
        flag = "--sweep" if key in swept else "--decoder (or --set)" if key == "decoder" else "--set"
        target, setting = split_option(key)
        if not setting:
            raise ConfigError(f"{flag} {key}: name a setting of {target} ({key}.FIELD)")
        if target and target not in methods:
            raise ConfigError(f"{flag} {key}: {target} is not among the selected methods ({', '.join(methods)})")
        if not any(setting.split(".")[0] in fields_of(m) for m in ([target] if target else methods)):
            raise ConfigError(f"{flag} {key}: no selected method has a setting {setting.split('.')[0]!r}")
    for method in methods:
        seen: dict[str, str] = {}
        for key in options:
            if not applies(key, method):
                continue
            dotted = split_option(key)[1]
            for other_dotted, other in seen.items():  # an earlier key that this one would overwrite
                if dotted == other_dotted or other_dotted.startswith(dotted + "."):
                    raise ConfigError(f"{other} and {key} both set {method}'s {other_dotted}; give one")
                if dotted.startswith(other_dotted + ".") and not isinstance(options[other], dict):
                    raise ConfigError(f"{other} is {options[other]!r}, not a table of settings: {key} cannot set a "
                                      f"field inside it")
            seen[dotted] = key


def check_sweep(sweep: dict[str, Any]) -> None:
    for key, values in sweep.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"sweep {key} needs a non-empty list of values, got {values!r}")
        if len({json.dumps(_same(v), sort_keys=True, default=str) for v in values}) != len(values):
            raise ConfigError(f"sweep {key} lists a value twice: {list(values)}")
        if any(v is None for v in values):
            raise ConfigError(f"sweep {key}: null is not a value (it would run as the default): {list(values)}")


def _same(value: Any) -> Any:
    """A sweep value as the setting will read it, so that two spellings of one value count once
    (true and on, 0.01 and "0.01")."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "on", "yes"):
            return True
        if text in ("false", "off", "no"):
            return False
        try:
            return float(text)
        except ValueError:
            return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def sweep_combinations(method: str, sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the sweep values that apply to ``method`` (one empty dict when none
    does), as ``--set``-style overrides; the first key's value varies slowest."""
    keys = [k for k in sweep if applies(k, method)]
    return [dict(zip(keys, values)) for values in itertools.product(*(sweep[k] for k in keys))] or [{}]


def _assign(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    # A copy: a later per-method key must not write into the run's shared options.
    target[parts[-1]] = copy.deepcopy(value)
