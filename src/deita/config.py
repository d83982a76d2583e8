"""Typed configs shared by the CLI, YAML files and the Python API: one source of truth for option names."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from deita.errors import DeitaError

C = TypeVar("C")


def check_keys(keys: Iterable[str], valid: list[str], source: str) -> None:
    """An unknown key is an error naming the nearest valid one."""
    for key in keys:
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (valid keys: {', '.join(valid)})"
            raise DeitaError(f"{source}: unknown key '{key}'{hint}")


def config_from_mapping(cls: type[C], values: Mapping[str, Any], source: str = "config") -> C:
    """Build dataclass `cls` from a mapping: unknown keys and missing required keys are errors."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    check_keys(values, [f.name for f in fields], source)
    missing = [f.name for f in fields
               if f.name not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise DeitaError(f"{source}: missing required key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return cls(**dict(values))


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass, for saving beside results and fingerprinting."""
    return dataclasses.asdict(config)
