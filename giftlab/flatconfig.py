"""The flat-config engine: config dataclasses whose field help is their `--help` text.

Values come from the defaults, then a YAML file (`from_yaml`), then `key=value` overrides
(`with_overrides`). Every value is checked in `__post_init__` against the class's RULES; every bad
value raises one ConfigError naming each key, the allowed values and, for YAML, the file and line.
A leaf: it imports nothing of giftlab's but its errors (giftlab.config holds the settings that
giftlab's jobs share, built on it).
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
    """A bad config value; `.key` is the key it concerns (None for the file as a whole);
    `.problems` every (key, message) found at once (a config with three bad keys names three)."""

    def __init__(self, message: str, key: str | None = None, problems=None):
        super().__init__(message)
        self.key = key
        self.problems = list(problems) if problems else [(key, message)]

    @classmethod
    def of(cls, problems, where=None) -> ConfigError:
        """One error for every (key, message) of `problems`, each message prefixed with
        where(key) (the file and line it was read from) when given."""
        shown = [f"{where(k)}: {m}" if where else m for k, m in problems]
        if len(shown) == 1:
            return cls(shown[0], problems[0][0], problems)
        text = f"{len(shown)} settings are not valid: " + "; ".join(shown)
        return cls(text, problems[0][0], problems)


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


MAX_SEED = 2**32 - 1  # what every generator giftlab seeds accepts (numpy's is the narrowest)
SEED_ALLOWED = f"a whole number in [0, {MAX_SEED}]"


def is_seed(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_SEED


def in_unit_interval(x) -> bool:
    return 0 <= x <= 1


def one_of(*choices):
    return lambda x: x in choices


def check_rules(obj, rules) -> None:
    """Check each (key, predicate, allowed) of `rules` on `obj`: first the value's type against the
    field's annotation (a number for a float, never a bool or a string), then the predicate.
    Raises one ConfigError naming every key that breaks its rule, the allowed values and the
    value."""
    problems = rule_problems(obj, rules)
    if problems:
        raise ConfigError.of(problems)


def rule_problems(obj, rules) -> list[tuple[str, str]]:
    """(key, message) for every key of `rules` whose value `obj` breaks (check_rules's checks)."""
    hints = typing.get_type_hints(type(obj))
    problems = []
    for key, ok, allowed in rules:
        value = getattr(obj, key)
        t = hints.get(key)
        if t is float or t is int:
            kinds = (int, float) if t is float else (int,)
            if isinstance(value, bool) or not isinstance(value, kinds):
                problems.append(
                    (
                        key,
                        f"{key} must be a number ({t.__name__}), got {value!r} "
                        f"({type(value).__name__})",
                    )
                )
                continue
        if not ok(value):
            allowed = allowed(value) if callable(allowed) else allowed
            problems.append((key, f"{key} must be {allowed}, got {value!r}"))
    return problems


class FlatConfig:
    """Loading, overriding and checking shared by the flat config dataclasses."""

    RULES: typing.ClassVar[tuple] = ()

    def __post_init__(self):
        check_rules(self, self.RULES)
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

        extra = cls.extra_settings()
        if extra:  # a registered objective's settings: kept in the `hyper` mapping
            values = dict(values)
            hyper = dict(values.pop("hyper", None) or {})
            for key in [k for k in values if k in extra and k not in cls.field_names()]:
                hyper[key] = values.pop(key)
            values["hyper"] = {
                k: _coerce_scalar(float, k, v, where(k)) if k in extra else v
                for k, v in hyper.items()
            }
        problems, coerced = [], {}
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            known = cls.field_names()
            problems.append((unknown[0], f"unknown key(s) {unknown}; known keys: {known}"))
        for k, v in values.items():
            if k in unknown:
                continue
            try:
                coerced[k] = _coerce(cls, k, v, where(k))
            except ConfigError as err:
                problems.append((k, str(err).removeprefix(f"{where(k)}: ")))
        if problems:  # every bad key of the file at once, each with its line
            raise ConfigError.of(problems, where)
        try:
            return cls(**coerced)
        except ConfigError as err:
            if any(k in lines for k, _ in err.problems):
                raise ConfigError.of(err.problems, where) from None
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
            for k, _ in node.value:
                if k.value in lines:  # PyYAML keeps the last silently
                    raise InputError(
                        f"{path}:{k.start_mark.line + 1}: key {k.value!r} appears twice (first at "
                        f"line {lines[k.value]}); keep one"
                    )
                lines[k.value] = k.start_mark.line + 1
        return cls.from_dict(data, source=str(path), lines=lines)

    @classmethod
    def extra_settings(cls) -> dict:
        """Settings keys beyond the dataclass fields (a registered objective's hyper-parameters:
        {key: giftlab.losses.Hyper}); kept in the config's `hyper` mapping."""
        return getattr(cls, "EXTRA_SETTINGS", {})

    def with_overrides(self, overrides: list[str]):
        values = dataclasses.asdict(self)
        extra = self.extra_settings()
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} must look like key=value")
            if key in extra and key not in values:
                values.setdefault("hyper", {})[key] = _scalar(float, key, raw)
                continue
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
        """Every key with its default and help, for `--help` (registered objectives' keys too)."""
        own = [
            f"  {f.name} (default {_default(f)!r}): {f.metadata['help']}"
            for f in dataclasses.fields(cls)
            if "help" in f.metadata
        ]
        extra = [
            f"  {k} (default {h.default!r}): {h.help} (a registered objective's setting)"
            for k, h in cls.extra_settings().items()
        ]
        return "\n".join(own + extra)


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
    if t is bool and type(value) is int and value in (0, 1):  # YAML `save_final: 1`, as on the CLI
        return bool(value)
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
    if t is dict or typing.get_origin(t) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping, got {value!r}", key)
        return value
    if typing.get_origin(t) is list:
        (item,) = typing.get_args(t)
        if isinstance(value, str):
            value = [x.strip() for x in value.split(",") if x.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}", key)
        return [_coerce_scalar(item, key, v, where) for v in value]
    return _coerce_scalar(t, key, value, where)
