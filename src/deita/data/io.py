"""Streaming record reading (JSON, JSONL, parquet, saved datasets) and atomic record writing.

Readers hold one record (or one batch) at a time, so a million-record pool needs no more memory than a
few records; writers go to a temporary file in the output's folder and rename it on success, so a
crash never leaves a half-written output behind.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from deita.errors import DeitaError, RecordError

from .formats import (
    FILE_TYPES,
    FORMATS,
    PAIRINGS,
    convert_record,
    detect_format,
    file_type_of,
    json_type,
    parse_turns,
)
from .records import Record

if TYPE_CHECKING:
    from typing_extensions import Self

SKIP_HINT = "Use --on-error skip to write bad records to {rejects} and continue"
ON_ERROR = ("fail", "skip")
_CHUNK = 1 << 20
_BATCH_ROWS = 1000
_WS = re.compile(r"[ \t\n\r]*")
_ENCODER = json.JSONEncoder(ensure_ascii=False)  # one encoder: json.dumps with options builds one per call
_SURROGATE = re.compile("[\udc80-\udcff]")  # invalid UTF-8 bytes decoded with surrogateescape

# (index, location, record or raw text, problem or None)
_Item = tuple[int, str, Any, str | None]
OnBad = Callable[[int, str, str, Any], None]


@dataclass
class ReadStats:
    """Counts filled in while reading; ``records == yielded + rejected``."""

    records: int = 0
    rejected: int = 0
    turns: int = 0
    skipped_leading_assistant: int = 0
    format: str | None = None
    file_type: str | None = None


def rejects_path_for(output: str | Path) -> Path:
    """Where bad records of a run writing ``output`` go: ``<output>.rejects.jsonl``."""
    p = Path(output)
    return p.with_name(p.name + ".rejects.jsonl")


class RejectsWriter:
    """JSONL of rejected records: ``{"index", "location", "reason", "record"}``; created on the first one.

    A stale rejects file from an earlier run is removed at construction, so the file always describes
    this run.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._f: IO[str] | None = None
        self.path.unlink(missing_ok=True)

    def add(self, index: int, location: str, reason: str, record: Any) -> None:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "w", encoding="utf-8", errors="backslashreplace", newline="\n")  # noqa: SIM115
        row = {"index": index, "location": location, "reason": reason, "record": record}
        self._f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- raw readers (one per file type)


def _iter_jsonl(path: Path) -> Iterator[_Item]:
    index, offset = 0, 0
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            start, offset = offset, offset + len(line)
            if lineno == 1 and line.startswith(codecs.BOM_UTF8):
                line, start = line[3:], 3
            if line.isspace() or not line:
                continue
            loc = f"line {lineno}"
            try:
                text = line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                problem = (
                    f"not valid UTF-8: byte 0x{line[e.start]:02x} at column {e.start + 1} "
                    f"(byte offset {start + e.start} of the file)"
                )
                yield index, loc, line.decode("utf-8", "replace").rstrip("\r\n"), problem
            else:
                try:
                    yield index, loc, json.loads(text), None
                except json.JSONDecodeError as e:
                    yield index, loc, text, f"invalid JSON: {e.msg} at column {e.colno}"
            index += 1


class _TextBuffer:
    """Text of a binary file decoded chunk by chunk; ``buf[pos:]`` is the unread part."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.buf, self.pos, self.eof = f, "", 0, False
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.json = json.JSONDecoder()
        self.lines_before = 0  # newlines in the text already dropped from buf

    def fill(self) -> bool:
        """Drop the consumed text and append the next chunk; False at end of file."""
        if self.eof:
            return False
        data = self.f.read(max(_CHUNK, len(self.buf) - self.pos))  # grow geometrically for huge records
        self.eof = not data
        self.lines_before += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos :] + self.decoder.decode(data, final=self.eof)
        self.pos = 0
        return not self.eof

    def peek(self) -> str:
        """The next non-whitespace character ("" at end of file), leaving pos on it."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf) or not self.fill():
                return self.buf[self.pos : self.pos + 1]

    def decode(self) -> tuple[Any, int]:
        """The JSON value at pos and its end, reading more text while the value is cut off by the chunk."""
        while True:
            try:
                value, end = self.json.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                cut = e.pos >= len(self.buf) - 64 or e.msg.startswith("Unterminated string")
                if self.eof or not cut:
                    raise
                self.fill()  # then decode again, in the new buffer's coordinates
                continue
            if end < len(self.buf) or self.eof:
                return value, end
            self.fill()  # the value ends at the chunk's end: a number may go on

    def line_of(self, pos: int) -> int:
        return self.lines_before + self.buf.count("\n", 0, pos) + 1


def _iter_json(path: Path) -> Iterator[_Item]:
    """Records of a JSON array, decoded one at a time; a .json file of objects one per line is JSONL."""
    with open(path, "rb") as f:
        t = _TextBuffer(f)
        first = t.peek()
        if first == "\ufeff":
            t.pos += 1
            first = t.peek()
        if first == "{":
            yield from _iter_jsonl(path)
            return
        if first == "":
            return
        if first != "[":
            raise RecordError(
                path, f"line {t.line_of(t.pos)}", "not a JSON array of records (nor JSON Lines)"
            )
        t.pos += 1
        index = 0
        if t.peek() == "]":
            return
        while True:
            loc = f"index {index}"
            if t.peek() == "":
                yield index, loc, "", "invalid JSON: the array is not closed (is the file cut off?)"
                return
            try:
                value, end = t.decode()
            except json.JSONDecodeError as e:
                problem = (
                    f"invalid JSON: {e.msg} at file line {t.line_of(e.pos)}, character {e.pos - t.pos + 1} "
                    "of the record; the rest of the array cannot be read"
                )
                yield index, loc, t.buf[t.pos : t.pos + 500], problem
                return
            start = t.pos
            bad = _SURROGATE.search(t.buf, start, end)
            if bad:
                text = t.buf[start:end].encode("utf-8", "surrogateescape")
                offset = len(t.buf[start : bad.start()].encode("utf-8", "surrogateescape"))
                problem = (
                    f"not valid UTF-8: byte 0x{ord(bad.group()) - 0xDC00:02x} at byte {offset + 1} "
                    f"of the record (file line {t.line_of(bad.start())})"
                )
                yield index, loc, text.decode("utf-8", "replace"), problem
            else:
                yield index, loc, value, None
            t.pos, index = end, index + 1
            sep = t.peek()
            if sep == "]":
                break
            if sep != ",":
                found = repr(sep) if sep else "end of file"
                problem = (
                    f"invalid JSON: expected ',' or ']' after the record at index {index - 1}, found {found} "
                    f"(file line {t.line_of(t.pos)}); the rest of the array cannot be read"
                )
                yield index, f"index {index}", t.buf[t.pos : t.pos + 500], problem
                return
            t.pos += 1
        t.pos += 1
        if t.peek():
            raise RecordError(
                path, f"line {t.line_of(t.pos)}", "unexpected data after the closing ']' of the array"
            )


def _iter_parquet(path: Path) -> Iterator[_Item]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DeitaError(f"{path}: cannot read as parquet: {e}") from e
    index = 0
    for batch in pf.iter_batches(batch_size=_BATCH_ROWS):
        for row in batch.to_pylist():
            yield index, f"index {index}", row, None
            index += 1


def _load_dataset(path: Path) -> Any:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        splits = ", ".join(ds)
        raise DeitaError(
            f"{path}: a dataset with splits ({splits}); give one split's folder, e.g. {path}/{next(iter(ds))}"
        )
    return ds


def _iter_dataset(path: Path) -> Iterator[_Item]:
    index = 0
    for table in _load_dataset(path).with_format("arrow").iter(batch_size=_BATCH_ROWS):
        for row in table.to_pylist():
            yield index, f"index {index}", row, None
            index += 1


_READERS: dict[str, Callable[[Path], Iterator[_Item]]] = {
    "json": _iter_json, "jsonl": _iter_jsonl, "parquet": _iter_parquet, "dataset": _iter_dataset,
}  # fmt: skip


# ---------------------------------------------------------------- records


def _check_options(fmt: str | None, on_error: str, pairing: str) -> None:
    if fmt is not None and fmt not in FORMATS:
        raise DeitaError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if on_error not in ON_ERROR:
        raise DeitaError(f"unknown on_error {on_error!r} (expected one of {', '.join(ON_ERROR)})")
    if pairing not in PAIRINGS:
        raise DeitaError(f"unknown pairing {pairing!r} (expected one of {', '.join(PAIRINGS)})")


def _open(path: str | Path) -> tuple[Path, str]:
    p = Path(path)
    if not p.exists():
        raise DeitaError(f"{p}: no such file or directory")
    return p, file_type_of(p)


def _records(
    path: Path, file_type: str, fmt: str | None, pairing: str, stats: ReadStats, on_bad: OnBad
) -> Iterator[Record]:
    """Parsed good records; each bad one goes to ``on_bad(index, location, problem, record)``."""
    stats.file_type, stats.format = file_type, fmt
    for index, loc, obj, problem in _READERS[file_type](path):
        stats.records += 1
        if problem is None:
            if not isinstance(obj, dict):
                problem = f"not a JSON object: the record is {json_type(obj)}"
            else:
                try:
                    if fmt is None:
                        fmt = stats.format = detect_format(obj)
                    turns, system, skipped = parse_turns(obj, fmt, pairing)
                except ValueError as e:
                    problem = str(e)
        if problem is not None:
            stats.rejected += 1
            on_bad(index, loc, problem, obj)
            continue
        stats.turns += len(turns)
        stats.skipped_leading_assistant += skipped
        yield Record(index, loc, obj, turns, system, skipped)


def iter_records(
    path: str | Path,
    *,
    fmt: str | None = None,
    on_error: str = "fail",
    rejects: RejectsWriter | None = None,
    pairing: str = "role",
    stats: ReadStats | None = None,
    rejects_hint: str | Path | None = None,
) -> Iterator[Record]:
    """Stream the good records of a file (one record in memory at a time).

    The format is detected from the first good record unless ``fmt`` is given. ``on_error="fail"``
    raises ``RecordError`` on the first bad record (its hint names ``rejects_hint``, the rejects file a
    rerun with skip would write); ``"skip"`` sends it to ``rejects`` and goes on.
    Options and the path are checked now, before the first record is asked for.
    """
    _check_options(fmt, on_error, pairing)
    p, file_type = _open(path)
    stats = stats if stats is not None else ReadStats()

    def on_bad(index: int, location: str, problem: str, record: Any) -> None:
        if on_error == "fail":
            where = rejects.path if rejects is not None else rejects_hint or "<output>.rejects.jsonl"
            raise RecordError(p, location, problem, hint=SKIP_HINT.format(rejects=where))
        if rejects is not None:
            rejects.add(index, location, problem, record)

    return _records(p, file_type, fmt, pairing, stats, on_bad)


def count_records(path: str | Path) -> int:
    """Number of records (good and bad), cheaply where the file type allows, for progress bars."""
    p, file_type = _open(path)
    if file_type == "parquet":
        return pq.ParquetFile(p).metadata.num_rows
    if file_type == "dataset":
        return len(_load_dataset(p))
    if file_type == "jsonl":
        with open(p, "rb") as f:
            return sum(1 for line in f if line and not line.isspace())
    return sum(1 for _ in _iter_json(p))


# ---------------------------------------------------------------- writing


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
        os.replace(self.path, old)
        self.schema, self.writer = schema, pq.ParquetWriter(self.path, schema)
        for batch in pq.ParquetFile(old).iter_batches(batch_size=_BATCH_ROWS):
            self.writer.write_table(pa.Table.from_pylist(batch.to_pylist(), schema=schema))
        old.unlink()

    def close(self) -> None:
        self.flush()
        if self.writer is None:
            pq.write_table(pa.table({}), self.path)
        else:
            self.writer.close()
            self.writer = None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        for p in (self.path, self.path.with_name(self.path.name + ".old")):
            p.unlink(missing_ok=True)


def _replace(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing a file or a dataset folder already there."""
    if dst.is_dir() and not dst.is_symlink():
        aside = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(dst, aside)
        os.replace(src, dst)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(src, dst)


class RecordWriter:
    """Write raw records atomically: to a temporary file beside ``path``, renamed there on a clean close.

    JSON is an array written record by record; parquet goes in batches; a ``dataset`` folder is written
    through a temporary parquet file and ``datasets.Dataset.save_to_disk`` at close.
    """

    def __init__(self, path: str | Path, file_type: str | None = None) -> None:
        self.path = Path(path)
        self.file_type = file_type or file_type_of(self.path)
        if self.file_type not in FILE_TYPES:
            raise DeitaError(
                f"unknown file type {self.file_type!r} (expected one of {', '.join(FILE_TYPES)})"
            )
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        self._f: IO[str] | None = None
        self._sink: _ParquetSink | None = None
        if self.file_type in ("json", "jsonl"):
            self._f = open(self._tmp, "w", encoding="utf-8", errors="backslashreplace", newline="\n")  # noqa: SIM115
            if self.file_type == "json":
                self._f.write("[\n")
        else:
            self._sink = _ParquetSink(self._tmp)

    def write(self, raw: dict) -> None:
        if self._sink is not None:
            self._sink.add(raw)
        else:
            assert self._f is not None
            text = _ENCODER.encode(raw)
            if self.file_type == "jsonl":
                self._f.write(text + "\n")
            else:
                self._f.write(text if not self.count else ",\n" + text)
        self.count += 1

    def close(self) -> None:
        """Finish the file and move it into place (on failure, remove the temporary file and re-raise)."""
        try:
            if self._f is not None:
                if self.file_type == "json":
                    self._f.write("\n]\n" if self.count else "]\n")
                self._f.close()
                self._f = None
                _replace(self._tmp, self.path)
            elif self._sink is not None:
                self._sink.close()
                self._sink = None
                if self.file_type == "dataset":
                    self._save_dataset()
                else:
                    _replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def _save_dataset(self) -> None:
        import datasets

        tmp_dir = self._tmp.with_suffix(".dir")
        quiet = datasets.are_progress_bars_disabled()
        datasets.disable_progress_bars()
        try:
            table = pq.read_table(self._tmp)
            if not self.count:  # datasets can save no rows only with a field and one shard
                table = pa.table({"id": pa.array([], pa.string())})
            datasets.Dataset(table).save_to_disk(str(tmp_dir), num_shards=None if self.count else 1)
            _replace(tmp_dir, self.path)
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        finally:
            if not quiet:
                datasets.enable_progress_bars()
            self._tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop everything written so far; the output path is left as it was."""
        if self._f is not None:
            self._f.close()
            self._f = None
        if self._sink is not None:
            self._sink.abort()
            self._sink = None
        self._tmp.unlink(missing_ok=True)

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


def convert_file(
    src: str | Path,
    dst: str | Path,
    to_fmt: str,
    *,
    fmt: str | None = None,
    file_type: str | None = None,
    on_error: str = "fail",
    rejects: RejectsWriter | None = None,
    stats: ReadStats | None = None,
) -> int:
    """Convert every record of ``src`` to format ``to_fmt`` into ``dst`` (atomically); returns records written.

    A record that cannot be converted (e.g. a multi-turn chat to Alpaca) is a bad record like any other:
    named by file and location, and raised or sent to ``rejects`` according to ``on_error``.
    """
    if to_fmt not in FORMATS:
        raise DeitaError(f"unknown format {to_fmt!r} (expected one of {', '.join(FORMATS)})")
    stats = stats if stats is not None else ReadStats()
    with RecordWriter(dst, file_type) as w:
        for rec in iter_records(src, fmt=fmt, on_error=on_error, rejects=rejects, stats=stats):
            try:
                out = convert_record(rec.raw, stats.format or "", to_fmt)
            except ValueError as e:
                stats.rejected += 1
                if on_error == "fail":
                    where = rejects.path if rejects is not None else rejects_path_for(dst)
                    raise RecordError(src, rec.location, str(e), hint=SKIP_HINT.format(rejects=where)) from e
                if rejects is not None:
                    rejects.add(rec.index, rec.location, str(e), rec.raw)
                continue
            w.write(out)
    return w.count
