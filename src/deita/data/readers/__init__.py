"""One reader per file type, in one table: ``READERS`` maps a file type (``formats.file_type_of``) to its
reader. A new file type is one module here plus one line in the table.

Readers hold one record (or one batch) at a time, so a million-record pool needs no more memory than a
few records. Every record a reader counts is yielded as an ``Item``, with its problem when it is bad,
never dropped; the format rules (``iter_records``) come after.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from deita.data.formats import file_type_of

from .base import Item, Reader, ReadStats
from .dataset import load_dataset, read_dataset
from .json import read_json
from .jsonl import read_jsonl
from .parquet import parquet_rows, read_parquet

READERS: dict[str, Reader] = {
    "json": read_json,
    "jsonl": read_jsonl,
    "parquet": read_parquet,
    "dataset": read_dataset,
}


def read_items(path: Path, stats: ReadStats) -> Iterator[Item]:
    """Every item of ``path`` (good and bad, before any format rule) through its file type's reader."""
    return READERS[file_type_of(path)](path, stats)


__all__ = ["READERS", "Item", "ReadStats", "Reader", "load_dataset", "parquet_rows", "read_items"]
