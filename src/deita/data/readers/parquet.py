"""Parquet files, read in batches of rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from deita.errors import DeitaError

from .base import Item, ReadStats

_BATCH_ROWS = 1000


def read_parquet(path: Path, stats: ReadStats | None = None) -> Iterator[Item]:
    stats = stats if stats is not None else ReadStats()
    if stats.reread or stats.expect is not None:  # pyarrow reads the bytes itself: hash them for the fingerprint
        with stats.open(path) as f:
            while f.read(1 << 20):
                pass
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DeitaError(f"{path}: cannot read as parquet: {e}") from e
    index = 0
    for batch in pf.iter_batches(batch_size=_BATCH_ROWS):
        for row in batch.to_pylist():
            stats.bytes_read = index + 1  # rows, the unit input_size gives for parquet
            yield index, f"index {index}", row, None
            index += 1


def parquet_rows(path: Path) -> int:
    """Rows of a parquet file, from its metadata (no data read)."""
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as e:
        raise DeitaError(f"{path}: cannot read as parquet: {e}") from e
