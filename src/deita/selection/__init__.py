"""Selection: final scores, the blocked exact Repr Filter, and baseline strategies.

The names below load on first use (PEP 562), so importing a light module of this package (its config,
its scores) does not import torch."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "DEFAULT_SCORE_KEYS": "deita.selection.scores",
    "STRATEGIES": "deita.selection.strategies",
    "SelectionResult": "deita.selection.deita",
    "deita_filter": "deita.selection.deita",
    "final_scores": "deita.selection.scores",
    "kcenter_select": "deita.selection.baselines",
    "length_select": "deita.selection.baselines",
    "random_select": "deita.selection.baselines",
    "score_select": "deita.selection.baselines",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'deita.selection' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
