"""What `deita dedup` and `deita decontaminate` share on files: reading the pool, batching it, writing the
kept records untouched (in the output's file type) and the side files that name every removed record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deita.data.io import (
    SKIP_HINT,
    ReadStats,
    RecordWriter,
    RejectsWriter,
    UnwritableRecord,
    iter_records,
    rejects_path_for,
)
from deita.data.records import Record
from deita.errors import RecordError
from deita.runtime.options import RunOptions

BATCH = 4096
"""Records hashed or checked together: enough to amortise numpy and rensa calls, a few MB of text."""


def duplicates_path_for(output: str | Path) -> Path:
    """`OUT.duplicates.jsonl`: every record dedup removed, the record kept in its place and the similarity."""
    output = Path(output)
    return output.with_name(output.name + ".duplicates.jsonl")


def contaminated_path_for(output: str | Path) -> Path:
    """`OUT.contaminated.jsonl`: every record decontamination removed, the eval item and the evidence."""
    output = Path(output)
    return output.with_name(output.name + ".contaminated.jsonl")


def read_pool(input_path: Path, output_path: Path, options: RunOptions, rejects: RejectsWriter | None,
              stats: ReadStats) -> Iterator[Record]:
    """The good records of the input; bad ones stop the run or go to `rejects` (named after the output)."""
    return iter_records(input_path, fmt=options.format, on_error="skip" if rejects is not None else "fail",
                        rejects=rejects, pairing=options.pairing, stats=stats,
                        rejects_hint=rejects_path_for(output_path))


def batches(records: Iterator[Record], size: int = BATCH) -> Iterator[list[Record]]:
    """The records in lists of `size` (the last one shorter)."""
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class KeptWriter:
    """The kept records into OUT; a record OUT's file type cannot hold is a bad record like any other."""

    def __init__(self, input_path: Path, output_path: Path, rejects: RejectsWriter | None) -> None:
        self.input_path, self.rejects = input_path, rejects
        self.writer = RecordWriter(output_path)
        self.unwritable = 0

    def write(self, record: Record) -> None:
        try:
            self.writer.write(record.raw)
        except UnwritableRecord as err:
            problem = f"cannot write to {self.writer.file_type}: {err}"
            if self.rejects is None:
                raise RecordError(self.input_path, record.location, problem,
                                  hint=SKIP_HINT.format(rejects=rejects_path_for(self.writer.path))) from err
            self.rejects.add(record.index, record.location, problem, record.raw)
            self.unwritable += 1


def record_id_of(raw: dict) -> Any:
    """The record's own id (`id` or `question_id`), for the side files; None if it has none."""
    value = raw.get("id", raw.get("question_id"))
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None
