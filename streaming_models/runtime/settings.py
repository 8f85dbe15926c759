"""Frozen dataclasses from TOML: the one way this project reads a configuration file.

A config is a frozen dataclass whose fields are the keys of its file: a nested dataclass field is a
table (`[model]`), a tuple of dataclasses an array of tables (`[[bonafide]]`), a `dict[str, X]`
field a table of free keys. `load` reads files left to right over the defaults, tables merging key
by key, so a file holds only what differs. A key no field has is refused; every value is checked
against its field's annotation (lists become tuples, integers widen to floats, a `Literal` names
the words it allows); then the dataclass is constructed, and its `__post_init__` checks what no
annotation can (`require`). Every failure is one `ConfigError` naming the file and the key.

Training (streaming_models/train_config.py), resynthesis (resynthesis/config.py), corpus
recipes (data/recipe.py), the public-data registry (data/public/registry.py) and the verifier's
recipes (verifier/config.py) load through here; the daemon layers environment variables and flags over
its file (daemon/config.py) and checks each value with `coerce`.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from streaming_models.runtime.errors import SpoofwatchError

T = TypeVar("T")

# Metadata of a field that code sets and a file may not (a digest of the file, a derived value).
INTERNAL: Mapping[str, bool] = types.MappingProxyType({"internal": True})


class ConfigError(SpoofwatchError, ValueError):
    """An invalid setting: `key` names it (dotted: `model.top_hz`, `tts[2].hours`; empty for a whole
    file), `reason` says what is wrong, `source` where it came from (a file, when there is one)."""

    def __init__(self, key: str, reason: str, source: str = "") -> None:
        self.key, self.reason, self.source = key, reason, str(source)
        if self.source:
            where = f"{self.source}: {key}" if key else self.source
        else:
            where = f"invalid config {key}" if key else "invalid config"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.key, self.reason, self.source)

    def within(self, prefix: str, source: str = "") -> ConfigError:
        """The same error seen from the table `prefix` that holds its key, in `source`."""
        return ConfigError(dotted(prefix, self.key), self.reason, self.source or source)


def dotted(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and key else prefix or key


def require(key: str, ok: bool, reason: str) -> None:
    """A `__post_init__` check: ConfigError(key, reason) unless ok (the loader adds table and file)."""
    if not ok:
        raise ConfigError(key, reason)


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("", "file not found", str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot be read: {exc}", str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"not valid TOML: {exc}", str(path)) from None


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The fields a file may set, with their resolved annotations."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if not f.metadata.get("internal")}


def _plural(kind: Any) -> str:
    names = {str: "strings", int: "integers", float: "numbers", bool: "true/false values"}
    return names.get(kind, "tables" if dataclasses.is_dataclass(kind) else "values")


def _sequence(key: str, value: Any, kind: Any, construct: bool) -> tuple[Any, ...]:
    args = typing.get_args(kind)
    variadic = len(args) == 2 and args[1] is Ellipsis
    described = _plural(args[0]) if variadic else f"{len(args)} values"
    if not isinstance(value, (list, tuple)) or (not variadic and len(value) != len(args)):
        raise ConfigError(key, f"must be a list of {described}, got {value!r}")
    kinds = [args[0]] * len(value) if variadic else list(args)
    try:
        return tuple(coerce(f"{key}[{i}]", v, k, construct=construct)
                     for i, (v, k) in enumerate(zip(value, kinds, strict=True)))
    except ConfigError:
        if not all(k in (str, int, float, bool) for k in kinds):
            raise  # a table or a word of a Literal: its own message, at its index
        raise ConfigError(key, f"must be a list of {described}, got {value!r}") from None


def coerce(key: str, value: Any, kind: Any, *, construct: bool = True) -> Any:
    """`value` checked against the annotation `kind`: lists become tuples, integers widen to floats,
    a table becomes its dataclass (with `construct`; else a dict of checked values)."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin is Literal:
        choices = typing.get_args(kind)
        if value not in choices or type(value) not in {type(c) for c in choices}:  # True is not 1
            raise ConfigError(key, f"must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(kind)):
            return None
        if len(options) != 1:
            raise ConfigError(key, f"unsupported setting type {kind!r}")
        return coerce(key, value, options[0], construct=construct)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            return value
        return build(kind, value, key) if construct else _values(kind, value, key, construct=False)
    if origin is tuple:
        return _sequence(key, value, kind, construct)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"must be a table, got {value!r}")
        value_kind = typing.get_args(kind)[1]
        return {str(k): coerce(dotted(key, str(k)), v, value_kind, construct=construct) for k, v in value.items()}
    return _scalar(key, value, kind)


def _scalar(key: str, value: Any, kind: Any) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    raise ConfigError(key, f"unsupported setting type {kind!r}")


def _values(cls: type, table: Any, key: str, construct: bool = True) -> dict[str, Any]:
    """The table's values, each checked against its field; unknown keys refused."""
    if not isinstance(table, Mapping):
        raise ConfigError(key, f"must be a table, got {table!r}")
    kinds = field_types(cls)
    unknown = sorted(set(table) - set(kinds))
    if unknown:
        raise ConfigError(key, f"unknown keys {unknown} (known: {sorted(kinds)})")
    return {name: coerce(dotted(key, name), value, kinds[name], construct=construct) for name, value in table.items()}


def build(cls: type[T], table: Mapping[str, Any], key: str = "", source: str = "") -> T:
    """An instance of the dataclass `cls` from a table (its defaults for the keys it lacks). `key` is
    the table's dotted place and `source` its file, for the messages."""
    try:
        values = _values(cls, table, key)
        for f in dataclasses.fields(typing.cast(Any, cls)):
            if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(dotted(key, f.name), "is required")
    except ConfigError as exc:
        raise exc.within("", source) from None
    try:
        return cls(**values)
    except ConfigError as exc:  # a __post_init__ check: its key is relative to this table
        raise exc.within(key, source) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(key, str(exc), source) from None


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`update` over `base`: a key's value replaced, a table merged key by key."""
    out = dict(base)
    for name, value in update.items():
        both_tables = isinstance(value, Mapping) and isinstance(out.get(name), Mapping)
        out[name] = merge(out[name], value) if both_tables else value
    return out


def _leaf_keys(table: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for name, value in table.items():
        yield dotted(prefix, name)
        if isinstance(value, Mapping):
            yield from _leaf_keys(value, dotted(prefix, name))


def _setter(key: str, origin: Mapping[str, str]) -> str | None:
    """The file that last set `key` or the table holding it."""
    while key:
        if key in origin:
            return origin[key]
        key = key[: max(key.rfind("."), key.rfind("["), 0)]
    return None


def load(cls: type[T], paths: Iterable[str | Path]) -> T:
    """`cls` from TOML files read left to right over its defaults. Each file is checked on its own
    (unknown keys, value types), so such an error names the file; what spans keys is checked once,
    on the merged values, and named by the last file that set the key."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    names = []
    for path in paths:
        table = read_toml(path)
        names.append(str(path))
        try:
            _values(cls, table, "", construct=False)
        except ConfigError as exc:
            raise exc.within("", str(path)) from None
        merged = merge(merged, table)
        origin.update(dict.fromkeys(_leaf_keys(table), str(path)))
    try:
        return build(cls, merged)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.reason, _setter(exc.key, origin) or " + ".join(names)) from None
