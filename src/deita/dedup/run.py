"""`deita dedup` on a file: stream the records, decide, write the kept records untouched (in the output's
file type) and `OUT.duplicates.jsonl`, which names every removed record, the record kept in its place and
the similarity.

Dedup reads the input twice. The first pass (`hashing`) keeps, per record, a 16-byte exact key and, for
near dedup, one MinHash signature row (numpy arrays, no text) and its shingle hashes (in a temporary file);
the decisions need the whole pool; the second pass writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deita.data import atomic
from deita.data.io import ReadStats, RecordPolicy, RecordWriter, input_size, iter_records
from deita.data.paths import prepare_output
from deita.data.policy import given_or_own, rejected_line, rejects_path_for
from deita.data.records import Record
from deita.dedup.bigrams import BigramCounts, record_buckets
from deita.dedup.config import DedupConfig
from deita.dedup.exact import exact_duplicates, processing_order
from deita.dedup.hashing import PoolHashes, hash_pool
from deita.dedup.minhash import ShingleStore, lsh_params, near_duplicates
from deita.dedup.output import BATCH, KeptWriter, duplicates_path_for, read_pool, record_id_of
from deita.errors import DeitaError
from deita.runtime.options import RunOptions
from deita.runtime.progress import ProgressBar

HELPER_BYTES = 64 << 20
"""Inputs larger than this get a helper process for the signatures (below, starting it costs more)."""


@dataclass
class Decisions:
    """Per good record (file order): -1 if kept, else the ordinal of the record kept in its place."""

    duplicate_of: np.ndarray
    similarity: np.ndarray  # float32: Jaccard with the kept record (1.0 for exact duplicates)
    estimate: np.ndarray  # float32: its MinHash estimate (1.0 for exact duplicates)
    exact: np.ndarray  # bool: removed as an exact duplicate
    bands: int = 0
    rows: int = 0
    compared: int = 0
    verified: int = 0


def decide(pool: PoolHashes, config: DedupConfig, store: ShingleStore | None = None) -> Decisions:
    """Exact duplicates first, then near-duplicates among the records exact dedup kept. Every removed record
    names a record that stays."""
    count = len(pool.indices)
    order = processing_order(pool.lengths, config.keep)
    duplicate_of = np.full(count, -1, dtype=np.int64)
    similarity = np.zeros(count, dtype=np.float32)
    if config.exact:
        duplicate_of = exact_duplicates(pool.keys, order)
        similarity[duplicate_of >= 0] = 1.0
    exact = duplicate_of >= 0
    decisions = Decisions(duplicate_of, similarity, similarity.copy(), exact)
    if config.near and pool.signatures is not None and count:
        bands, rows = lsh_params(config.threshold, config.num_perm)
        near = near_duplicates(pool.signatures, order, config.threshold, bands, rows, active=~exact, store=store)
        removed = near.duplicate_of >= 0
        duplicate_of[removed] = near.duplicate_of[removed]
        similarity[removed] = near.similarity[removed]
        decisions.estimate[removed] = near.estimate[removed]
        decisions.bands, decisions.rows = bands, rows
        decisions.compared, decisions.verified = near.compared, near.verified
        # an exact group whose kept record went as a near-duplicate of another record: the whole group goes
        # in favour of that record, with its similarity
        moved = exact & (duplicate_of >= 0)
        moved[moved] = duplicate_of[duplicate_of[moved]] >= 0
        targets = duplicate_of[moved]
        duplicate_of[moved] = duplicate_of[targets]
        similarity[moved], decisions.estimate[moved] = similarity[targets], decisions.estimate[targets]
        exact[moved] = False
    return decisions


@dataclass
class DedupReport:
    records: int
    rejected: int
    exact: int
    near: int
    seconds: float
    output: Path
    duplicates: Path
    config: DedupConfig
    bands: int = 0
    rows: int = 0
    compared: int = 0
    verified: int = 0
    rejects: Path | None = None
    rejected_kinds: str = ""
    """The rejects counted by kind ("2 parse, 1 write")."""

    @property
    def kept(self) -> int:
        return self.records - self.exact - self.near

    def counts(self) -> dict[str, Any]:
        """The figures a manifest or report keeps."""
        return {"records": self.records, "rejected": self.rejected, "exact_duplicates": self.exact,
                "near_duplicates": self.near, "kept": self.kept, "threshold": self.config.threshold,
                "ngram": self.config.ngram, "num_perm": self.config.num_perm, "field": self.config.field,
                "keep": self.config.keep, "candidate_pairs": self.compared, "verified_pairs": self.verified,
                "output": str(self.output), "duplicates": str(self.duplicates)}

    def lines(self) -> list[str]:
        what = "every message" if self.config.field == "all" else "the first instruction"
        methods = []
        if self.config.exact:
            methods.append(f"{self.exact:,} exact")
        if self.config.near:
            methods.append(f"{self.near:,} near (Jaccard ≥ {self.config.threshold} of word {self.config.ngram}-gram "
                           f"shingles: MinHash {self.config.num_perm}, LSH {self.bands}×{self.rows}, "
                           f"{self.verified:,} of {self.compared:,} candidate pairs verified exactly)")
        summary = (f"dedup: kept {self.kept:,} of {self.records:,} records → {self.output}; removed "
                 f"{' and '.join(methods)} duplicates of {what}, keeping the {self.config.keep} of each group "
                 f"→ {self.duplicates} ({self.seconds:,.1f} s)")
        return [summary, *rejected_line(self.rejected, self.rejected_kinds, self.rejects)]


def dedup_file(input_path: str | Path, output_path: str | Path, config: DedupConfig,
               options: RunOptions | None = None, policy: RecordPolicy | None = None,
               bigrams_path: Path | None = None) -> DedupReport:
    """Write the records of `input_path` that are not duplicates of a kept one, untouched, to `output_path`,
    and every removed one to `OUT.duplicates.jsonl` (index, id, the index of the record kept in its place,
    estimated similarity, exact or near). `policy`: what happens to bad records (default: `options.on_error`,
    rejects beside the output). With `bigrams_path` (and near dedup of every message on), the kept records'
    word-bigram counts, read in the same passes, are saved there (the offline preset's fluency model)."""
    input_path, output_path = Path(input_path), Path(output_path)
    prepare_output("--output", output_path)  # the folder exists before the hashing, not after it
    options = options or RunOptions()
    with given_or_own(policy, options, rejects_path_for(output_path)) as policy:
        return _dedup(input_path, output_path, config, options, policy, bigrams_path)


def hashes_and_decisions(records: Iterator[Record], stats: ReadStats, config: DedupConfig, options: RunOptions,
                         source: Path, scratch: Path,
                         bigrams: BigramCounts | None = None) -> tuple[PoolHashes, Decisions]:
    """Hash every record `records` yields (one read of `source`, with a progress bar) and decide exact and
    near duplicates; the shingle store lives in `scratch` only while deciding."""
    total, unit = input_size(source)
    helper = unit == "bytes" and total > HELPER_BYTES or unit == "rows" and total > 50_000
    store = ShingleStore(scratch) if config.near else None
    try:
        with ProgressBar("dedup: hashing", total, quiet=options.quiet, interval=options.progress_interval,
                         total_unit=unit) as bar:
            pool = hash_pool(records, stats, config, bar, helper, store, bigrams=bigrams)
        if store is not None:
            store.finish()
        return pool, decide(pool, config, store)
    finally:
        if store is not None:
            store.close()


def _dedup(input_path: Path, output_path: Path, config: DedupConfig, options: RunOptions,
           policy: RecordPolicy, bigrams_path: Path | None = None) -> DedupReport:
    before = policy.snapshot()
    start = time.perf_counter()
    stats = ReadStats(reread=True)  # the second pass writes: the file must not change in between
    bigrams = BigramCounts() if bigrams_path is not None and config.near and config.field == "all" else None
    pool, decisions = hashes_and_decisions(read_pool(input_path, options, policy, stats), stats, config, options,
                                           input_path, atomic.temp_path(output_path, ".shingles.tmp"), bigrams)
    duplicates = duplicates_path_for(output_path)
    total, unit = input_size(input_path)
    with ProgressBar("dedup: writing", total, quiet=options.quiet, interval=options.progress_interval,
                     total_unit=unit) as bar:
        unwritable = _write_dedup(input_path, output_path, duplicates, pool, decisions, stats, options, policy,
                                  bar, bigrams)
    if bigrams is not None:
        bigrams.save(bigrams_path)
    removed = decisions.duplicate_of >= 0
    return DedupReport(len(pool.indices) - unwritable, stats.rejected + unwritable,
                       int((removed & decisions.exact).sum()), int((removed & ~decisions.exact).sum()),
                       time.perf_counter() - start, output_path, duplicates, config, decisions.bands,
                       decisions.rows, decisions.compared, decisions.verified,
                       policy.path, policy.by_kind(since=before))


def _write_dedup(input_path: Path, output_path: Path, duplicates_path: Path, pool: PoolHashes,
                 decisions: Decisions, stats: ReadStats, options: RunOptions, policy: RecordPolicy,
                 bar: ProgressBar, bigrams: BigramCounts | None = None) -> int:
    """Second pass: kept records to OUT, removed ones to OUT.duplicates.jsonl (and out of `bigrams`, which then
    count the kept records only); returns unwritable records."""
    again = stats.again()
    count = len(pool.indices)
    ordinal = 0
    kept = KeptWriter(input_path, output_path, policy)
    try:
        with RecordWriter(duplicates_path, "jsonl") as removed:
            for ordinal, record in enumerate(iter_records(input_path, fmt=stats.format, pairing=options.pairing,
                                                          stats=again, policy=RecordPolicy.skipping(None))):
                if ordinal >= count or record.index != pool.indices[ordinal]:
                    raise DeitaError(f"{input_path} changed while deduplicating (record {record.location} "
                                     "differs from the first read); run again")
                target = int(decisions.duplicate_of[ordinal])
                if target < 0:
                    kept.write(record)
                else:
                    if bigrams is not None:
                        bigrams.subtract(*record_buckets(record, again.format or ""))
                    row = {"index": record.index, "location": record.location}
                    record_id = record_id_of(record.raw)
                    if record_id is not None:
                        row["id"] = record_id
                    row.update({"kept_index": int(pool.indices[target]),
                                "kind": "exact" if decisions.exact[ordinal] else "near",
                                "similarity": round(float(decisions.similarity[ordinal]), 4),
                                "estimated_similarity": round(float(decisions.estimate[ordinal]), 4)})
                    removed.write(row)
                if (ordinal + 1) % BATCH == 0:
                    bar.advance(BATCH, again.bytes_read)
            if again.records - again.rejected != count:
                raise DeitaError(f"{input_path} changed while deduplicating ({count:,} good records at the first "
                                 f"read, {again.records - again.rejected:,} now); run again")
        kept.writer.close()
    except BaseException:
        kept.writer.abort()
        raise
    return kept.unwritable
