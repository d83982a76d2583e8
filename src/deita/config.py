"""Typed configs shared by the CLI, YAML files and the Python API: one source of truth for option names."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any, TypeVar

from deita.errors import DeitaError

C = TypeVar("C")


def config_from_mapping(cls: type[C], values: Mapping[str, Any], source: str = "config") -> C:
    """Build dataclass `cls` from a mapping; an unknown key is an error naming the nearest valid key."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in values:
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (valid keys: {', '.join(names)})"
            raise DeitaError(f"{source}: unknown key '{key}'{hint}")
    missing = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
               if f.name not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise DeitaError(f"{source}: missing required key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return cls(**dict(values))


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass, for saving beside results and fingerprinting."""
    return dataclasses.asdict(config)
