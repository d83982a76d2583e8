"""Hugging Face datasets saved with ``save_to_disk`` (one split's folder), read in batches of rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deita.data.source import folder_fingerprint
from deita.errors import DeitaError

from .base import Item, ReadStats

_BATCH_ROWS = 1000


def load_dataset(path: Path) -> Any:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        splits = ", ".join(ds)
        raise DeitaError(
            f"{path}: a dataset with splits ({splits}); give one split's folder, e.g. {path}/{next(iter(ds))}"
        )
    return ds


def read_dataset(path: Path, stats: ReadStats | None = None) -> Iterator[Item]:
    stats = stats if stats is not None else ReadStats()
    if stats.reread or stats.expect is not None:
        stats.fingerprint = folder_fingerprint(path, stats.expect)
    index = 0
    for table in load_dataset(path).with_format("arrow").iter(batch_size=_BATCH_ROWS):
        for row in table.to_pylist():
            stats.bytes_read = index + 1  # rows, the unit input_size gives for datasets
            yield index, f"index {index}", row, None
            index += 1
