"""Baseline selection strategies to compare the Repr Filter against (DEITA.md §6 ablations)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from deita.errors import DeitaError
from deita.runtime.devices import resolve_device
from deita.selection._torch import check_embeddings, exact_float32, normalized_block
from deita.selection.deita import validate_size

STRATEGIES: tuple[str, ...] = ("deita", "random", "score", "length", "kcenter", "ifd")

_CACHE_BYTES = 2 * 2**30  # keep normalized embeddings on the device when they fit in this


def _count(size: int, n_pool: int) -> int:
    """How many to select: `size` capped at the pool, or the whole pool for -1."""
    validate_size(size)
    return n_pool if size == -1 else min(size, n_pool)


def _top(values: np.ndarray, size: int, what: str) -> np.ndarray:
    """Indices of the largest values, ties in input order."""
    values = np.asarray(values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.number):
        raise DeitaError(f"{what} must be a 1-D numeric array, got shape {values.shape} ({values.dtype})")
    bad = np.flatnonzero(~np.isfinite(values.astype(np.float64)))
    if len(bad):
        raise DeitaError(f"{what} of row {bad[0]} is {values[bad[0]]}; must be finite")
    order = np.argsort(-values.astype(np.float64), kind="stable")
    return order[: _count(size, len(values))].astype(np.int64)


def random_select(n_pool: int, size: int, seed: int = 42) -> np.ndarray:
    """A seeded uniform sample without replacement."""
    if n_pool < 0:
        raise DeitaError(f"pool size must be >= 0, got {n_pool}")
    rng = np.random.default_rng(seed)
    return rng.permutation(n_pool)[: _count(size, n_pool)].astype(np.int64)


def score_select(scores: np.ndarray, size: int) -> np.ndarray:
    """Top-`size` by score (no diversity), ties in input order."""
    return _top(scores, size, "score")


def length_select(lengths: np.ndarray, size: int) -> np.ndarray:
    """Longest-first (response length computed by the caller), ties in input order."""
    return _top(lengths, size, "length")


def kcenter_select(embeddings: np.ndarray, size: int, seed: int = 42, device: str = "cpu",
                   block_size: int = 8192) -> np.ndarray:
    """K-center greedy on cosine distance (diversity only); the first center is a seeded random pick.

    Keeps one min-distance per row (O(N) memory); each new center is compared with the pool block by
    block, so a memmap larger than RAM works (read once per center unless it fits the device cache).
    """
    check_embeddings(embeddings)
    if block_size < 1:
        raise DeitaError(f"block_size must be >= 1, got {block_size}")
    n_pool = embeddings.shape[0]
    count = _count(size, n_pool)
    if count == 0:
        return np.empty(0, dtype=np.int64)
    dev = resolve_device(device)
    blocks = _PoolBlocks(embeddings, block_size, dev)
    centers = [int(np.random.default_rng(seed).integers(n_pool))]
    min_dist = torch.full((n_pool,), torch.inf, device=dev)
    with exact_float32(), torch.no_grad():
        while True:
            min_dist[centers[-1]] = -torch.inf  # never pick a center twice
            center = blocks.row(centers[-1])
            for lo, block in blocks:
                dist = 1.0 - block @ center
                seg = min_dist[lo : lo + block.shape[0]]
                torch.minimum(seg, dist, out=seg)
            if len(centers) == count:
                break
            centers.append(int(torch.argmax(min_dist)))
    return np.asarray(centers, dtype=np.int64)


class _PoolBlocks:
    """Normalized pool blocks in file order, cached on the device when the pool is small enough."""

    def __init__(self, embeddings: np.ndarray, block_size: int, device: torch.device) -> None:
        self.embeddings = embeddings
        self.block_size = block_size
        self.device = device
        fits = embeddings.shape[0] * embeddings.shape[1] * 4 <= _CACHE_BYTES
        self.cache: list[torch.Tensor] | None = [] if fits else None

    def _block(self, lo: int) -> torch.Tensor:
        rows = np.arange(lo, min(lo + self.block_size, self.embeddings.shape[0]))
        return normalized_block(self.embeddings, rows, self.device)

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (first row, normalized block) over the whole pool."""
        for k, lo in enumerate(range(0, self.embeddings.shape[0], self.block_size)):
            if self.cache is None:
                yield lo, self._block(lo)
                continue
            if k == len(self.cache):
                self.cache.append(self._block(lo))
            yield lo, self.cache[k]

    def row(self, index: int) -> torch.Tensor:
        """One normalized row."""
        return normalized_block(self.embeddings, np.asarray([index]), self.device)[0]
