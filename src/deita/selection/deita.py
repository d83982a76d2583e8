"""The Repr Filter (DEITA.md §4): score-first, diversity-aware selection, blocked but exact.

Candidates are walked in stable descending score order; one is accepted when its cosine similarity to
every already accepted sample is <= threshold. Instead of one matrix-vector product per candidate, a
block of candidates is compared with the accepted set in one matmul, and the survivors are then settled
among themselves, in order, with the block's own Gram matrix. The result is the same as the one-at-a-time
definition (`one_at_a_time_filter` in tests/selection/reference.py) for any block size or device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from deita.errors import DeitaError, quote
from deita.runtime.devices import resolve_device
from deita.selection.quota import Quota, QuotaCounts, QuotaWalk
from deita.selection.tensors import check_embeddings, exact_float32, normalized_block

Progress = Callable[[int, int], None]
"""Called after each block with (candidates examined, samples accepted)."""

_MAX_SIM_BYTES = 256 * 2**20  # bound on one block x accepted similarity chunk


@dataclass
class SelectionResult:
    """Selected pool indices in selection order, how many candidates were examined, and the time taken.

    Provenance: every examined candidate that was skipped, the accepted sample most similar to it when it
    was examined (the one it duplicated) and that similarity, in walk order.
    """

    indices: np.ndarray  # int64, selected pool indices in selection order
    n_examined: int  # candidates looked at before stopping
    seconds: float  # time of the selection step itself
    skipped: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    duplicate_of: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    similarity: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float32))
    quota: QuotaCounts | None = None
    """What the token budget and the cap per group skipped (None: no such limit)."""


class _AcceptedSet:
    """Unit vectors of the accepted samples, kept in a preallocated device tensor."""

    def __init__(self, capacity: int, dim: int, device: torch.device, growable: bool) -> None:
        self.rows = torch.empty((capacity, dim), dtype=torch.float32, device=device)
        self.pool_idx = np.empty(capacity, dtype=np.int64)
        self.count = 0
        self.growable = growable

    def max_similarity(self, block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per block row, the largest cosine similarity to any accepted vector (-inf when none) and the
        position of that vector in the accepted set (-1 when none)."""
        best = torch.full((block.shape[0],), -torch.inf, device=block.device)
        where = torch.full((block.shape[0],), -1, dtype=torch.int64, device=block.device)
        step = max(1, _MAX_SIM_BYTES // (4 * block.shape[0]))
        for lo in range(0, self.count, step):
            sims = block @ self.rows[lo : min(lo + step, self.count)].T
            values, positions = sims.max(dim=1)
            better = values > best
            best = torch.where(better, values, best)
            where = torch.where(better, positions + lo, where)
        return best, where

    def append(self, vectors: torch.Tensor, pool_idx: np.ndarray) -> None:
        """Add rows (and the pool indices they came from), doubling the capacity first when growable and full."""
        needed = self.count + vectors.shape[0]
        if needed > self.rows.shape[0]:
            if not self.growable:
                raise AssertionError("accepted set overflow")  # unreachable: capacity is the target size
            grown = torch.empty((max(needed, 2 * self.rows.shape[0]), self.rows.shape[1]),
                                dtype=self.rows.dtype, device=self.rows.device)
            grown[: self.count] = self.rows[: self.count]
            self.rows = grown
        if needed > len(self.pool_idx):
            self.pool_idx = np.concatenate([self.pool_idx, np.empty(max(needed, len(self.pool_idx)), np.int64)])
        self.rows[self.count : needed] = vectors
        self.pool_idx[self.count : needed] = pool_idx
        self.count = needed


def deita_filter(
    scores: np.ndarray,
    embeddings: np.ndarray,
    size: int,
    threshold: float = 0.9,
    block_size: int = 1024,
    device: str = "cpu",
    progress: Progress | None = None,
    max_examined: int | None = None,
    selectable: np.ndarray | None = None,
    quota: Quota | None = None,
) -> SelectionResult:
    """Select up to `size` samples (-1: walk the whole pool) by score, skipping near-duplicates.

    `embeddings` may be a read-only float16/float32 memmap larger than RAM: only the rows examined are
    read, block by block. `max_examined` stops the walk after that many candidates (for what-if curves).
    `selectable` (a boolean mask over the pool) leaves the other records out of the walk altogether.
    `quota` (a token budget, a cap per group) skips a candidate that passed the diversity test but does not
    fit, and walks on; the walk also stops once no candidate left fits the budget.
    Errors are DeitaError naming the offending row.
    """
    start = time.perf_counter()
    order = _validated_order(scores, embeddings, size, threshold, block_size)
    if selectable is not None:
        selectable = np.asarray(selectable, dtype=bool)
        if selectable.shape != (len(order),):
            raise DeitaError(f"a selectable mask of shape {selectable.shape} for {len(order)} records")
        order = order[selectable[order]]
    if max_examined is not None:
        order = order[:max_examined]
    dev = resolve_device(device)
    target = len(order) if size == -1 else min(size, len(order))
    if quota is not None:
        quota.check_size(len(scores))
    limits = quota.walk(order) if quota is not None else None
    with exact_float32(), torch.no_grad():
        walk = _walk(order, embeddings, target, float(threshold), block_size, dev, growable=size == -1,
                     progress=progress, limits=limits)
    return SelectionResult(walk.indices, walk.n_examined, time.perf_counter() - start, walk.skipped,
                           walk.duplicate_of, walk.similarity, QuotaCounts.of(limits) if limits else None)


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
        raise DeitaError(f"size must be a positive number of samples or -1 (whole pool), got {quote(size)}")


@dataclass
class _Walk:
    indices: np.ndarray
    n_examined: int
    skipped: np.ndarray
    duplicate_of: np.ndarray
    similarity: np.ndarray


def _walk(order: np.ndarray, embeddings: np.ndarray, target: int, threshold: float, block_size: int,
          device: torch.device, growable: bool, progress: Progress | None, limits: QuotaWalk | None = None) -> _Walk:
    """Walk `order` block by block until `target` samples are accepted (or, under `limits`, until nothing left
    fits the budget); also note what blocked each skip."""
    capacity = min(target, 4096) if growable else target
    accepted = _AcceptedSet(capacity, embeddings.shape[1], device, growable)
    chosen: list[np.ndarray] = []
    skipped: list[np.ndarray] = []
    duplicate_of: list[np.ndarray] = []
    similarity: list[np.ndarray] = []
    lo = examined = 0
    while lo < len(order) and accepted.count < target and (limits is None or lo < limits.stop):
        pool_idx = order[lo : lo + _next_block_len(block_size, target - accepted.count, lo, accepted.count)]
        block = normalized_block(embeddings, pool_idx, device)
        best, where = accepted.max_similarity(block)
        survivors = (best <= threshold).nonzero()[:, 0].cpu().numpy()
        if limits is None:
            taken = survivors[_settle_block(block[survivors], threshold, target - accepted.count)]
            in_block = int(taken[-1]) + 1 if accepted.count + len(taken) >= target and len(taken) else len(pool_idx)
            blocked = np.setdiff1d(np.arange(in_block), taken)
        else:
            taken, in_block, over = _settle_under_limits(block, survivors, threshold, target - accepted.count,
                                                         pool_idx, lo, limits)
            blocked = np.setdiff1d(np.arange(in_block), np.concatenate([taken, over]))
        if len(blocked):
            sim, other = _blocking(block, best, where, accepted.pool_idx, pool_idx, taken, blocked)
            skipped.append(pool_idx[blocked])
            duplicate_of.append(other)
            similarity.append(sim)
        accepted.append(block[taken], pool_idx[taken])
        chosen.append(pool_idx[taken])
        examined = lo + in_block
        lo += len(pool_idx)
        if progress is not None:
            progress(examined, accepted.count)

    def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype=dtype)

    return _Walk(joined(chosen, np.int64), examined, joined(skipped, np.int64), joined(duplicate_of, np.int64),
                 joined(similarity, np.float32))


def _blocking(block: torch.Tensor, best: torch.Tensor, where: torch.Tensor, before: np.ndarray,
              pool_idx: np.ndarray, taken: np.ndarray, blocked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each blocked block position: the most similar sample accepted before it (in earlier blocks or
    earlier in this block), as (similarity, pool index)."""
    sim = best[blocked].cpu().numpy().astype(np.float32)
    positions = where[blocked].cpu().numpy()
    other = np.where(positions >= 0, before[np.maximum(positions, 0)], -1) if len(before) else np.full_like(positions, -1)
    if len(taken):
        rows = torch.as_tensor(blocked, device=block.device)
        sims = block[rows] @ block[torch.as_tensor(taken, device=block.device)].T
        earlier = torch.as_tensor(taken[None, :] < blocked[:, None], device=block.device)
        sims = torch.where(earlier, sims, torch.full_like(sims, -torch.inf))
        values, best_taken = sims.max(dim=1)
        values, best_taken = values.cpu().numpy(), best_taken.cpu().numpy()
        better = values > sim
        sim = np.where(better, values, sim).astype(np.float32)
        other = np.where(better, pool_idx[taken][best_taken], other)
    return sim, other.astype(np.int64)


def _next_block_len(block_size: int, needed: int, examined: int, accepted: int) -> int:
    """Candidates to read next: `block_size`, or fewer when the acceptance rate so far says fewer will do.

    This only avoids computing similarities past the stopping point; any length gives the same result.
    """
    rate = accepted / examined if examined else 1.0
    return int(min(block_size, max(needed, 16 + 1.25 * needed / max(rate, 1e-3))))


def _settle_under_limits(block: torch.Tensor, survivors: np.ndarray, threshold: float, limit: int,
                         pool_idx: np.ndarray, lo: int, limits: QuotaWalk) -> tuple[np.ndarray, int, np.ndarray]:
    """`_settle_block` under a budget and group caps: a survivor not blocked by an earlier one in the block
    is taken when `limits` admits it, else skipped without blocking anyone. Returns (positions taken, block
    positions examined, positions skipped by the limits)."""
    vectors = block[survivors]
    gram = (vectors @ vectors.T).cpu().numpy()
    blocked = np.zeros(len(gram), dtype=bool)
    taken: list[int] = []
    over: list[int] = []
    # `limits.stop` only moves earlier as tokens are taken; the walk stops at the first position at or past it
    last = -1  # the last survivor looked at
    for i, position in enumerate(survivors.tolist()):
        if lo + position >= limits.stop:
            break
        last = position
        if blocked[i]:
            continue
        if not limits.admit(int(pool_idx[position])):
            over.append(position)
            continue
        taken.append(position)
        if len(taken) == limit:
            return np.asarray(taken, dtype=np.int64), position + 1, np.asarray(over, dtype=np.int64)
        blocked |= gram[i] > threshold
    end = min(len(pool_idx), max(limits.stop - lo, last + 1))
    return np.asarray(taken, dtype=np.int64), end, np.asarray(over, dtype=np.int64)


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
