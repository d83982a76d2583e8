"""``deita convert``'s work: every record of a file in another format and/or file type."""

from __future__ import annotations

from pathlib import Path

from deita.errors import DeitaError, RecordError

from .formats import FORMATS, convert_record
from .readers import ReadStats
from .reading import iter_records
from .rejects import SKIP_HINT, RejectsWriter, rejects_path_for
from .writers import RecordWriter, UnwritableRecord


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

    A record that cannot be converted (e.g. a multi-turn chat to Alpaca) or that ``dst``'s file type
    cannot hold (``UnwritableRecord``, e.g. an integer beyond int64 for parquet) is a bad record like any
    other: named by file and location, and raised or sent to ``rejects`` according to ``on_error``.
    """
    if to_fmt not in FORMATS:
        raise DeitaError(f"unknown format {to_fmt!r} (expected one of {', '.join(FORMATS)})")
    stats = stats if stats is not None else ReadStats()
    with RecordWriter(dst, file_type) as w:
        for rec in iter_records(src, fmt=fmt, on_error=on_error, rejects=rejects, stats=stats):
            cause: Exception
            try:
                out = rec.raw if stats.format == to_fmt else convert_record(rec.raw, stats.format or "", to_fmt)
            except ValueError as e:
                cause, problem = e, str(e)
            else:
                try:
                    w.write(out)
                    continue
                except (
                    UnwritableRecord
                ) as e:  # only this: a failed batch write must not pass as one bad record
                    cause, problem = e, f"cannot write to {w.file_type}: {e}"
            stats.rejected += 1
            if on_error == "fail":
                where = rejects.path if rejects is not None else rejects_path_for(dst)
                raise RecordError(src, rec.location, problem, hint=SKIP_HINT.format(rejects=where)) from cause
            if rejects is not None:
                rejects.add(rec.index, rec.location, problem, rec.raw)
    return w.count
