"""Atomic record writing: JSON, JSONL, parquet and saved datasets go to a temporary file beside the output
and are renamed there on success, so a crash never leaves a half-written output behind.

Serialising goes through orjson; the stdlib encoder writes what orjson cannot encode as it came (big
integers, NaN/Infinity, lone surrogates, non-string keys).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from deita.errors import DeitaError

from . import atomic
from .checks import value_problem
from .formats import FILE_TYPES, file_type_of

if TYPE_CHECKING:
    from typing_extensions import Self

_BATCH_ROWS = 1000
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # orjson's layout, for its fallbacks


class _ParquetSink:
    """Rows to a parquet file in batches; a later batch with new fields or wider types rewrites the file
    once with the unified schema (rare: e.g. a column that was all null in the first batch)."""

    def __init__(self, path: Path) -> None:
        self.path, self.written = path, 0
        self.rows: list[dict] = []
        self.schema: pa.Schema | None = None
        self.writer: pq.ParquetWriter | None = None

    def add(self, raw: dict) -> None:
        self.rows.append(raw)
        if len(self.rows) >= _BATCH_ROWS:
            self.flush()

    def _table(self, schema: pa.Schema | None = None) -> pa.Table:
        try:
            if schema is not None:
                return pa.Table.from_pylist(self.rows, schema=schema)
            keys = dict.fromkeys(k for row in self.rows for k in row)  # from_pylist would see row 0's only
            return pa.Table.from_pydict({k: [row.get(k) for row in self.rows] for k in keys})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            first = self.written
            raise DeitaError(
                f"cannot write records {first}-{first + len(self.rows) - 1} to parquet: {e} "
                "(parquet needs one type per field; write .jsonl instead)"
            ) from e

    def flush(self) -> None:
        if not self.rows:
            return
        table = self._table()
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.path, self.schema)
        elif not table.schema.equals(self.schema):
            try:
                unified = pa.unify_schemas([self.schema, table.schema], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise DeitaError(
                    f"cannot write record {self.written} onwards to parquet: {e} "
                    "(parquet needs one type per field; write .jsonl instead)"
                ) from e
            if not unified.equals(self.schema):
                self._rewrite(unified)
            table = self._table(self.schema)
        self.writer.write_table(table)
        self.written += len(self.rows)
        self.rows = []

    def _rewrite(self, schema: pa.Schema) -> None:
        assert self.writer is not None
        self.writer.close()
        old = self.path.with_name(self.path.name + ".old")
        atomic.track(old, self.path)
        os.replace(self.path, old)
        self.schema, self.writer = schema, pq.ParquetWriter(self.path, schema)
        for batch in pq.ParquetFile(old).iter_batches(batch_size=_BATCH_ROWS):
            self.writer.write_table(pa.Table.from_pylist(batch.to_pylist(), schema=schema))
        atomic.discard(old)

    def close(self) -> None:
        self.flush()
        if self.writer is None:
            pq.write_table(pa.table({}), self.path)
        else:
            self.writer.close()
            self.writer = None

    def abort(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError:
                pass  # a full disk fails the close too: the file goes anyway
        for p in (self.path, self.path.with_name(self.path.name + ".old")):
            p.unlink(missing_ok=True)


class UnwritableRecord(DeitaError, ValueError):
    """``RecordWriter.write`` cannot write this record to its file type (e.g. an integer beyond int64 to
    parquet). Raised before anything of the record is buffered, so the caller can send the record to a
    rejects writer and go on writing; the message is the reason and names the field."""


_WRITE_BUFFER = 1 << 20


def encode_record(raw: Any, option: int = 0) -> bytes:
    """One record as compact UTF-8 JSON (orjson), keys in their order. What orjson cannot encode exactly
    as it came goes through the stdlib encoder: integers beyond 64 bits, NaN and Infinity (orjson would
    write null), lone surrogates (written as their ``\\ud800`` escape), non-string keys. ``option``:
    orjson options; the fallback honours ``OPT_APPEND_NEWLINE`` too. Raises ``UnwritableRecord`` for what
    neither can write (too deep, circular)."""
    try:
        data = orjson.dumps(raw, option=option)
    except orjson.JSONEncodeError:
        pass
    else:
        if data.rfind(b"null") < 0:  # NaN and Infinity come out as null: let the stdlib write those records
            return data
    try:
        text = _ENCODER.encode(raw)
    except RecursionError as e:
        raise UnwritableRecord("nested deeper than the JSON encoder allows") from e
    except ValueError as e:  # a circular reference, an integer of more than 4300 digits
        raise UnwritableRecord(f"cannot encode as JSON: {e}") from e
    data = text.encode("utf-8", "backslashreplace")
    return data + b"\n" if option & orjson.OPT_APPEND_NEWLINE else data


class RecordWriter:
    """Write raw records atomically: to a temporary file beside ``path``, renamed there on a clean close.

    JSON is an array written record by record; parquet goes in batches; a ``dataset`` folder is written
    through a temporary parquet file and ``datasets.Dataset.save_to_disk`` at close.

    ``write`` raises ``UnwritableRecord`` for a record this file type cannot hold, leaving the output as
    it was, so one such record need not fail the whole write: parquet and datasets need integers within
    int64, valid Unicode text and a schema at most ``PARQUET_MAX_SCHEMA_DEPTH`` deep (what pyarrow reads
    back); JSON/JSONL take any integer (Python's
    json round-trips big ints) and write a lone surrogate as its ``\\ud800`` escape.

    The temporary file is removed on any failure (``atomic``: also on SIGINT/SIGTERM through the CLI); a
    failed write (a full disk) is one ``DeitaError`` naming the output, the bytes written and the space free.
    """

    def __init__(self, path: str | Path, file_type: str | None = None) -> None:
        self.path = Path(path)
        self.file_type = file_type or file_type_of(self.path)
        if self.file_type not in FILE_TYPES:
            raise DeitaError(
                f"unknown file type {self.file_type!r} (expected one of {', '.join(FILE_TYPES)})"
            )
        self.count = 0
        self._f: IO[bytes] | None = None
        self._sink: _ParquetSink | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise atomic.write_error(e, self.path) from e
        self._tmp = atomic.temp_path(self.path)
        try:
            if self.file_type in ("json", "jsonl"):
                self._f = open(self._tmp, "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115
                if self.file_type == "json":
                    self._f.write(b"[\n")
            else:
                self._sink = _ParquetSink(self._tmp)
        except OSError as e:
            self.abort()
            raise atomic.write_error(e, self.path) from e

    def check(self, raw: dict) -> str | None:
        """Why ``write(raw)`` would raise ``UnwritableRecord``, or None. For JSON outputs only nesting is
        checked here (an encoder failure, e.g. a circular reference, still surfaces in ``write``)."""
        return value_problem(raw, parquet=self._sink is not None)

    def write(self, raw: dict) -> None:
        """Add one record; ``UnwritableRecord`` (nothing written) when this file type cannot hold it."""
        try:
            self._write(raw)
        except OSError as e:
            self.abort_with(e)

    def abort_with(self, e: OSError) -> None:
        """Remove the temporary file and raise the write error, naming the output."""
        error = atomic.write_error(e, self.path, written=self._tmp.stat().st_size if self._tmp.exists() else None)
        self.abort()
        raise error from e

    def _write(self, raw: dict) -> None:
        if self._sink is not None:
            problem = self.check(raw)
            if problem is not None:
                raise UnwritableRecord(problem)
            self._sink.add(raw)
        else:
            assert self._f is not None
            if self.file_type == "jsonl":
                self._f.write(encode_record(raw, orjson.OPT_APPEND_NEWLINE))
            else:
                data = encode_record(raw)
                self._f.write(data if not self.count else b",\n" + data)
        self.count += 1

    def close(self) -> None:
        """Finish the file and move it into place (on failure, remove the temporary file and re-raise)."""
        try:
            if self._f is not None:
                if self.file_type == "json":
                    self._f.write(b"\n]\n" if self.count else b"]\n")
                self._f.close()
                self._f = None
                atomic.commit(self._tmp, self.path)
            elif self._sink is not None:
                self._sink.close()
                self._sink = None
                if self.file_type == "dataset":
                    self._save_dataset()
                else:
                    atomic.commit(self._tmp, self.path)
        except OSError as e:
            self.abort_with(e)
        except BaseException:
            self.abort()
            raise

    def _save_dataset(self) -> None:
        import datasets

        tmp_dir = atomic.temp_path(self.path, ".tmp.dir")
        quiet = datasets.are_progress_bars_disabled()
        datasets.disable_progress_bars()
        try:
            table = pq.read_table(self._tmp)
            if not self.count:  # datasets can save no rows only with a field and one shard
                table = pa.table({"id": pa.array([], pa.string())})
            datasets.Dataset(table).save_to_disk(str(tmp_dir), num_shards=None if self.count else 1)
            atomic.commit(tmp_dir, self.path)
        except BaseException:
            atomic.discard(tmp_dir)
            raise
        finally:
            if not quiet:
                datasets.enable_progress_bars()
            atomic.discard(self._tmp)

    def abort(self) -> None:
        """Drop everything written so far; the output path is left as it was."""
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass  # a full disk fails the last flush too: the file goes anyway
            self._f = None
        if self._sink is not None:
            self._sink.abort()
            self._sink = None
        atomic.discard(self._tmp)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_records(path: str | Path, raws: Iterable[dict], file_type: str | None = None) -> int:
    """Write ``raws`` to ``path`` atomically; returns how many were written."""
    with RecordWriter(path, file_type) as w:
        for raw in raws:
            w.write(raw)
    return w.count
