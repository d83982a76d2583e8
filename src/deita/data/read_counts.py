"""Read counting for benchmarks and checks: with ``DEITA_COUNT_READS=1`` the process prints, at exit, how
many times each input file was opened for reading records and how many records were fetched by offset."""

from __future__ import annotations

import atexit
import os
import sys
from collections import Counter
from pathlib import Path

READS: Counter[str] = Counter()
"""How many times each input file (resolved path) was opened for reading records, in this process."""
COUNT_READS_ENV = "DEITA_COUNT_READS"

FETCHED: Counter[str] = Counter()
"""Records fetched by ``records_at`` per file (resolved path): reads of a few records, not of the file."""


def count_read(path: Path) -> None:
    """Count one pass over ``path``'s records."""
    READS[str(path.resolve())] += 1


def count_fetch(key: str) -> None:
    """Count one record of the file ``key`` (a resolved path) fetched by offset."""
    FETCHED[key] += 1


def _report_reads() -> None:
    for path, count in READS.items():
        print(f"deita reads: {count} {path}", file=sys.stderr)
    for path, count in FETCHED.items():
        print(f"deita fetched: {count} records of {path}", file=sys.stderr)


if os.environ.get(COUNT_READS_ENV) == "1":
    atexit.register(_report_reads)
