"""Dedup's first pass: per record an exact key, its length and (for near dedup) a MinHash signature and its
shingle hashes; numpy arrays, no text. With a helper process, hashing overlaps reading."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from deita.data.io import ReadStats
from deita.data.records import Record
from deita.dedup.bigrams import BigramCounts, bigram_buckets, count_buckets
from deita.dedup.config import DedupConfig
from deita.dedup.exact import keys_array
from deita.dedup.minhash import ShingleStore, ngram_hashes, signatures, word_hashes
from deita.dedup.normalize import compared_texts, field_messages, text_key
from deita.dedup.output import BATCH, batches
from deita.runtime.progress import ProgressBar


@dataclass
class PoolHashes:
    """What the first pass keeps per good record, in file order: no text, a few hundred bytes a record."""

    indices: np.ndarray  # int64: the record's index in the file (rejected records count)
    keys: np.ndarray  # (n, 2) uint64: 128-bit hash of the normalised text
    lengths: np.ndarray  # int64: characters of the compared text (for keep=longest)
    signatures: np.ndarray | None  # (n, num_perm) uint32, for near dedup


Hashed = tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]


def hash_batch(shingle_texts: list[str], ngram: int, num_perm: int, bigrams: bool = False) -> Hashed:
    """(MinHash signatures (texts, num_perm) uint32, shingle hashes' low 32 bits, per-text offsets, and with
    `bigrams` the texts' word-bigram buckets and counts) of texts prepared by `normalize.compared_texts`."""
    words = word_hashes(shingle_texts)
    shingles = ngram_hashes(words, ngram)
    return (signatures(shingles.hashes, shingles.offsets, num_perm), shingles.hashes.astype(np.uint32),
            shingles.offsets, count_buckets(bigram_buckets(words)) if bigrams else None)


def hash_pool(records: Iterator[Record], stats: ReadStats, config: DedupConfig,
              progress: ProgressBar | None = None, helper: bool = False,
              store: ShingleStore | None = None, batch_size: int = BATCH,
              bigrams: BigramCounts | None = None) -> PoolHashes:
    """First pass: exact keys, lengths and (for near dedup) signatures of every record, its shingles into
    `store` and (for near dedup) its word bigrams into `bigrams` (the offline preset's fluency model).

    With `helper`, a second process hashes one batch while this one reads and normalises the next (two
    cores: the two halves of the work cost about the same). The result does not depend on it: every hash is
    a fixed function of the text.
    """
    indices, keys, lengths, sigs = [], [], [], []
    pending: deque[tuple[Future, list[str]]] = deque()
    executor = ProcessPoolExecutor(1, mp_context=get_context("spawn")) if helper and config.near and \
        _can_spawn() else None

    def done(result: Hashed) -> None:
        sigs.append(result[0])
        if store is not None:
            store.add(result[1], result[2])
        if bigrams is not None and result[3] is not None:
            bigrams.add(*result[3])

    try:
        for batch in batches(records, batch_size):
            texts = []
            batch_keys = []
            for record in batch:
                messages = field_messages(record, stats.format or "", config.field)
                exact, shingle = compared_texts(messages)
                batch_keys.append(text_key(exact))
                texts.append(shingle)
                lengths.append(sum(len(text) for _, text in messages))
                indices.append(record.index)
            keys.append(keys_array(batch_keys))
            if executor is not None:
                pending.append((executor.submit(hash_batch, texts, config.ngram, config.num_perm,
                                                       bigrams is not None), texts))
                while len(pending) > 2:
                    done(_result(*pending.popleft(), config, bigrams is not None))
            elif config.near:
                done(hash_batch(texts, config.ngram, config.num_perm, bigrams is not None))
            if progress is not None:
                progress.advance(len(batch), stats.bytes_read)
        while pending:
            done(_result(*pending.popleft(), config, bigrams is not None))
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return PoolHashes(np.asarray(indices, dtype=np.int64), _stack(keys, 2, np.uint64),
                      np.asarray(lengths, dtype=np.int64),
                      _stack(sigs, config.num_perm, np.uint32) if config.near else None)


def _stack(chunks: list[np.ndarray], width: int, dtype: type) -> np.ndarray:
    """The chunks as one array, each chunk freed as soon as it is copied: peak memory is the result and one
    chunk, not twice the result (as np.concatenate would need)."""
    out = np.empty((sum(len(chunk) for chunk in chunks), width), dtype=dtype)
    position = 0
    chunks.reverse()
    while chunks:
        chunk = chunks.pop()
        out[position:position + len(chunk)] = chunk
        position += len(chunk)
    return out


def _can_spawn() -> bool:
    """A spawned process re-imports the main script: impossible for a script read from stdin."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or Path(main_file).exists()


def _result(future: Future, texts: list[str], config: DedupConfig, bigrams: bool) -> Hashed:
    """The helper's result, or the same computed here if the helper died (killed, out of memory)."""
    try:
        return future.result()
    except BrokenProcessPool:
        return hash_batch(texts, config.ngram, config.num_perm, bigrams)
