"""The pass's results as columns keyed by row (the i-th kept record of the pool): no copy of a record.

A folder holds one `.npy` per column (memory-mappable) and `columns.json`, written last, which names the
pool and the settings the columns were computed with: a rerun with the same pool and settings reads the
columns instead of computing them again (the columns are their own resume cache once complete).

* `row_index.npy`: the record's index in the pool file (what the reader calls it; bad records count).
* `spans.npy`: (rows, 2) byte range of each record, for a JSONL pool (fetch by offset).
* `<name>.npy` for each entry of `compute.RECORD_COLUMNS`: one number per record (`response_chars`, the
  characters of its responses, for strategy `length`); where the run sets limits, `token_costs.npy` (int64
  tokens per record, `--token-budget`) and `group_ids.npy` (int64 group per record, `--max-share`; the
  groups' keys are in the marker).
* `<field>.values.npy` and `<field>.offsets.npy`: a per-turn field (`complexity_scores`,
  `instruction_lengths`, …) as flat float64 values and rows + 1 offsets; NaN stands for JSON null.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deita.data import atomic
from deita.errors import DeitaError

MARKER = "columns.json"
TOKEN_COSTS = "token_costs"
GROUP_IDS = "group_ids"


def _save(path: Path, array: np.ndarray) -> None:
    """Write an `.npy` atomically (`data.atomic`: a registered temporary file, then rename)."""
    temporary = atomic.temp_path(path, ".tmp.npy")
    try:
        np.save(temporary, array, allow_pickle=False)
    except OSError as e:
        atomic.discard(temporary)
        raise atomic.write_error(e, path) from e
    except BaseException:
        atomic.discard(temporary)
        raise
    atomic.commit(temporary, path)


class TurnColumn:
    """A per-turn field being filled row by row: flat values and per-row counts (compact arrays)."""

    def __init__(self) -> None:
        self.values = array("d")
        self.counts = array("q")

    def add(self, values: Sequence[float | None]) -> None:
        self.values.extend(math.nan if value is None else float(value) for value in values)
        self.counts.append(len(values))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.zeros(len(self.counts) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=offsets[1:])
        return np.frombuffer(self.values, dtype=np.float64).copy(), offsets


@dataclass
class ColumnsWriter:
    """Collects the columns of one pass, in row order, and writes them with the marker on `finish`."""

    directory: Path
    fields: dict[str, TurnColumn] = field(default_factory=dict)
    row_index: array = field(default_factory=lambda: array("q"))
    spans: array = field(default_factory=lambda: array("q"))
    """Flat (start, end) pairs."""
    record_values: dict[str, array] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    """Whole per-record columns set at the end of the read (token costs, group ids), saved as they are."""
    group_keys: list[str | None] | None = None

    def add_row(self, index: int, span: tuple[int, int] | None, record_values: dict[str, float],
                turn_fields: dict[str, Sequence[float | None]]) -> None:
        self.row_index.append(index)
        if span is not None:
            self.spans.extend(span)
        for name, value in record_values.items():
            self.record_values.setdefault(name, array("d")).append(value)
        for name, values in turn_fields.items():
            self.fields.setdefault(name, TurnColumn()).add(values)

    def finish(self, marker: dict[str, Any]) -> None:
        """Write every column, then the marker (so a marker means every column is there)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        rows = len(self.row_index)
        for name, column in self.fields.items():
            if len(column.counts) != rows:
                raise DeitaError(f"internal error: column {name} has {len(column.counts)} rows of {rows}")
        for name, values in self.record_values.items():
            if len(values) != rows:
                raise DeitaError(f"internal error: column {name} has {len(values)} rows of {rows}")
            _save(self.directory / f"{name}.npy", np.frombuffer(values, dtype=np.float64))
        for name, column in self.arrays.items():
            if len(column) != rows:
                raise DeitaError(f"internal error: column {name} has {len(column)} rows of {rows}")
            _save(self.directory / f"{name}.npy", column)
        _save(self.directory / "row_index.npy", np.frombuffer(self.row_index, dtype=np.int64))
        if self.spans:
            _save(self.directory / "spans.npy", np.frombuffer(self.spans, dtype=np.int64).reshape(-1, 2))
        for name, column in self.fields.items():
            values, offsets = column.arrays()
            _save(self.directory / f"{name}.values.npy", values)
            _save(self.directory / f"{name}.offsets.npy", offsets)
        text = json.dumps({**marker, "rows": rows, "fields": list(self.fields), "spans": bool(self.spans),
                           "record_columns": [*self.record_values, *self.arrays], "group_keys": self.group_keys},
                          indent=2, default=str)
        atomic.write_bytes(self.directory / MARKER, (text + "\n").encode("utf-8"))


def add_columns(directory: Path, arrays: dict[str, np.ndarray], group_keys: list[str | None] | None,
                marker: dict[str, Any]) -> None:
    """Add whole per-record columns to finished ones (replacing any of the same name) and write `marker` in
    place of theirs, last, as `ColumnsWriter.finish` does."""
    found = Columns(directory)
    for name, column in arrays.items():
        if len(column) != found.rows:
            raise DeitaError(f"internal error: column {name} has {len(column)} rows of {found.rows}")
        _save(directory / f"{name}.npy", column)
    names = [*found.marker.get("record_columns", []), *(name for name in arrays
                                                        if name not in found.marker.get("record_columns", []))]
    text = json.dumps({**found.marker, **marker, "record_columns": names,
                       "group_keys": group_keys if group_keys is not None else found.marker.get("group_keys")},
                      indent=2, default=str)
    atomic.write_bytes(directory / MARKER, (text + "\n").encode("utf-8"))


class Columns:
    """Finished columns, read back (memory-mapped)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        path = self.directory / MARKER
        try:
            self.marker: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise DeitaError(f"{path}: the run's columns are missing or unreadable ({err}); run `deita select` "
                             "again to finish them") from None
        self.rows = int(self.marker["rows"])
        self.fields: list[str] = list(self.marker["fields"])

    def _load(self, name: str) -> np.ndarray:
        try:
            return np.load(self.directory / name, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DeitaError(f"{self.directory / name}: unreadable column ({err}); run `deita select` again")\
                from None

    @property
    def row_index(self) -> np.ndarray:
        return self._load("row_index.npy")

    @property
    def spans(self) -> np.ndarray | None:
        return self._load("spans.npy") if self.marker.get("spans") else None

    def record_column(self, name: str) -> np.ndarray:
        """One number per row (an entry of `compute.RECORD_COLUMNS`)."""
        if name not in self.marker.get("record_columns", []):
            raise DeitaError(f"the run computed no '{name}' column")
        return self._load(f"{name}.npy")

    @property
    def group_keys(self) -> list[str | None]:
        """The groups' keys, by id, of `group_ids` (empty when the run set no --max-share)."""
        return list(self.marker.get("group_keys") or [])

    def turn_arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(flat values, offsets) of a per-turn field."""
        if name not in self.fields:
            raise DeitaError(f"the run computed no '{name}' (it has {', '.join(self.fields) or 'no fields'})")
        return self._load(f"{name}.values.npy"), self._load(f"{name}.offsets.npy")

    def lists(self, name: str) -> list[list[float | None]]:
        """Every row's per-turn list of `name`, as the staged path's JSON held them (NaN → None)."""
        values, offsets = self.turn_arrays(name)
        flat = [None if value != value else value for value in np.asarray(values).tolist()]
        bounds = np.asarray(offsets).tolist()
        return [flat[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)]



def read_marker(directory: Path) -> dict[str, Any] | None:
    """The marker of finished columns in `directory`, or None."""
    try:
        return json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
