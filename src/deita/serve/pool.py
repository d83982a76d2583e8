"""A record against the loaded pool: rank percentile, nearest neighbours, and the near-duplicate verdict.

Cosines are taken as the diversity filter takes them (float32 unit vectors). The verdict follows the
filter's walk: a record would be skipped when a *selected* record ranked at or above it (its score is at
least as high) is more similar than the threshold; the most similar such record is named.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCORE_TOLERANCE = 1e-6
"""Relative: scores this close are ties (a record's score moves by ~1e-7 with the batch it is computed in)."""
BLOCK_ROWS = 65536
"""Pool rows compared per matrix product: bounds the memory of a search over a memory-mapped pool."""


def unit_rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Neighbour:
    ordinal: int
    cosine: float


class PoolIndex:
    """The pool's record scores and embeddings, with what the selection kept."""

    def __init__(self, scores: np.ndarray, embeddings: np.ndarray, selected: np.ndarray | None,
                 threshold: float, strategy: str) -> None:
        if len(scores) != len(embeddings):
            raise ValueError(f"{len(scores)} pool scores but {len(embeddings)} embedding rows")
        self.scores = np.asarray(scores, dtype=np.float64)
        self.sorted_scores = np.sort(self.scores)
        self.embeddings = embeddings
        self.norms = np.concatenate([np.linalg.norm(np.asarray(embeddings[lo : lo + BLOCK_ROWS], dtype=np.float32),
                                                    axis=1) for lo in range(0, len(embeddings), BLOCK_ROWS)]
                                    or [np.zeros(0, dtype=np.float32)])
        self.norms = np.maximum(self.norms, 1e-12)
        self.selected = selected
        self.selected_units = unit_rows(embeddings[np.sort(selected)]) if selected is not None and len(selected) \
            else None
        self.selected_sorted = np.sort(selected) if selected is not None else None
        self.threshold = threshold
        self.strategy = strategy

    def __len__(self) -> int:
        return len(self.scores)

    def percentile(self, score: float) -> float:
        """Share of the pool (in %) scoring below `score`, ties counted half."""
        below = np.searchsorted(self.sorted_scores, score, side="left")
        at_or_below = np.searchsorted(self.sorted_scores, score, side="right")
        return float(100.0 * (below + 0.5 * (at_or_below - below)) / max(len(self), 1))

    def rank(self, score: float) -> int:
        """1 + the pool records scoring higher."""
        return int(len(self) - np.searchsorted(self.sorted_scores, score, side="right")) + 1

    def search(self, vectors: np.ndarray, k: int) -> list[list[Neighbour]]:
        """The `k` most similar pool records of each vector, most similar first (one pass over the pool)."""
        queries = unit_rows(vectors)
        k = min(k, len(self))
        best_sims = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        best_rows = np.zeros((len(queries), 0), dtype=np.int64)
        for lo in range(0, len(self), BLOCK_ROWS):
            block = np.asarray(self.embeddings[lo : lo + BLOCK_ROWS], dtype=np.float32)
            sims = (queries @ block.T) / self.norms[lo : lo + len(block)]
            sims = np.concatenate([best_sims, sims], axis=1)
            rows = np.concatenate([best_rows, np.broadcast_to(np.arange(lo, lo + len(block)),
                                                              (len(queries), len(block)))], axis=1)
            if sims.shape[1] > k:
                keep = np.argpartition(-sims, k - 1, axis=1)[:, :k]
                sims, rows = np.take_along_axis(sims, keep, axis=1), np.take_along_axis(rows, keep, axis=1)
            best_sims, best_rows = sims, rows
        order = np.argsort(-best_sims, axis=1, kind="stable")
        best_sims, best_rows = np.take_along_axis(best_sims, order, 1), np.take_along_axis(best_rows, order, 1)
        return [[Neighbour(int(r), float(s)) for r, s in zip(rows, sims, strict=True)]
                for rows, sims in zip(best_rows, best_sims, strict=True)]

    def near_duplicate(self, vector: np.ndarray, score: float) -> Neighbour | None:
        """The selected record ranked at or above `score` most similar to `vector`, when above the threshold
        (the filter would skip this record for it); None otherwise, or when the run used another strategy."""
        if self.strategy != "deita" or self.selected_units is None:
            return None
        sims = self.selected_units @ unit_rows(vector)
        below = self.scores[self.selected_sorted] < score - SCORE_TOLERANCE * max(1.0, abs(score))
        sims[below] = -np.inf
        best = int(np.argmax(sims))
        if not sims[best] > self.threshold:
            return None
        return Neighbour(int(self.selected_sorted[best]), float(sims[best]))
