"""The filter's statistics JSON (`deita filter --stats`) as the report reads it, checked field by field so a
malformed file is one error naming the file and the field, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deita.errors import DeitaError, quote


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _skipped_row(row: Any) -> bool:
    return (isinstance(row, dict) and _int(row.get("index")) and _int(row.get("duplicate_of"))
            and _number(row.get("similarity")))


_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "sort_key": (lambda v: isinstance(v, list) and all(isinstance(k, str) for k in v), "a list of field names"),
    "skipped": (lambda v: isinstance(v, list) and all(_skipped_row(r) for r in v),
                'a list of {"index", "duplicate_of", "similarity"} objects'),
    "selected": (lambda v: isinstance(v, list) and all(_int(i) for i in v), "a list of pool indices"),
    "n_examined": (_int, "a count"),
    "n_near_duplicates": (_int, "a count"),
    "n_selected": (_int, "a count"),
    "threshold": (lambda v: v is None or _number(v), "a number"),
    "max_ifd": (lambda v: v is None or _number(v), "a number"),
    "funnel": (lambda v: isinstance(v, dict) and all(_int(n) for n in v.values()), "an object of counts"),
}


def load_stats(path: str | Path) -> dict[str, Any]:
    """The statistics in ``path``; ``DeitaError`` naming the file (and the field) when they are not JSON, not
    an object, or a field the report reads has the wrong type."""
    try:
        stats = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DeitaError(f"--stats {path}: not a readable statistics JSON ({err})") from None
    check_stats(stats, f"--stats {path}")
    return stats


def check_stats(stats: Any, where: str) -> None:
    """Raise ``DeitaError`` unless ``stats`` is an object whose known fields have the types the report uses."""
    if not isinstance(stats, dict):
        raise DeitaError(f"{where}: not filter statistics (a JSON object from `deita filter --stats`), "
                         f"but {quote(stats)}")
    for key, (valid, what) in _FIELDS.items():
        if key in stats and not valid(stats[key]):
            raise DeitaError(f"{where}: field {key!r} should be {what}, not {quote(stats[key])}")
