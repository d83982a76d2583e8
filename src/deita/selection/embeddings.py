"""The embeddings a selection reads: a memory-mapped 2-D float `.npy`, checked against the pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deita.errors import DeitaError


def open_embeddings(path: str | Path, n_pool: int, data_path: Path) -> np.ndarray:
    """Memory-map a 2-D float `.npy` (never a pickle) and check it has one row per record."""
    path = Path(path)
    if path.suffix == ".pkl":
        raise DeitaError(f"{path}: pickled embeddings are not loaded (unsafe); re-run `deita embed` to get a .npy")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DeitaError(f"{path}: not a readable .npy array ({err})") from err
    if array.ndim != 2 or array.dtype.kind != "f":
        raise DeitaError(f"{path}: expected a 2-D float array, got shape {array.shape} and dtype {array.dtype}")
    if array.shape[0] != n_pool:
        raise DeitaError(f"{path} has {array.shape[0]:,} rows but {data_path} has {n_pool:,} records; "
                         "embed the same file you filter")
    return array
