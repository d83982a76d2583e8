"""The first read of the pool: dedup hashes every good record once and decides which records stay.

Nothing is written but a shingle store that dedup's verification needs while deciding (a temporary file,
removed at the end). The keep mask is over the good records' ordinals (their order in the file); the
second read (`compute`) writes the side file that names each removed record, as it meets it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deita.data.io import ReadStats, input_size, iter_records
from deita.data.policy import RecordPolicy
from deita.dedup.config import DedupConfig
from deita.dedup.hashing import hash_pool
from deita.dedup.minhash import ShingleStore
from deita.dedup.run import HELPER_BYTES, Decisions, decide
from deita.runtime.options import RunOptions
from deita.runtime.progress import ProgressBar


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

    @property
    def keep(self) -> np.ndarray:
        return self.decisions.duplicate_of < 0

    @property
    def exact(self) -> int:
        return int(((self.decisions.duplicate_of >= 0) & self.decisions.exact).sum())

    @property
    def near(self) -> int:
        return int(((self.decisions.duplicate_of >= 0) & ~self.decisions.exact).sum())


def hash_and_decide(pool: Path, config: DedupConfig, options: RunOptions, policy: RecordPolicy,
                    scratch: Path) -> KeepMask:
    """Read the pool once (bad records go to `policy`: set aside, or the run stops), hash every
    good record and decide exact and near duplicates."""
    start = time.perf_counter()
    stats = ReadStats()
    total, unit = input_size(pool)
    helper = unit == "bytes" and total > HELPER_BYTES or unit == "rows" and total > 50_000
    store = ShingleStore(scratch) if config.near else None
    records = iter_records(pool, fmt=options.format, policy=policy, pairing=options.pairing, stats=stats)
    try:
        with ProgressBar("dedup: hashing", total, quiet=options.quiet, interval=options.progress_interval,
                         total_unit=unit) as bar:
            hashes = hash_pool(records, stats, config, bar, helper, store)
        if store is not None:
            store.finish()
        decisions = decide(hashes, config, store)
    finally:
        if store is not None:
            store.close()
    return KeepMask(hashes.indices, decisions, stats.records, stats.rejected, time.perf_counter() - start)
