"""What every reader yields and fills in: items of (index, location, value, problem) and ``ReadStats``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Item = tuple[int, str, Any, str | None]
"""(index, location, record or raw text, problem or None): a reader's view of one record."""


@dataclass
class ReadStats:
    """Counts filled in while reading; ``records == yielded + rejected``."""

    records: int = 0
    rejected: int = 0
    turns: int = 0
    skipped_leading_assistant: int = 0
    format: str | None = None
    file_type: str | None = None
    bytes_read: int = 0
    """Progress through the input, in ``input_size``'s unit: bytes for JSON/JSONL (approximate for a JSON
    array: it moves chunk by chunk), rows for parquet and datasets."""
    record_start: int = 0
    """JSONL only: the byte offset where the last record yielded starts; it ends at ``bytes_read``. With
    ``records_at`` a later step can fetch chosen records without reading the whole file again."""


Reader = Callable[[Path, ReadStats], Iterator[Item]]
"""A file type's reader: every record of ``path`` in order, good or bad (never dropped), filling ``stats``."""
