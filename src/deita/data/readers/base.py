"""What every reader yields and fills in: items of (index, location, value, problem) and ``ReadStats``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from deita.data.source import Fingerprint, open_source

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
    reread: bool = False
    """Set by a command that will read the file again: a pipe is refused before reading, and this read keeps
    its ``fingerprint``."""
    expect: Fingerprint | None = None
    """Set on the second read (``again()``): the file must be the one the first read saw."""
    fingerprint: Fingerprint | None = None
    """What a ``reread`` read saw (size, mtime, hash of its bytes), filled in at the end of the file."""

    def again(self) -> ReadStats:
        """Fresh stats for the second read of the same file, which must find the bytes this read found."""
        if self.reread and self.fingerprint is None:
            raise RuntimeError("again() before the first read reached the end of the file")
        return ReadStats(expect=self.fingerprint)

    def open(self, path: Path) -> AbstractContextManager[IO[bytes]]:
        """The input's UTF-8 bytes for a reader (``source.open_source`` with this read's checks)."""
        return open_source(path, reread=self.reread, expect=self.expect,
                           record=lambda fingerprint: setattr(self, "fingerprint", fingerprint))


Reader = Callable[[Path, ReadStats], Iterator[Item]]
"""A file type's reader: every record of ``path`` in order, good or bad (never dropped), filling ``stats``."""
