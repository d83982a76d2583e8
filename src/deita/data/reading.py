"""Reading records: ``iter_records`` streams the good records of any file type (format rules applied, bad
ones raised or sent to the rejects), ``records_at`` fetches chosen JSONL records by byte offset, and
``input_size`` gives a progress total without a counting pass."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from deita.errors import DeitaError

from .checks import SLOW, fast_loads
from .formats import FORMATS, PAIRINGS, detect_format, file_type_of, json_type, parse_turns
from .policy import RecordPolicy
from .read_counts import count_fetch, count_read
from .readers import READERS, ReadStats, load_dataset, parquet_rows
from .records import Record
from .source import Fingerprint, check_stat, compression_of, is_stream, open_source, recoded_head


def check_read_options(fmt: str | None, pairing: str) -> None:
    """Refuse an unknown format or pairing before any record is read."""
    if fmt is not None and fmt not in FORMATS:
        raise DeitaError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if pairing not in PAIRINGS:
        raise DeitaError(f"unknown pairing {pairing!r} (expected one of {', '.join(PAIRINGS)})")


def open_input(path: str | Path) -> tuple[Path, str]:
    """(path, file type) of an input that exists; a missing one is a one-line ``DeitaError``."""
    p = Path(path)
    if not p.exists():
        raise DeitaError(f"{p}: no such file or directory")
    return p, file_type_of(p)


def parse_records(
    path: Path, file_type: str, fmt: str | None, pairing: str, stats: ReadStats, policy: RecordPolicy
) -> Iterator[Record]:
    """Parsed good records; each bad one goes to ``policy`` (which stops the run or sets it aside)."""
    stats.file_type, stats.format = file_type, fmt
    count_read(path)
    for index, loc, obj, problem in READERS[file_type](path, stats):
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
            policy.reject(path, index, loc, problem, obj)
            continue
        stats.turns += len(turns)
        stats.skipped_leading_assistant += skipped
        yield Record(index, loc, obj, turns, system, skipped)


def iter_records(
    path: str | Path,
    *,
    fmt: str | None = None,
    policy: RecordPolicy | None = None,
    pairing: str = "role",
    stats: ReadStats | None = None,
) -> Iterator[Record]:
    """Stream the good records of a file (one record in memory at a time).

    The format is detected from the first good record unless ``fmt`` is given. Each bad record goes to
    ``policy``: it stops the run with a ``RecordError`` naming file and record, or is set aside into the
    rejects file. Without one, the first bad record stops the read (`RecordPolicy.failing`).
    Options and the path are checked now, before the first record is asked for.
    """
    check_read_options(fmt, pairing)
    p, file_type = open_input(path)
    stats = stats if stats is not None else ReadStats()
    return parse_records(p, file_type, fmt, pairing, stats, policy or RecordPolicy.failing())


def records_at(path: str | Path, spans: Iterable[tuple[int, int]],
               expect: Fingerprint | None = None) -> Iterator[dict]:
    """The records of a JSONL file at byte ``(start, end)`` spans, in the order given. The spans come from
    ``ReadStats.record_start`` and ``bytes_read`` of an earlier ``iter_records`` pass over the same,
    unchanged file, whose records were good; values are decoded as that pass decoded them. ``expect``
    (that pass's ``ReadStats.fingerprint``) refuses a file of another size or mtime. A compressed or
    UTF-16/32 file, whose offsets count decoded bytes, is streamed once instead of seeked."""
    p = Path(path)
    key = str(p.resolve())
    if compression_of(p) or is_stream(p):
        yield from _records_streamed(p, list(spans), expect, key)
        return
    with open(p, "rb") as f:
        check_stat(p, os.fstat(f.fileno()), expect)
        if recoded_head(f.read(4)):  # compressed or UTF-16/32 inside: offsets count decoded bytes
            f.close()
            yield from _records_streamed(p, list(spans), expect, key)
            return
        for start, end in spans:
            f.seek(start)
            count_fetch(key)
            yield _span_value(p, f.read(end - start), start, end)


def _span_value(p: Path, data: bytes, start: int, end: int) -> Any:
    value = fast_loads(data)
    if value is SLOW:
        try:
            value = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as e:
            raise DeitaError(f"{p}: bytes {start}-{end} are not the record read before ({e}); "
                             "did the file change?") from e
    return value


def _records_streamed(p: Path, spans: list[tuple[int, int]], expect: Fingerprint | None,
                      key: str) -> Iterator[dict]:
    """``records_at`` for a file read through a decoder: one pass keeps the wanted spans' bytes."""
    wanted = {start: end for start, end in spans}
    found: dict[int, Any] = {}
    with open_source(p, expect=expect) as f:
        offset = 0
        for line in f:
            end = wanted.get(offset)
            if end is None and offset == 0:
                end = wanted.get(3)  # a UTF-8 BOM before the first record
            if end is not None:
                start = offset if offset in wanted else 3
                found[start] = _span_value(p, line[start - offset : end - offset], start, end)
            offset += len(line)
    for start, end in spans:
        if start not in found:
            raise DeitaError(f"{p}: bytes {start}-{end} are not the record read before; did the file change?")
        count_fetch(key)
        yield found[start]


def input_size(path: str | Path) -> tuple[int, str]:
    """(total, unit) of an input for progress: its size in ``"bytes"`` for JSON/JSONL, its ``"rows"`` for
    parquet and datasets (from metadata, without reading the data). ``ReadStats.bytes_read`` counts in
    the same unit, so progress can show an ETA without a counting pass over the file."""
    p, file_type = open_input(path)
    if file_type == "parquet":
        return parquet_rows(p), "rows"
    if file_type == "dataset":
        return len(load_dataset(p)), "rows"  # memory-maps the arrow files; reads no rows
    if is_stream(p) or compression_of(p):
        return 0, "bytes"  # unknown: a pipe has no size, a compressed file's counts decoded bytes
    # the file's size, without opening it (a run may open its input only so often): for the rare file whose
    # compression or UTF-16/32 text only its bytes show, progress is approximate (the bar is capped)
    return p.stat().st_size, "bytes"
