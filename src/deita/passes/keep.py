"""The first read of the pool: dedup hashes every good record once and decides which records stay.

Nothing is written but a shingle store that dedup's verification needs while deciding (a temporary file,
removed at the end). The keep mask is over the good records' ordinals (their order in the file); the
second read (`compute`) writes the side file that names each removed record, as it meets it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deita.data import atomic
from deita.data.io import ReadStats, iter_records
from deita.data.policy import RecordPolicy
from deita.data.records import Record
from deita.data.source import Fingerprint
from deita.dedup.config import DedupConfig
from deita.dedup.run import Decisions, hashes_and_decisions
from deita.runtime.options import RunOptions


@dataclass
class KeepMask:
    """Dedup's decision per good record (ordinal = position among the good records of the pool)."""

    indices: np.ndarray
    """int64: each good record's index in the file (bad records count), to check the second read."""
    decisions: Decisions
    records: int
    """Records in the file, good and bad."""
    rejected: int
    seconds: float
    fingerprint: Fingerprint | None = None
    """The pool's bytes as this first read found them: every later read must find them again."""

    @property
    def keep(self) -> np.ndarray:
        return self.decisions.duplicate_of < 0

    @property
    def exact(self) -> int:
        return int(((self.decisions.duplicate_of >= 0) & self.decisions.exact).sum())

    @property
    def near(self) -> int:
        return int(((self.decisions.duplicate_of >= 0) & ~self.decisions.exact).sum())


class KeptBigrams:
    """The offline signals' bigram counts of the records dedup keeps, from the first read: every record's
    (buckets, counts) is added and kept in a scratch file, and those of the removed records are taken out once
    dedup has decided (no other read of the pool)."""

    def __init__(self, scratch: Path) -> None:
        from deita.dedup.bigrams import BigramCounts

        self.counts, self.scratch = BigramCounts(), scratch
        self.file = open(scratch, "wb")  # noqa: SIM115
        self.offsets = [0]

    def add(self, record: Record, fmt: str) -> None:
        from deita.dedup.bigrams import record_buckets

        buckets, counts = record_buckets(record, fmt)
        self.counts.add(buckets, counts)
        self.file.write(np.stack([buckets.astype(np.int64), counts.astype(np.int64)]).T.tobytes())
        self.offsets.append(self.offsets[-1] + len(buckets))

    def save_kept(self, keep: np.ndarray, path: Path) -> Path:
        self.file.close()
        pairs = np.fromfile(self.scratch, dtype=np.int64).reshape(-1, 2)
        for ordinal in np.flatnonzero(~keep).tolist():
            rows = pairs[self.offsets[ordinal] : self.offsets[ordinal + 1]]
            self.counts.subtract(rows[:, 0], rows[:, 1])
        self.counts.save(path)
        return path

    def close(self) -> None:
        self.file.close()
        atomic.discard(self.scratch)


def _counted(records: Iterator[Record], stats: ReadStats, bigrams: KeptBigrams | None) -> Iterator[Record]:
    for record in records:
        if bigrams is not None:
            bigrams.add(record, stats.format or "")
        yield record


def hash_and_decide(pool: Path, config: DedupConfig, options: RunOptions, policy: RecordPolicy,
                    scratch: Path, bigrams: KeptBigrams | None = None) -> KeepMask:
    """Read the pool once (bad records go to `policy`: set aside, or the run stops), hash every
    good record and decide exact and near duplicates. The read keeps the pool's fingerprint, as the first of
    several reads: a pipe, which can be read only once, is refused before any work."""
    start = time.perf_counter()
    stats = ReadStats(reread=True)
    records = iter_records(pool, fmt=options.format, policy=policy, pairing=options.pairing, stats=stats)
    hashes, decisions = hashes_and_decisions(_counted(records, stats, bigrams), stats, config, options, pool,
                                             scratch)
    return KeepMask(hashes.indices, decisions, stats.records, stats.rejected, time.perf_counter() - start,
                    stats.fingerprint)
