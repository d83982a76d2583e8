"""MinHash signatures in one numpy array, and LSH banding that finds near-duplicates among them.

Each distinct word is hashed once (a cached blake2b); word n-gram (shingle) hashes are then built in
numpy for a whole batch of texts at a time, with no Python object per shingle. rensa turns the flat
shingle hashes into signatures in Rust (`RMinHash.digest_matrix_from_flat_token_hashes`); the signatures of a pool live in one
`(records, num_perm)` uint32 array. Banding sorts each band's hashes once (numpy), and every candidate
pair is verified on the full signature before it counts, so the bands are tuned for recall.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from deita.data import atomic

SEED = 42
"""The MinHash seed: fixed, so a rerun removes the same records."""

_POSITION = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                      0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9],
                     dtype=np.uint64)
"""Odd multipliers, one per word position in an n-gram (cycled, then rotated, for n > 8)."""


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit reaches every output bit."""
    x = values ^ (values >> np.uint64(30))
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _position_factor(k: int) -> np.uint64:
    base = int(_POSITION[k % len(_POSITION)])
    turn = (k // len(_POSITION)) % 64
    return np.uint64(((base << turn) | (base >> (64 - turn))) & 0xFFFFFFFFFFFFFFFF | 1 if turn else base)


class _WordHashes(dict):
    """word → a stable 64-bit hash (blake2b), computed once per distinct word and kept while the cache is
    small: Python's own `hash` of a string changes from process to process, and a rerun must remove the
    same records."""

    limit = 1 << 21

    def __missing__(self, word: str) -> int:
        if len(self) >= self.limit:
            self.clear()
        value = int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                               "little")
        self[word] = value
        return value


_WORD_HASHES = _WordHashes()


@dataclass(frozen=True)
class Words:
    """The words of a batch of texts: one hash per word (flat) and where each text's words start and end."""

    hashes: np.ndarray  # uint64, every word of every text in order
    offsets: np.ndarray  # int64, len(texts) + 1: text t's words are hashes[offsets[t]:offsets[t + 1]]


def word_hashes(texts: Sequence[str]) -> Words:
    """Hash every whitespace-separated word of every text (texts from `normalize.words_text`)."""
    flat: list[str] = []
    counts = np.zeros(len(texts) + 1, dtype=np.int64)
    for number, text in enumerate(texts, 1):
        split = text.split()
        counts[number] = len(split)
        flat += split
    hashes = np.fromiter(map(_WORD_HASHES.__getitem__, flat), dtype=np.uint64, count=len(flat))
    return Words(hashes, np.cumsum(counts))


@dataclass(frozen=True)
class Ngrams:
    """The word n-grams of a batch of texts."""

    hashes: np.ndarray  # uint64, every n-gram of every text in order
    offsets: np.ndarray  # int64, len(texts) + 1: text t's n-grams are hashes[offsets[t]:offsets[t + 1]]
    first_word: np.ndarray  # int64: index in Words.hashes of each n-gram's first word
    lengths: np.ndarray  # uint64: words in each n-gram (n, or fewer for a whole short text)


def ngram_hashes(words: Words, n: int, whole_below: int = 1) -> Ngrams:
    """Hashes of every run of `n` consecutive words inside each text.

    A text of fewer than `n` words (but at least `whole_below`) gives one n-gram: all its words, hashed
    as a run of that many words is (so it equals the same words found as a window elsewhere). Returns (hashes, offsets per text, the index in `words.hashes` of each n-gram's first word).
    """
    hashes, offsets = words.hashes, words.offsets
    counts = np.diff(offsets)
    total = len(hashes)
    padded = np.concatenate([hashes, np.zeros(n, np.uint64)])
    accumulated = np.zeros(total, np.uint64)
    short = (counts < n) & (counts >= whole_below) & (counts > 0)
    short_values = np.zeros(int(short.sum()), np.uint64)
    short_starts = offsets[:-1][short]
    short_counts = counts[short]
    for k in range(n):
        accumulated += padded[k:k + total] * _position_factor(k)
        done = short_counts == k + 1
        if done.any():
            short_values[done] = accumulated[short_starts[done]]
    windows = np.maximum(counts - n + 1, 0)
    window_counts = np.where(short, 1, windows)
    first = np.repeat(offsets[:-1], window_counts)
    new_offsets = np.concatenate([[0], np.cumsum(window_counts)]).astype(np.int64)
    within = np.arange(len(first)) - np.repeat(new_offsets[:-1], window_counts)
    first = first + within
    values = accumulated[first] if len(first) else np.zeros(0, np.uint64)
    lengths = np.full(len(values), n, dtype=np.uint64)
    if short.any():
        values[new_offsets[:-1][short]] = short_values
        lengths[new_offsets[:-1][short]] = short_counts.astype(np.uint64)
    return Ngrams(_mix(values ^ lengths), new_offsets, first, lengths)


def signatures(shingles: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int = SEED) -> np.ndarray:
    """(texts, num_perm) uint32 MinHash signatures of each text's shingle hashes (rensa's R-MinHash)."""
    from rensa import RMinHash

    rows = len(offsets) - 1
    if rows == 0:
        return np.zeros((0, num_perm), np.uint32)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(shingles, offsets.astype(np.uint64), num_perm, seed)
    return np.array(matrix.to_rows(), dtype=np.uint32).reshape(rows, num_perm)


class ShingleStore:
    """Every record's shingle hashes (their low 32 bits) in a temporary file beside the output, so that candidate
    pairs can be verified on their exact Jaccard without keeping any text: appended in the first pass, read
    back with plain reads for the few records that are candidates (a memory map would count every page the
    kernel reads ahead as resident memory). Two shingles of one pair share their low 32 bits by accident
    with a chance of about 10⁻⁵ per pair of 300-shingle records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = open(path, "w+b")  # noqa: SIM115 (closed by close)
        self._offsets = [np.zeros(1, np.int64)]
        self._end = 0
        self.offsets = np.zeros(1, np.int64)

    def add(self, shingles: np.ndarray, offsets: np.ndarray) -> None:
        """Append a batch: `shingles` (uint32) and its per-record `offsets` (len records + 1, from 0)."""
        assert self._file is not None
        try:
            self._file.write(np.ascontiguousarray(shingles, dtype=np.uint32).tobytes())
        except OSError as e:  # a full disk: name the output this scratch file serves
            raise atomic.write_error(e, atomic.target_of(self.path), written=self._end * 4) from e
        self._offsets.append(offsets[1:] + self._end)
        self._end += int(offsets[-1])

    def finish(self) -> None:
        """Done writing: the file is read from now on."""
        assert self._file is not None
        self._file.flush()
        self.offsets = np.concatenate(self._offsets)
        self._offsets = []

    def shingle_set(self, row: int) -> np.ndarray:
        assert self._file is not None
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        self._file.seek(4 * start)
        return np.unique(np.frombuffer(self._file.read(4 * (end - start)), dtype=np.uint32))

    def jaccard(self, row: int, others: np.ndarray) -> np.ndarray:
        """Exact Jaccard of record `row`'s shingle set with each of `others`'."""
        mine = self.shingle_set(row)
        values = np.empty(len(others), dtype=np.float32)
        for number, other in enumerate(others.tolist()):
            theirs = self.shingle_set(other)
            common = len(np.intersect1d(mine, theirs, assume_unique=True))
            values[number] = common / max(len(mine) + len(theirs) - common, 1)
        return values

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        atomic.discard(self.path)


def lsh_params(threshold: float, num_perm: int, false_positive_weight: float = 0.1) -> tuple[int, int]:
    """(bands, rows per band) for an estimated-Jaccard `threshold`.

    datasketch's rule, weighted towards recall: minimise w·P(candidate | s < t) + (1 − w)·P(miss | s ≥ t)
    integrated over s. Candidates are verified on the whole signature, so a false candidate costs a
    comparison, while a missed pair is a duplicate kept.
    """
    grid = np.linspace(0.0, 1.0, 2001)
    best, best_cost = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            candidate = 1.0 - (1.0 - grid**rows) ** bands
            low, high = grid <= threshold, grid >= threshold
            false_positive = np.trapezoid(candidate[low], grid[low]) if low.sum() > 1 else 0.0
            false_negative = np.trapezoid(1.0 - candidate[high], grid[high]) if high.sum() > 1 else 0.0
            cost = false_positive_weight * false_positive + (1 - false_positive_weight) * false_negative
            if cost < best_cost:
                best, best_cost = (bands, rows), cost
    return best


def band_hashes(signatures: np.ndarray, band: int, rows: int) -> np.ndarray:
    """One uint64 per record for band `band` (columns band·rows … band·rows + rows − 1)."""
    block = signatures[:, band * rows:(band + 1) * rows].astype(np.uint64)
    value = np.full(len(signatures), np.uint64(band), dtype=np.uint64)
    for column in range(rows):
        value = _mix(value ^ block[:, column])
    return value


ESTIMATE_MARGIN = 0.15
"""Candidates whose MinHash estimate is this far below the threshold are not verified: at 128 permutations the
estimate's spread is about 0.035, so a pair at the threshold falls there once in about 10⁵."""


@dataclass
class NearResult:
    """For each record (in the order of the signature rows): -1 if kept, else the row it duplicates."""

    duplicate_of: np.ndarray
    similarity: np.ndarray  # float32: exact Jaccard with the kept row, when verified, else the estimate
    estimate: np.ndarray  # float32: MinHash estimate of the Jaccard with the kept row (0 where kept)
    compared: int  # candidate pairs compared on their signatures
    verified: int  # of those, pairs compared on their exact shingle sets


def near_duplicates(signatures: np.ndarray, order: np.ndarray, threshold: float, bands: int, rows: int,
                    active: np.ndarray | None = None, store: ShingleStore | None = None) -> NearResult:
    """Greedy near-duplicate removal: walk rows in `order`; a row whose Jaccard with an already kept row
    (sharing a band bucket with it) is ≥ `threshold` is removed in favour of the most similar one; otherwise
    it is kept. Removed rows never remove others, so a chain A~B~C with A≁C keeps C.

    The Jaccard is the signatures' estimate or, with `store`, the exact Jaccard of the shingle sets for every
    candidate whose estimate comes within `ESTIMATE_MARGIN` of the threshold: then no record is removed
    for an estimate's error. `active` (bool per row) leaves rows out (exact duplicates already removed).
    """
    count = len(signatures)
    duplicate_of = np.full(count, -1, dtype=np.int64)
    similarity = np.zeros(count, dtype=np.float32)
    estimate = np.zeros(count, dtype=np.float32)
    rank = np.empty(count, dtype=np.int64)
    rank[order] = np.arange(count)
    members, groups = [], []
    group_count = 0
    rows_in = np.flatnonzero(active) if active is not None else np.arange(count)
    for band in range(bands):
        values = band_hashes(signatures, band, rows)[rows_in]  # no copy of the whole signature matrix
        sort = np.argsort(values, kind="stable")
        sorted_values = values[sort]
        boundary = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
        group_id = np.cumsum(boundary) - 1
        sizes = np.bincount(group_id)
        shared = sizes[group_id] > 1
        if shared.any():
            members.append(rows_in[sort[shared]])
            _, local = np.unique(group_id[shared], return_inverse=True)
            groups.append(local + group_count)
            group_count += int(local.max()) + 1
    if not members:
        return NearResult(duplicate_of, similarity, estimate, 0, 0)
    member = np.concatenate(members)
    group = np.concatenate(groups)
    # walk the records that share any bucket, in processing order; for each, its buckets
    by_record = np.lexsort((group, rank[member]))
    member, group = member[by_record], group[by_record]
    starts = np.flatnonzero(np.concatenate([[True], member[1:] != member[:-1]]))
    ends = np.append(starts[1:], len(member))
    first_kept = np.full(group_count, -1, dtype=np.int64)
    more_kept: dict[int, list[int]] = {}
    compared = verified = 0
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        row = int(member[start])
        its_groups = group[start:end]
        firsts = first_kept[its_groups]
        candidates = set(firsts[firsts >= 0].tolist())
        for g in its_groups[firsts >= 0].tolist():
            extra = more_kept.get(g)
            if extra:
                candidates.update(extra)
        if candidates:
            kept = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
            estimates = (signatures[kept] == signatures[row]).mean(axis=1).astype(np.float32)
            compared += len(kept)
            scores = estimates
            if store is not None:
                close = estimates >= threshold - ESTIMATE_MARGIN
                scores = np.zeros_like(estimates)
                if close.any():
                    scores[close] = store.jaccard(row, kept[close])
                    verified += int(close.sum())
            best = int(np.argmax(scores))
            if scores[best] >= threshold:
                duplicate_of[row] = kept[best]
                similarity[row], estimate[row] = scores[best], estimates[best]
                continue
        empty = firsts < 0
        first_kept[its_groups[empty]] = row
        for g in its_groups[~empty].tolist():
            more_kept.setdefault(g, []).append(row)
    return NearResult(duplicate_of, similarity, estimate, compared, verified)
