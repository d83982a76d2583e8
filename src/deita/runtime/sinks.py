"""Where a stage's results go, record by record in input order: records with new fields, or `.npy` rows.

The runner calls `write(record, rows)` for every good record in input order, then `close()` (or
`abort()` on failure: the output path is left as it was).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from deita.data import atomic
from deita.data.io import RecordWriter
from deita.data.records import Record
from deita.errors import DeitaError

NPY_HEADER_BYTES = 256
"""Room for the `.npy` header, written last once the row count is known (a multiple of 64, as numpy aligns)."""


class Sink(Protocol):
    def write(self, record: Record, rows: np.ndarray) -> None:
        """Add one record's result; raises `UnwritableRecord` for a record this output cannot hold."""
        ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class RecordSink:
    """Each record exactly as read, plus the fields `fields(rows)` makes, in the output's file type."""

    def __init__(self, path: str | Path, fields: Callable[[np.ndarray], dict[str, Any]]) -> None:
        self.path = Path(path)
        self.fields = fields
        self.writer = RecordWriter(self.path)

    @property
    def count(self) -> int:
        return self.writer.count

    def write(self, record: Record, rows: np.ndarray) -> None:
        self.writer.write({**record.raw, **self.fields(rows)})

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


class ArraySink:
    """One row per record in a memory-mappable `.npy`, streamed: rows are appended as they come and the
    header, which holds the row count, is written at close."""

    def __init__(self, path: str | Path, dtype: str) -> None:
        self.path = Path(path)
        if self.path.suffix != ".npy":
            raise DeitaError(f"{self.path}: embeddings are written as a .npy array; give a path ending in .npy")
        self.dtype = np.dtype(dtype)
        self.count = 0
        self.dim: int | None = None
        self._f: IO[bytes] | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = atomic.temp_path(self.path, ".tmp.npy")
            self._f = open(self._tmp, "wb")  # noqa: SIM115
            self._f.write(b"\0" * NPY_HEADER_BYTES)
        except OSError as e:
            self._failed(e)

    def write(self, record: Record, rows: np.ndarray) -> None:
        assert self._f is not None
        row = np.ascontiguousarray(np.asarray(rows).reshape(-1), dtype=self.dtype)
        if self.dim is None:
            self.dim = len(row)
        elif len(row) != self.dim:
            raise DeitaError(f"record {record.location}: {len(row)} values where earlier records had {self.dim}")
        try:
            self._f.write(row.tobytes())
        except OSError as e:
            self._failed(e)
        self.count += 1

    def _failed(self, e: OSError) -> None:
        """Remove the temporary array and raise one error naming the output and the bytes it needs."""
        written = self._tmp.stat().st_size if hasattr(self, "_tmp") and self._tmp.exists() else None
        error = atomic.write_error(e, self.path, written=written)
        self.abort()
        raise error from e

    def close(self) -> None:
        assert self._f is not None
        try:
            self._f.seek(0)
            self._f.write(npy_header(self.dtype, (self.count, self.dim or 0)))
            self._f.close()
        except OSError as e:
            self._failed(e)
        self._f = None
        atomic.commit(self._tmp, self.path)

    def abort(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass  # a full disk fails the flush too: the file goes anyway
            self._f = None
        if hasattr(self, "_tmp"):
            atomic.discard(self._tmp)


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 `.npy` header of exactly `NPY_HEADER_BYTES` bytes (padded with spaces, as numpy pads)."""
    text = f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    room = NPY_HEADER_BYTES - 10  # magic (6) + version (2) + header length (2)
    header = text.ljust(room - 1) + "\n"
    if len(header) != room:
        raise DeitaError(f"shape {shape} does not fit a .npy header")
    return b"\x93NUMPY\x01\x00" + room.to_bytes(2, "little") + header.encode("latin1")
