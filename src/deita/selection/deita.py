"""The Repr Filter (DEITA.md §4): score-first, diversity-aware selection, blocked but exact.

Candidates are walked in stable descending score order; one is accepted when its cosine similarity to
every already accepted sample is <= threshold. Instead of one matrix-vector product per candidate, a
block of candidates is compared with the accepted set in one matmul, and the survivors are then settled
among themselves, in order, with the block's own Gram matrix. The result is the same as the
one-at-a-time definition (`reference.one_at_a_time_filter`) for any block size or device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deita.errors import DeitaError
from deita.runtime.devices import resolve_device
from deita.selection._torch import check_embeddings, exact_float32, normalized_block

Progress = Callable[[int, int], None]
"""Called after each block with (candidates examined, samples accepted)."""

_MAX_SIM_BYTES = 256 * 2**20  # bound on one block x accepted similarity chunk


@dataclass
class SelectionResult:
    """Selected pool indices in selection order, how many candidates were examined, and the time taken."""

    indices: np.ndarray  # int64, selected pool indices in selection order
    n_examined: int  # candidates looked at before stopping
    seconds: float  # time of the selection step itself


class _AcceptedSet:
    """Unit vectors of the accepted samples, kept in a preallocated device tensor."""

    def __init__(self, capacity: int, dim: int, device: torch.device, growable: bool) -> None:
        self.rows = torch.empty((capacity, dim), dtype=torch.float32, device=device)
        self.count = 0
        self.growable = growable

    def max_similarity(self, block: torch.Tensor) -> torch.Tensor:
        """Per block row, the largest cosine similarity to any accepted vector (-inf when none)."""
        best = torch.full((block.shape[0],), -torch.inf, device=block.device)
        step = max(1, _MAX_SIM_BYTES // (4 * block.shape[0]))
        for lo in range(0, self.count, step):
            sims = block @ self.rows[lo : min(lo + step, self.count)].T
            best = torch.maximum(best, sims.max(dim=1).values)
        return best

    def append(self, vectors: torch.Tensor) -> None:
        """Add rows, doubling the capacity first when it is growable and full."""
        needed = self.count + vectors.shape[0]
        if needed > self.rows.shape[0]:
            if not self.growable:
                raise AssertionError("accepted set overflow")  # unreachable: capacity is the target size
            grown = torch.empty((max(needed, 2 * self.rows.shape[0]), self.rows.shape[1]),
                                dtype=self.rows.dtype, device=self.rows.device)
            grown[: self.count] = self.rows[: self.count]
            self.rows = grown
        self.rows[self.count : needed] = vectors
        self.count = needed


def deita_filter(
    scores: np.ndarray,
    embeddings: np.ndarray,
    size: int,
    threshold: float = 0.9,
    block_size: int = 1024,
    device: str = "cpu",
    progress: Progress | None = None,
) -> SelectionResult:
    """Select up to `size` samples (-1: walk the whole pool) by score, skipping near-duplicates.

    `embeddings` may be a read-only float16/float32 memmap larger than RAM: only the rows examined are
    read, block by block. Errors are DeitaError naming the offending row.
    """
    start = time.perf_counter()
    order = _validated_order(scores, embeddings, size, threshold, block_size)
    dev = resolve_device(device)
    target = len(order) if size == -1 else min(size, len(order))
    with exact_float32(), torch.no_grad():
        indices, n_examined = _walk(order, embeddings, target, float(threshold), block_size, dev,
                                    growable=size == -1, progress=progress)
    return SelectionResult(indices=indices, n_examined=n_examined, seconds=time.perf_counter() - start)


def _validated_order(scores: np.ndarray, embeddings: np.ndarray, size: int, threshold: float,
                     block_size: int) -> np.ndarray:
    """Check the arguments and return the stable descending score order (ties keep input order)."""
    check_embeddings(embeddings)
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise DeitaError(f"scores must be 1-D, got shape {scores.shape}")
    if len(scores) != embeddings.shape[0]:
        raise DeitaError(f"scores for {len(scores)} records but embeddings have {embeddings.shape[0]} rows")
    if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
        raise DeitaError(f"scores must be real numbers, got dtype {scores.dtype}")
    scores = scores.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        raise DeitaError(f"score of row {bad[0]} is {scores[bad[0]]}; scores must be finite")
    validate_size(size)
    if not -1.0 <= threshold <= 1.0:
        raise DeitaError(f"threshold {threshold} is outside [-1, 1]; it is a cosine similarity")
    if block_size < 1:
        raise DeitaError(f"block_size must be >= 1, got {block_size}")
    return np.argsort(-scores, kind="stable")


def validate_size(size: int) -> None:
    """A selection size is a positive count, or -1 for 'all'."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size == 0 or size < -1:
        raise DeitaError(f"size must be a positive number of samples or -1 (whole pool), got {size!r}")


def _walk(order: np.ndarray, embeddings: np.ndarray, target: int, threshold: float, block_size: int,
          device: torch.device, growable: bool, progress: Progress | None) -> tuple[np.ndarray, int]:
    """Walk `order` block by block until `target` samples are accepted; return them and n_examined."""
    capacity = min(target, 4096) if growable else target
    accepted = _AcceptedSet(capacity, embeddings.shape[1], device, growable)
    chosen: list[np.ndarray] = []
    lo = examined = 0
    while lo < len(order) and accepted.count < target:
        pool_idx = order[lo : lo + _next_block_len(block_size, target - accepted.count, lo, accepted.count)]
        block = normalized_block(embeddings, pool_idx, device)
        survivors = _survivors(accepted, block, threshold)
        taken = survivors[_settle_block(block[survivors], threshold, target - accepted.count)]
        accepted.append(block[taken])
        chosen.append(pool_idx[taken])
        examined = lo + (int(taken[-1]) + 1 if accepted.count >= target else len(pool_idx))
        lo += len(pool_idx)
        if progress is not None:
            progress(examined, accepted.count)
    indices = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    return indices.astype(np.int64, copy=False), examined


def _next_block_len(block_size: int, needed: int, examined: int, accepted: int) -> int:
    """Candidates to read next: `block_size`, or fewer when the acceptance rate so far says fewer will do.

    This only avoids computing similarities past the stopping point; any length gives the same result.
    """
    rate = accepted / examined if examined else 1.0
    return int(min(block_size, max(needed, 16 + 1.25 * needed / max(rate, 1e-3))))


def _survivors(accepted: _AcceptedSet, block: torch.Tensor, threshold: float) -> np.ndarray:
    """Block positions not already blocked by a sample accepted in earlier blocks."""
    if accepted.count == 0:
        return np.arange(block.shape[0])
    keep = accepted.max_similarity(block) <= threshold
    return keep.nonzero()[:, 0].cpu().numpy()


def _settle_block(vectors: torch.Tensor, threshold: float, limit: int) -> np.ndarray:
    """Positions accepted by the sequential pass over one block's survivors, at most `limit` of them.

    The pass is inherently sequential, so it runs on host numpy over the small Gram matrix.
    """
    gram = (vectors @ vectors.T).cpu().numpy()
    blocked = np.zeros(len(gram), dtype=bool)
    taken: list[int] = []
    for i in range(len(gram)):
        if blocked[i]:
            continue
        taken.append(i)
        if len(taken) == limit:
            break
        blocked |= gram[i] > threshold
    return np.asarray(taken, dtype=np.int64)
