"""Typed configs shared by the CLI, YAML files and the Python API: one source of truth for every option.

A config is a dataclass whose fields are declared with `option(...)`: the default, the help text, the
allowed choices and range live there once. The CLI builds its flags from these fields (`deita.cli`),
YAML sections are read into them with `config_from_mapping` (unknown keys, wrong types are errors), and
`check_config` checks choices and ranges before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from deita.errors import DeitaError

C = TypeVar("C")


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple[str, ...] | None = None,
           min: float | None = None, max: float | None = None, allow: tuple[Any, ...] = (),
           flag: str | None = None, short: str | None = None, cli: bool = True, redact: bool = False,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field with its help, choices and range declared once.

    `allow` lists values accepted outside the range (e.g. -1 for "all"). `flag` overrides the CLI flag
    name (default `--field-name`); `cli=False` keeps a field out of the command line (YAML/API only);
    `redact` marks a URL whose credentials must never be saved or printed.
    """
    metadata = {"help": help, "choices": choices, "min": min, "max": max, "allow": allow, "flag": flag,
                "short": short, "cli": cli, "redact": redact}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a config dataclass (its annotations are strings under `from __future__`)."""
    return typing.get_type_hints(cls)


def is_config(value_or_type: Any) -> bool:
    return dataclasses.is_dataclass(value_or_type)


def check_keys(keys: Iterable[str], valid: list[str], source: str) -> None:
    """An unknown key is an error naming the nearest valid one."""
    for key in keys:
        if not isinstance(key, str) or key not in valid:
            near = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (valid keys: {', '.join(valid)})"
            raise DeitaError(f"{source}: unknown key '{key}'{hint}")


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(tp: Any, value: Any, where: str) -> Any:
    """`value` (from YAML or a keyword argument) as type `tp`, or a DeitaError naming `where`.

    Lists become tuples for tuple fields; ints are accepted for floats; nothing else is converted:
    `threshold: high` is an error, not a string threshold.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option_type in options:
            try:
                return coerce(option_type, value, where)
            except DeitaError as err:
                errors.append(err)
        raise errors[0]
    if origin is tuple:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise DeitaError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        return tuple(coerce(item_type, item, f"{where}[{i}]") for i, item in enumerate(value))
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif is_config(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return config_from_mapping(tp, value, where)
        raise DeitaError(f"{where}: expected a mapping of options, got {value!r}")
    else:
        return value
    raise DeitaError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def config_from_mapping(cls: type[C], values: Mapping[str, Any], source: str = "config",
                        base: C | None = None) -> C:
    """Build dataclass `cls` from a mapping, on top of `base` (or the defaults).

    Unknown keys, values of the wrong type and missing required keys are errors naming the key.
    Nested config fields take a mapping that updates the nested defaults.
    """
    if not isinstance(values, Mapping):
        raise DeitaError(f"{source}: expected a mapping of options, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    check_keys(values, list(fields), source)
    hints = field_types(cls)
    updates: dict[str, Any] = {}
    for name, value in values.items():
        where = f"{source}: {name}"
        tp = hints[name]
        if is_config(tp) and isinstance(value, Mapping):
            nested_base = getattr(base, name) if base is not None else None
            updates[name] = config_from_mapping(tp, value, f"{source}.{name}", nested_base)
        else:
            updates[name] = coerce(tp, value, where)
    if base is not None:
        return dataclasses.replace(base, **updates)  # type: ignore[type-var]
    missing = [f.name for f in fields.values()
               if f.name not in updates and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise DeitaError(f"{source}: missing required key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return cls(**updates)


def iter_options(config: Any, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """(dotted name, field, value) of every leaf option, nested configs included."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if is_config(value):
            yield from iter_options(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, value


def check_config(config: Any, source: str = "", label: Callable[[str], str] | None = None) -> None:
    """Check every option's choices and range, then each config's own `check()` for rules across options.

    The first bad value is a DeitaError naming it (`label` turns a dotted field name into what the user
    typed, e.g. its flag); commands call this before any work starts.
    """
    _check_fields(config, source, label or (lambda name: name))
    _check_rules(config, source)


def _check_rules(config: Any, source: str) -> None:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if is_config(value):
            _check_rules(value, f"{source}{f.name}.")
    rules = getattr(config, "check", None)
    if callable(rules):
        try:
            rules()
        except DeitaError as err:
            raise DeitaError(f"{source}{err}" if source else str(err)) from None


def _check_fields(config: Any, source: str, label: Callable[[str], str]) -> None:
    for name, f, value in iter_options(config):
        where = f"{source}{label(name)}"
        meta = f.metadata
        if value is None or value in meta.get("allow", ()):
            continue
        choices = meta.get("choices")
        if choices and value not in choices:
            near = difflib.get_close_matches(str(value), list(choices), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise DeitaError(f"{where}: '{value}' is not one of {', '.join(choices)}{hint}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = meta.get("min"), meta.get("max")
            allowed = "".join(f" or {a}" for a in meta.get("allow", ()))
            if isinstance(value, float) and not math.isfinite(value):
                raise DeitaError(f"{where}: {value} is not a finite number")
            if low is not None and value < low:
                bound = f"at least {low}" if high is None else f"between {low} and {high}"
                raise DeitaError(f"{where}: {value} is out of range (must be {bound}{allowed})")
            if high is not None and value > high:
                bound = f"at most {high}" if low is None else f"between {low} and {high}"
                raise DeitaError(f"{where}: {value} is out of range (must be {bound}{allowed})")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass (tuples as lists), for YAML files and manifests.

    Fields marked `redact` (URLs) lose their user:password part, so no credential is ever saved.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if is_config(value):
            out[f.name] = config_to_dict(value)
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
