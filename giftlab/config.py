"""Flat config dataclasses shared by every entry point (train, rl, eval, pipeline).

A config is a dataclass whose field help is its `--help` text. Values come from the defaults, then
a YAML file (`from_yaml`), then `key=value` overrides (`with_overrides`). Every value is checked in
`__post_init__` against the class's RULES; a bad value raises ConfigError naming the key, the
allowed values and, for YAML, the file and line.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import field
from pathlib import Path

from giftlab.errors import InputError


class ConfigError(InputError):
    """A bad config value; `.key` is the key it concerns (None for the file as a whole)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def setting(default, help: str):
    """A config field with its `--help` line (lists take a default_factory)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


# -- the rules: (key, predicate, the allowed values in words) --------------------------------------


def finite_positive(x) -> bool:
    return math.isfinite(x) and x > 0


def finite_non_negative(x) -> bool:
    return math.isfinite(x) and x >= 0


def non_negative_or_inf(x) -> bool:
    return not math.isnan(x) and x >= 0


def at_least(n):
    return lambda x: x >= n


def in_unit_interval(x) -> bool:
    return 0 <= x <= 1


def one_of(*choices):
    return lambda x: x in choices


class FlatConfig:
    """Loading, overriding and checking shared by the flat config dataclasses."""

    RULES: typing.ClassVar[tuple] = ()

    def __post_init__(self):
        for key, ok, allowed in self.RULES:
            value = getattr(self, key)
            if not ok(value):
                raise ConfigError(f"{key} must be {allowed}, got {value!r}", key)
        self.check()

    def check(self) -> None:
        """Checks that involve several keys; subclasses raise ConfigError."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict, source: str = "config", lines: dict | None = None):
        """`lines` maps a key to the line it was read from, so errors can name file:line."""
        lines = lines or {}

        def where(key):
            return f"{source}:{lines[key]}" if key in lines else source

        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(
                f"{where(unknown[0])}: unknown key(s) {unknown}; known keys: {cls.field_names()}",
                unknown[0],
            )
        coerced = {k: _coerce(cls, k, v, where(k)) for k, v in values.items()}
        try:
            return cls(**coerced)
        except ConfigError as err:
            if err.key in lines:
                raise ConfigError(f"{where(err.key)}: {err}", err.key) from None
            raise

    @classmethod
    def from_yaml(cls, path):
        """Values from a YAML mapping; errors name the file and line."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise InputError(f"--config {path}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except UnicodeDecodeError as err:
            raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise InputError(f"{at}: malformed YAML ({problem})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(f"{path}: a config must be a mapping of key: value")
        lines = {}
        if isinstance(node, yaml.MappingNode):
            lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
        return cls.from_dict(data, source=str(path), lines=lines)

    def with_overrides(self, overrides: list[str]):
        values = dataclasses.asdict(self)
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} must look like key=value")
            if key not in values:
                raise ConfigError(
                    f"override {item!r}: unknown key {key!r}; known keys: {self.field_names()}",
                    key,
                )
            values[key] = _parse(type(self), key, raw)
        return type(self).from_dict(values, source="overrides")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def help_text(cls) -> str:
        """Every key with its default and help, for `--help`."""
        return "\n".join(
            f"  {f.name} (default {_default(f)!r}): {f.metadata['help']}"
            for f in dataclasses.fields(cls)
        )


def _default(f):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _field_type(cls, key):
    t = typing.get_type_hints(cls)[key]
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t


def _scalar(t, key, raw: str):
    if t is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {raw!r}", key)
    try:
        return t(raw)
    except ValueError:
        raise ConfigError(f"{key}: expected {t.__name__}, got {raw!r}", key) from None


def _parse(cls, key, raw: str):
    t = _field_type(cls, key)
    if typing.get_origin(t) is list:
        (item,) = typing.get_args(t)
        return [_scalar(item, key, x.strip()) for x in raw.split(",") if x.strip()]
    return _scalar(t, key, raw)


def _coerce_scalar(t, key, value, where):
    if t is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    if t is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, t) or (t in (int, float) and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key} must be {t.__name__}, got {value!r}", key)
    return value


def _coerce(cls, key, value, where):
    t = _field_type(cls, key)
    if typing.get_origin(t) is list:
        (item,) = typing.get_args(t)
        if isinstance(value, str):
            value = [x.strip() for x in value.split(",") if x.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}", key)
        return [_coerce_scalar(item, key, v, where) for v in value]
    return _coerce_scalar(t, key, value, where)
