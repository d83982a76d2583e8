"""Embedding rows as float32 tensors for the selection strategies: exact-float32 matmul settings, checks, reading."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from deita.errors import DeitaError


@contextmanager
def exact_float32() -> Iterator[None]:
    """Disable TF32 so GPU matmuls round like CPU float32 ones; restore the caller's settings after."""
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
        torch.backends.cudnn.allow_tf32 = cudnn_tf32


def check_embeddings(embeddings: np.ndarray) -> None:
    """Require a 2-D float array (memmaps included) with at least one column."""
    if not isinstance(embeddings, np.ndarray) or embeddings.ndim != 2:
        shape = getattr(embeddings, "shape", None)
        raise DeitaError(f"embeddings must be a 2-D array (records x dims), got shape {shape}")
    if embeddings.shape[1] == 0:
        raise DeitaError("embeddings have 0 dimensions")
    if not np.issubdtype(embeddings.dtype, np.floating):
        raise DeitaError(f"embeddings must be float16/float32/float64, got {embeddings.dtype}")


def read_rows(embeddings: np.ndarray, pool_idx: np.ndarray) -> np.ndarray:
    """Read rows `pool_idx` (any order) from a possibly memory-mapped array, in ascending file order."""
    sort = np.argsort(pool_idx, kind="stable")
    rows = np.empty((len(pool_idx), embeddings.shape[1]), dtype=embeddings.dtype)
    rows[sort] = embeddings[pool_idx[sort]]
    return rows


def normalized_block(embeddings: np.ndarray, pool_idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows `pool_idx` as unit float32 vectors on `device`; DeitaError naming the first bad row."""
    block = torch.from_numpy(read_rows(embeddings, pool_idx)).to(device).float()
    norms = torch.linalg.vector_norm(block, dim=1)
    bad = ~torch.isfinite(norms) | (norms == 0)  # a NaN/inf element makes the norm NaN/inf
    if bool(bad.any()):
        local = int(bad.nonzero()[0, 0])
        _raise_bad_row(block[local], int(pool_idx[local]))
    return block / norms[:, None]


def _raise_bad_row(row: torch.Tensor, index: int) -> None:
    if not bool(torch.isfinite(row).all()):
        raise DeitaError(f"embedding row {index} contains NaN or inf")
    if not bool(row.any()):
        raise DeitaError(f"embedding row {index} has zero norm; cosine similarity is undefined")
    raise DeitaError(f"embedding row {index} has a norm outside the float32 range")
