"""The record I/O API in one import; each name lives in the module of its job:

- ``reading``: ``iter_records``, ``records_at``, ``input_size``
- ``readers``: one reader per file type, in the ``READERS`` table; ``ReadStats``
- ``checks``: what makes a value a bad record (``MAX_NESTING``, lone surrogates, big integers)
- ``policy``: ``RecordPolicy`` (the one bad-record policy: fail or skip, the rejects file, kinds, hint)
- ``writers``: ``RecordWriter``, ``write_records``, ``encode_record``, ``UnwritableRecord``
- ``convert``: ``convert_file``
- ``read_counts``: ``READS`` and ``FETCHED``, printed at exit with ``DEITA_COUNT_READS=1``
"""

from __future__ import annotations

from .checks import MAX_NESTING, PARQUET_MAX_SCHEMA_DEPTH
from .convert import convert_file
from .policy import KINDS, ON_ERROR, RecordPolicy, rejects_path_for
from .read_counts import COUNT_READS_ENV, FETCHED, READS
from .readers import READERS, ReadStats
from .reading import input_size, iter_records, records_at
from .writers import RecordWriter, UnwritableRecord, encode_record, write_records

__all__ = [
    "COUNT_READS_ENV",
    "FETCHED",
    "KINDS",
    "MAX_NESTING",
    "ON_ERROR",
    "PARQUET_MAX_SCHEMA_DEPTH",
    "READERS",
    "READS",
    "ReadStats",
    "RecordWriter",
    "RecordPolicy",
    "UnwritableRecord",
    "convert_file",
    "encode_record",
    "input_size",
    "iter_records",
    "records_at",
    "rejects_path_for",
    "write_records",
]
