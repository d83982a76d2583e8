"""``deita convert``'s work: every record of a file in another format and/or file type."""

from __future__ import annotations

from pathlib import Path

from deita.errors import DeitaError

from .formats import FORMATS, convert_record
from .policy import RecordPolicy, rejects_path_for
from .readers import ReadStats
from .reading import iter_records
from .writers import RecordWriter, UnwritableRecord


def convert_file(
    src: str | Path,
    dst: str | Path,
    to_fmt: str,
    *,
    fmt: str | None = None,
    file_type: str | None = None,
    policy: RecordPolicy | None = None,
    stats: ReadStats | None = None,
) -> int:
    """Convert every record of ``src`` to format ``to_fmt`` into ``dst`` (atomically); returns records written.

    A record that cannot be converted (e.g. a multi-turn chat to Alpaca) or that ``dst``'s file type
    cannot hold (``UnwritableRecord``, e.g. an integer beyond int64 for parquet) is a bad record like any
    other: named by file and location, and raised or set aside by ``policy`` (default: stop at the first).
    """
    if to_fmt not in FORMATS:
        raise DeitaError(f"unknown format {to_fmt!r} (expected one of {', '.join(FORMATS)})")
    stats = stats if stats is not None else ReadStats()
    policy = policy or RecordPolicy.failing(rejects_path_for(dst))
    with RecordWriter(dst, file_type) as w:
        for rec in iter_records(src, fmt=fmt, policy=policy, stats=stats):
            try:
                out = rec.raw if stats.format == to_fmt else convert_record(rec.raw, stats.format or "", to_fmt)
            except ValueError as e:
                stats.rejected += 1
                policy.reject(src, rec.index, rec.location, str(e), rec.raw, kind="convert")
                continue
            try:
                w.write(out)
            except UnwritableRecord as e:  # only this: a failed batch write must not pass as one bad record
                stats.rejected += 1
                policy.reject(src, rec.index, rec.location, f"cannot write to {w.file_type}: {e}", rec.raw,
                              kind="write")
    return w.count
