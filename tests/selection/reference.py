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
