"""The walk's limit columns (token costs for --token-budget, group ids for --max-share) added to finished
columns. They depend on a tokenizer and a field, not on the scores: a rerun that changes only those reads the
pool once more for them and keeps every score and embedding, which could have taken GPU hours to compute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deita.passes.columns import GROUP_IDS, TOKEN_COSTS, Columns, add_columns
from deita.passes.fetch import ScoredPool
from deita.select_config import SelectConfig
from deita.selection.run import limit_columns


def _without_limits(fingerprint: dict[str, Any]) -> dict[str, Any]:
    return {**fingerprint, "settings": {**fingerprint.get("settings", {}), "limits": None}}


def only_limits_differ(found: dict[str, Any] | None, fingerprint: dict[str, Any]) -> bool:
    """Whether finished columns (`found`, their marker) were computed with this run's pool and settings but
    for other limit columns."""
    if found is None or not isinstance(found.get("settings"), dict):
        return False
    mine = {key: found.get(key) for key in fingerprint}
    return mine != fingerprint and _without_limits(mine) == _without_limits(fingerprint)


def add_limit_columns(pool: Path, directory: Path, config: SelectConfig, fingerprint: dict[str, Any]) -> int:
    """Compute the limit columns `config` needs for the finished columns' rows, in one read of the pool, and
    mark the columns as computed with `fingerprint`'s settings. Returns the records read."""
    costs, groups = limit_columns(config.filter)
    read = 0
    if costs is not None or groups is not None:
        scored = ScoredPool(pool, Columns(directory), config.run.format, config.run.pairing)
        for record in scored.records(merge=False):
            read += 1
            if costs is not None:
                costs.add(record.raw)
            if groups is not None:
                groups.add(record.raw)
    arrays: dict[str, np.ndarray] = {}
    if costs is not None:
        arrays[TOKEN_COSTS] = costs.array()
    if groups is not None:
        arrays[GROUP_IDS] = groups.array()
    add_columns(directory, arrays, groups.keys() if groups is not None else None,
                {"settings": fingerprint["settings"]})
    return read
