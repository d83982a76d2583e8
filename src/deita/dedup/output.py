"""What `deita dedup` and `deita decontaminate` share on files: reading the pool, batching it, writing the
kept records untouched (in the output's file type) and the side files that name every removed record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deita.data.io import ReadStats, RecordPolicy, RecordWriter, UnwritableRecord, iter_records
from deita.data.records import Record
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


def read_pool(input_path: Path, options: RunOptions, policy: RecordPolicy, stats: ReadStats) -> Iterator[Record]:
    """The good records of the input; bad ones go to `policy`."""
    return iter_records(input_path, fmt=options.format, policy=policy, pairing=options.pairing, stats=stats)


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

    def __init__(self, input_path: Path, output_path: Path, policy: RecordPolicy) -> None:
        self.input_path, self.policy = input_path, policy
        self.writer = RecordWriter(output_path)
        self.unwritable = 0

    def write(self, record: Record) -> None:
        try:
            self.writer.write(record.raw)
        except UnwritableRecord as err:
            self.policy.reject(self.input_path, record.index, record.location,
                               f"cannot write to {self.writer.file_type}: {err}", record.raw, kind="write")
            self.unwritable += 1


def record_id_of(raw: dict) -> Any:
    """The record's own id (`id` or `question_id`), for the side files; None if it has none."""
    value = raw.get("id", raw.get("question_id"))
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None
