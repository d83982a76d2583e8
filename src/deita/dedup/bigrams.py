"""A word-bigram count table of the pool, for the offline preset's fluency signal.

Fitted where the pool is already read: dedup's hashing pass counts the bigrams of the same word hashes it
shingles (`bigram_buckets`), so no extra pass. The table is hashed into `BUCKETS` counters (16 MiB): a bigram's
count is exact up to collisions, which only ever raise it. A response whose word pairs the rest of the pool
never uses (words out of order, pasted noise) has few bigrams seen twice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from deita.dedup.minhash import Words, word_hashes
from deita.dedup.normalize import normalize, words_text
from deita.errors import DeitaError

BITS = 22
BUCKETS = 1 << BITS
_K1, _K2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)


def bigram_buckets(words: Words) -> np.ndarray:
    """The bucket of every bigram inside each text (pairs never span two texts), int64."""
    hashes, offsets = words.hashes, words.offsets
    if len(hashes) < 2:
        return np.zeros(0, dtype=np.int64)
    inside = np.ones(len(hashes) - 1, dtype=bool)
    ends = offsets[1:-1] - 1  # a text's last word does not pair with the next text's first
    inside[ends[(ends >= 0) & (ends < len(inside))]] = False
    with np.errstate(over="ignore"):
        mixed = (hashes[:-1] * _K1 ^ hashes[1:]) * _K2
    return (mixed[inside] >> np.uint64(64 - BITS)).astype(np.int64)


def record_text(record: Any, fmt: str) -> str:
    """The words of every message of a record, as dedup's near pass shingles them (`field: all`)."""
    from deita.dedup.normalize import compared_texts, field_messages

    return compared_texts(field_messages(record, fmt, "all"))[1]


def record_buckets(record: Any, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """(buckets, counts) of one record's bigrams, as dedup's pass counted them."""
    return count_buckets(bigram_buckets(word_hashes([record_text(record, fmt)])))


def count_buckets(buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct buckets, counts): small to send from a helper process, added with `add_counts`."""
    return np.unique(buckets, return_counts=True)


class BigramCounts:
    """The pool's bigram counts (hashed)."""

    def __init__(self, table: np.ndarray | None = None) -> None:
        self.table = np.zeros(BUCKETS, dtype=np.uint32) if table is None else table

    def add(self, buckets: np.ndarray, counts: np.ndarray) -> None:
        np.add.at(self.table, buckets, counts.astype(np.uint32))

    def subtract(self, buckets: np.ndarray, counts: np.ndarray) -> None:
        """Take a removed record's bigrams out again (dedup and decontamination count what they keep)."""
        np.subtract.at(self.table, buckets, np.minimum(counts.astype(np.uint32), self.table[buckets]))

    def save(self, path: Path) -> None:
        """Write the table atomically: a registered temporary file (removed on an error or interrupt), then
        renamed into place."""
        from deita.data import atomic

        temporary = atomic.temp_path(path, ".tmp.npy")
        try:
            np.save(temporary, self.table)
        except BaseException:
            atomic.discard(temporary)
            raise
        atomic.commit(temporary, path)

    @classmethod
    def from_file(cls, path: str | Path, options: Any) -> BigramCounts:
        """Counted from every message of a file's good records (bad ones are the stage's to report): the same
        counts as dedup's pass gives for the records it keeps."""
        from deita.data.io import ReadStats, RecordPolicy, iter_records

        counts, stats, batch = cls(), ReadStats(), []
        skip = RecordPolicy.skipping(None)  # counted only: the stage itself meets and reports bad records
        for record in iter_records(path, fmt=options.format, policy=skip, pairing=options.pairing, stats=stats):
            batch.append(record_text(record, stats.format or ""))
            if len(batch) >= 4096:
                counts.add(*count_buckets(bigram_buckets(word_hashes(batch))))
                batch = []
        counts.add(*count_buckets(bigram_buckets(word_hashes(batch))))
        return counts

    @classmethod
    def load(cls, path: str | Path, writable: bool = False) -> BigramCounts:
        try:
            table = np.load(path) if writable else np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise DeitaError(f"{path}: not a bigram count table ({err}); rerun without the cache") from None
        if table.shape != (BUCKETS,):
            raise DeitaError(f"{path}: a bigram count table of {table.shape} counters, expected ({BUCKETS},)")
        return cls(np.asarray(table))

    def seen_share(self, texts: list[str]) -> np.ndarray:
        """Per text, the share of its bigrams that the pool holds at least twice (so somewhere else too);
        NaN for a text of fewer than two words."""
        return self.seen_share_of([words_text(normalize(t)) for t in texts])

    def seen_share_of(self, spaced: list[str]) -> np.ndarray:
        """`seen_share` of texts already normalised and with punctuation spaced out (`normalize.words_text`)."""
        words = word_hashes(spaced)
        buckets = bigram_buckets(words)
        seen = self.table[buckets] >= 2
        pairs = np.maximum(np.diff(words.offsets) - 1, 0)
        ends = np.cumsum(pairs)
        running = np.concatenate([[0], np.cumsum(seen, dtype=np.int64)])
        sums = running[ends] - running[ends - pairs]
        return np.where(pairs > 0, sums / np.maximum(pairs, 1), np.nan)


def counts_key(path: Path) -> str:
    """A key of a count table's content, for the signal stage's cache fingerprint."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
