"""Typed configs shared by the CLI, YAML files and the Python API: one source of truth for every option.

A config is a dataclass deriving from `Config` whose fields are declared with `option(...)`: the default,
the help text, the allowed choices and the range live there once. A config checks itself when it is built
(`__post_init__`: types, choices, ranges, then its own `check()` for rules across options), so the Python
API, a YAML file and the flags meet the same `ConfigError` before any work. The CLI builds its flags from
these fields (`deita.cli.flags`); `config_from_mapping` reads a YAML section into one; layers (defaults,
preset, file, flags) are merged by `deita.config_layers`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

from deita.errors import ConfigError, quote

C = TypeVar("C")

INT64 = (-(2**63), 2**63 - 1)
"""Integers outside this range are refused even where an option declares no bound: numpy and torch take no more."""
SEED_RANGE = (0, 2**32 - 1)
"""What every seed accepts: numpy's legacy seeding (used by transformers' set_seed) takes no more."""


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: Iterable[str] | None = None,
           min: float | None = None, max: float | None = None, allow: tuple[Any, ...] = (),
           flag: str | None = None, short: str | None = None, cli: bool = True, redact: bool = False,
           internal: bool = False, default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field with its help, choices and range declared once.

    `choices` is a tuple, or a table (a mapping name → implementation) whose names are read when a value is
    checked, so an entry added to the table is a valid choice at once. `allow` lists values accepted outside
    the range (e.g. -1 for "all"). `flag` overrides the CLI flag name (default `--field-name`); `cli=False`
    keeps a field out of the command line (YAML/API only); `redact` marks a URL whose credentials must never
    be saved or printed; `internal` marks what the loader records (not a YAML key, not a flag, not saved).
    """
    metadata = {"help": help, "choices": choices, "min": min, "max": max, "allow": allow, "flag": flag,
                "short": short, "cli": cli and not internal, "redact": redact, "internal": internal}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def choices_of(f: dataclasses.Field) -> tuple[str, ...] | None:
    """The valid values of a field (a table's current names), or None when any value of its type goes."""
    choices = f.metadata.get("choices")
    return tuple(choices) if choices is not None else None


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a config dataclass (its annotations are strings under `from __future__`)."""
    return typing.get_type_hints(cls)


def is_config(value_or_type: Any) -> bool:
    return dataclasses.is_dataclass(value_or_type)


def section_of(tp: Any) -> type | None:
    """The config class of a section field: `C`, or `C | None` (a section that is absent unless written, such
    as `select`'s `ifd:`); None for a plain option."""
    if is_config(tp):
        return tp
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return inner if is_config(inner) else None
    return None


def option_fields(cls_or_config: Any) -> list[dataclasses.Field]:
    """The fields a user sets: every field but the internal ones the loader records."""
    return [f for f in dataclasses.fields(cls_or_config) if not f.metadata.get("internal")]


def nearest(word: Any, valid: Iterable[str]) -> str | None:
    """The valid name closest to `word`, if one is close."""
    if not isinstance(word, str):
        return None
    near = difflib.get_close_matches(word[:200], list(valid), n=1)
    return near[0] if near else None


def unknown_name(what: str, name: Any, valid: Iterable[str]) -> str:
    """`unknown WHAT 'NAME' (did you mean 'X'?)`, or listing the valid names when none is close."""
    valid = list(valid)
    near = nearest(name, valid)
    hint = f" (did you mean '{near}'?)" if near else f" (valid: {', '.join(valid)})"
    return f"unknown {what} {quote(name)}{hint}"


def check_keys(keys: Iterable[Any], valid: list[str], prefix: str = "") -> None:
    """An unknown key is a ConfigError naming the nearest valid one (`prefix`: the section it is in)."""
    for key in keys:
        if not isinstance(key, str) or key not in valid:
            raise ConfigError(unknown_name("key", key, valid), [prefix] if prefix else [])


class Config:
    """Base of every config dataclass: checks itself when built, so no invalid config exists.

    Subclasses state rules across options in `check()` (raise `ConfigError(..., rule=True)` naming the
    fields), and may say in `ignored_options()` which options their other values make pointless.
    """

    def __post_init__(self) -> None:
        try:
            validate(self)
        except ConfigError as err:
            raise err.located(type(self).__name__) from None

    def check(self) -> None:
        """Rules across options (types, choices and ranges are checked from the fields)."""

    def ignored_options(self) -> dict[str, str]:
        """Option (or nested section) → the option whose value makes it have no effect here."""
        return {}


def validate(config: Any) -> None:
    """Coerce and check every field of `config` in place (types, choices, ranges), then its rules."""
    hints = field_types(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        tp = hints[f.name]
        section = section_of(tp)
        if section is not None and isinstance(value, Mapping):
            try:
                checked = config_from_mapping(section, value, base=_default(f))
            except ConfigError as err:
                raise err.nested(f.name) from None
        else:
            checked = coerce(tp, value, f.name)
        if checked is not value:
            object.__setattr__(config, f.name, checked)
        check_value(f, checked, f.name)
    config.check()


def _default(f: dataclasses.Field) -> Any:
    """A field's default value (a nested section's own defaults, e.g. the quality scorer's type)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(tp: Any, value: Any, path: str) -> Any:
    """`value` (from YAML, a flag or a keyword argument) as type `tp`, or a ConfigError naming `path`.

    Lists become tuples for tuple fields; ints are accepted for floats; nothing else is converted:
    `threshold: high` is an error, not a string threshold.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option_type in (a for a in args if a is not type(None)):
            try:
                return coerce(option_type, value, path)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is tuple:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {quote(value)}", [path])
        item_type = args[0] if args else Any
        items = tuple(coerce(item_type, item, path) for item in value)
        return value if isinstance(value, tuple) and all(a is b for a, b in zip(items, value, strict=True)) \
            else items
    if tp is Any:
        return value
    if is_config(tp):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"expected a mapping of options, got {quote(value)}", [path])
    accepted = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(tp)
    if accepted is None:
        return value
    if isinstance(value, accepted) and (tp is bool or not isinstance(value, bool)):
        return float(value) if tp is float and not isinstance(value, float) else value
    raise ConfigError(f"expected {_type_name(tp)}, got {quote(value)}", [path])


def check_value(f: dataclasses.Field, value: Any, path: str) -> None:
    """One option's choices and range (None and the `allow` values always pass)."""
    meta = f.metadata
    if value is None or is_config(value) or isinstance(value, (tuple, bool)) or value in meta.get("allow", ()):
        return
    choices = choices_of(f)
    if choices is not None and value not in choices:
        near = nearest(value, choices)
        hint = f"; did you mean '{near}'?" if near else ""
        raise ConfigError(f"{quote(value)} is not one of {', '.join(choices)}{hint}", [path])
    if not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{value} is not a finite number", [path])
    low, high = meta.get("min"), meta.get("max")
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        low = INT64[0] if low is None else low
        high = INT64[1] if high is None else high
    allowed = "".join(f" or {a}" for a in meta.get("allow", ()))
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            bound = f"between {low} and {high}"
        else:
            bound = f"at least {low}" if low is not None else f"at most {high}"
        # A seed out of its range is a usage mistake (exit 2), as issue reports asked; other ranges stay errors.
        raise ConfigError(f"{quote(value)} is out of range (must be {bound}{allowed})", [path],
                          usage=f.name == "seed")


def config_from_mapping(cls: type[C], values: Mapping[str, Any], source: str = "", base: C | None = None) -> C:
    """Build config `cls` from a mapping, on top of `base` (or the defaults).

    Unknown keys, values of the wrong type, out of range or contradicting each other are a ConfigError
    naming the key (after `source`, e.g. the file). Nested config fields take a mapping that updates the
    nested defaults.
    """
    try:
        updates = checked_mapping(cls, values)
        if base is not None:
            updates = {name: _merged(name, getattr(base, name), value) for name, value in updates.items()}
            return dataclasses.replace(base, **updates)  # type: ignore[type-var]
        missing = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                   if f.name not in updates and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"missing required key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        return cls(**updates)
    except ConfigError as err:
        raise err.located(source) from None


def _merged(name: str, current: Any, update: Any) -> Any:
    """A nested section's update applied on top of the current nested config."""
    if is_config(current) and isinstance(update, Mapping):
        try:
            return config_from_mapping(type(current), update, base=current)
        except ConfigError as err:
            raise err.nested(name) from None
    return update


def checked_mapping(cls: type, values: Any, prefix: str = "") -> dict[str, Any]:
    """`values` with every key known to `cls` and every leaf of the right type (nested sections as nested
    dicts), before any config is built: each layer of settings is checked on its own."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"expected a mapping of options, got {quote(values)}", [prefix] if prefix else [])
    fields = {f.name: f for f in option_fields(cls)}
    check_keys(values, list(fields), prefix)
    hints = field_types(cls)
    out: dict[str, Any] = {}
    for name, value in values.items():
        path = f"{prefix}.{name}" if prefix else name
        section = section_of(hints[name])
        if section is not None and isinstance(value, Mapping):
            out[name] = checked_mapping(section, value, path)
        else:
            out[name] = coerce(hints[name], value, path)
    return out


def iter_options(config: Any, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """(dotted name, field, value) of every leaf option, nested configs included."""
    for f in option_fields(config):
        value = getattr(config, f.name)
        if is_config(value):
            yield from iter_options(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, value


def config_to_dict(config: Any, effective: bool = False) -> dict[str, Any]:
    """A plain dict of a config dataclass (tuples as lists), for YAML files and manifests.

    Fields marked `redact` (URLs) lose their user:password part, so no credential is ever saved. With
    `effective`, the options the config's other values make pointless (`ignored_options`) are left out, so
    the file loads again without contradicting itself.
    """
    out: dict[str, Any] = {}
    ignored = config.ignored_options() if effective and isinstance(config, Config) else {}
    for f in option_fields(config):
        value = getattr(config, f.name)
        if f.name in ignored:
            continue
        if is_config(value):
            out[f.name] = config_to_dict(value, effective)
        elif f.metadata.get("redact") and isinstance(value, str):
            out[f.name] = redact_url(value)
        else:
            out[f.name] = _plain(value)
    return out


def redact_url(url: str) -> str:
    """`url` without credentials: `http://user:key@host/v1` → `http://***@host/v1`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.split("?")[0].split("#")[0].rfind("@")  # a password may hold an unencoded "/"
    if at == -1:
        return url
    return f"{scheme}{sep}***@{rest[at + 1:]}"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
