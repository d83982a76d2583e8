"""The kept records of the pool with their columns merged back, as the staged path's scored file held
them: fetched by byte offset (a JSONL pool), or met in one streaming read of the pool."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from deita.data.io import ReadStats, iter_records, records_at
from deita.data.policy import RecordPolicy
from deita.data.records import Record
from deita.data.source import Fingerprint, InputChanged
from deita.errors import DeitaError
from deita.passes.columns import Columns


def already_counted() -> RecordPolicy:
    """The policy of a read after the first: its bad records were met (and set aside) by the first read."""
    return RecordPolicy.skipping(None, write=False)


def check_unchanged(pool: Path, columns: Columns) -> Fingerprint | None:
    """Refuse a pool that is not the file the columns were computed from (size and modification time);
    returns what the columns' reads found (`data.source.Fingerprint`), for the next read to find again: by
    offset its size and time are checked, streamed every byte's hash too."""
    stat = pool.stat()
    if [stat.st_size, stat.st_mtime_ns] != list(columns.marker["pool"]["identity"]):
        raise InputChanged(f"{pool} changed since its columns were computed: nothing was written; run deita "
                           "select again")
    read = columns.marker.get("read")
    return Fingerprint(**read) if read else None


class ScoredPool:
    """The pool's kept records (rows), each with its per-turn columns merged in, read on demand."""

    def __init__(self, pool: Path, columns: Columns, fmt: str | None, pairing: str) -> None:
        self.pool, self.columns, self.fmt, self.pairing = pool, columns, fmt, pairing
        self.arrays = {name: columns.turn_arrays(name) for name in columns.fields}
        self.row_index = np.asarray(columns.row_index)

    def merged(self, row: int, raw: dict) -> dict:
        """The record as the staged path wrote it: its own fields, then the columns in the order added."""
        fields = {}
        for name, (values, offsets) in self.arrays.items():
            turns = values[int(offsets[row]) : int(offsets[row + 1])].tolist()
            fields[name] = [None if value != value else value for value in turns]  # NaN: JSON null
        return {**raw, **fields}

    def records(self, merge: bool = True) -> Iterator[Record]:
        """Every row in order, as a `Record` of the merged dict, or of the record alone without `merge` (one
        streaming read of the pool)."""
        expect = check_unchanged(self.pool, self.columns)
        rows = iter(enumerate(self.row_index.tolist()))
        row, wanted = next(rows, (None, None))
        for record in iter_records(self.pool, fmt=self.fmt, policy=already_counted(), pairing=self.pairing,
                                   stats=ReadStats(expect=expect)):
            if record.index != wanted:
                continue
            raw = self.merged(row, record.raw) if merge else record.raw
            yield Record(record.index, record.location, raw, record.turns, record.system,
                         record.skipped_leading_assistant)
            row, wanted = next(rows, (None, None))
        if wanted is not None:
            raise DeitaError(f"{self.pool} changed since its columns were computed (record index {wanted} is "
                             "missing); run deita select again")

    def fetch(self, rows: Sequence[int]) -> list[dict]:
        """The merged records of `rows`, in that order: by byte offset where the pool is JSONL, else by one
        streaming read."""
        expect = check_unchanged(self.pool, self.columns)
        spans = self.columns.spans
        if spans is not None:
            chosen = records_at(self.pool, ((int(spans[r][0]), int(spans[r][1])) for r in rows), expect=expect)
            return [self.merged(int(row), raw) for row, raw in zip(rows, chosen, strict=True)]
        tap = SelectedTap(self.records(), rows)
        for _ in tap:
            pass
        return tap.chosen()


class SelectedTap:
    """Passes the rows of a `ScoredPool.records()` stream through, keeping the merged dicts of `rows`."""

    def __init__(self, records: Iterator[Record], rows: Sequence[int]) -> None:
        self.stream = records
        self.rank = {int(row): rank for rank, row in enumerate(rows)}
        self.kept: list[dict | None] = [None] * len(self.rank)

    def __iter__(self) -> Iterator[Record]:
        for row, record in enumerate(self.stream):
            rank = self.rank.get(row)
            if rank is not None:
                self.kept[rank] = record.raw
            yield record

    def chosen(self) -> list[dict]:
        if any(raw is None for raw in self.kept):
            raise DeitaError("internal error: a selected row was not met in the pool")
        return self.kept  # type: ignore[return-value]
