"""Plain implementations of the Repr Filter, for tests and benchmarks (`benchmarks/selection.py` loads this file).

`one_at_a_time_filter` is the definition of DEITA.md §4 written out directly; `deita_filter` must return
exactly its indices. `toolkit_style_filter` reproduces the flawed earlier approach (DEITA.md §7): every
candidate re-stacks all accepted embeddings into a fresh tensor before comparing.
"""

from __future__ import annotations

import numpy as np
import torch

from deita.errors import DeitaError


def _unit_row(embeddings: np.ndarray, row: int) -> np.ndarray:
    """Row `row` as a float32 unit vector."""
    x = np.asarray(embeddings[row], dtype=np.float32)
    norm = np.linalg.norm(x)
    if not np.isfinite(norm) or norm == 0:
        raise DeitaError(f"embedding row {row} has zero or non-finite norm")
    return x / norm


def one_at_a_time_filter(scores: np.ndarray, embeddings: np.ndarray, size: int,
                         threshold: float = 0.9) -> np.ndarray:
    """The Repr Filter one candidate at a time: float32, preallocated accepted matrix."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    target = len(order) if size == -1 else min(size, len(order))
    accepted = np.empty((target, embeddings.shape[1]), dtype=np.float32)
    chosen: list[int] = []
    for row in order:
        x = _unit_row(embeddings, int(row))
        if chosen and (accepted[: len(chosen)] @ x).max() > threshold:
            continue
        accepted[len(chosen)] = x
        chosen.append(int(row))
        if len(chosen) == target:
            break
    return np.asarray(chosen, dtype=np.int64)


def toolkit_style_filter(scores: np.ndarray, embeddings: np.ndarray, size: int, threshold: float = 0.9,
                         device: str = "cpu") -> np.ndarray:
    """The earlier toolkit's approach: re-stack every accepted embedding for each candidate (slow)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    target = len(order) if size == -1 else min(size, len(order))
    kept: list[np.ndarray] = []
    chosen: list[int] = []
    for row in order:
        x = _unit_row(embeddings, int(row))
        if kept:
            stacked = torch.tensor(np.stack(kept), device=device)
            if float((stacked @ torch.tensor(x, device=device)).max()) > threshold:
                continue
        kept.append(x)
        chosen.append(int(row))
        if len(chosen) == target:
            break
    return np.asarray(chosen, dtype=np.int64)


def one_at_a_time_limited(scores: np.ndarray, embeddings: np.ndarray | None, size: int, threshold: float | None,
                          costs: np.ndarray | None = None, budget: int | None = None,
                          groups: np.ndarray | None = None, cap: int | None = None,
                          order: np.ndarray | None = None) -> tuple[list[int], dict[str, int]]:
    """The walk under a token budget and a cap per group, one candidate at a time: a candidate that passes the
    diversity test (none when `threshold` is None) is taken when its group has room and it fits the budget;
    otherwise it is skipped and takes nothing. The walk stops at `size` records, or before a candidate when no
    candidate from there on fits the budget left. Returns (indices, counts of skips and tokens)."""
    if order is None:
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    target = len(order) if size == -1 else size
    chosen: list[int] = []
    per_group: dict[int, int] = {}
    tokens = over_budget = group_full = near = examined = 0
    for position, row in enumerate(order.tolist()):
        if budget is not None and min(int(costs[r]) for r in order[position:]) > budget - tokens:
            break
        examined += 1
        if threshold is not None and chosen:
            x = _unit_row(embeddings, row)
            if max(float(_unit_row(embeddings, c) @ x) for c in chosen) > threshold:
                near += 1
                continue
        if groups is not None and per_group.get(int(groups[row]), 0) >= cap:
            group_full += 1
            continue
        if budget is not None and tokens + int(costs[row]) > budget:
            over_budget += 1
            continue
        chosen.append(row)
        tokens += int(costs[row]) if costs is not None else 0
        if groups is not None:
            per_group[int(groups[row])] = per_group.get(int(groups[row]), 0) + 1
        if len(chosen) == target:
            break
    return chosen, {"tokens": tokens, "over_budget": over_budget, "group_full": group_full, "near": near,
                    "examined": examined}
