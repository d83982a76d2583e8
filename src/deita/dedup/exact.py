"""Exact duplicates: records whose normalised text hashes to the same 128-bit key."""

from __future__ import annotations

import numpy as np


def keys_array(keys: list[bytes]) -> np.ndarray:
    """16-byte keys as an (n, 2) uint64 array: sortable with numpy, 16 bytes a record."""
    return np.frombuffer(b"".join(keys), dtype=np.uint64).reshape(-1, 2)


def exact_duplicates(keys: np.ndarray, order: np.ndarray) -> np.ndarray:
    """For each row of `keys` ((n, 2) uint64): -1 if it is kept, else the row kept in its place, which is the
    row of equal key that comes first in `order` (a permutation of the rows: file order, or longest first)."""
    count = len(keys)
    duplicate_of = np.full(count, -1, dtype=np.int64)
    if count < 2:
        return duplicate_of
    rank = np.empty(count, dtype=np.int64)
    rank[order] = np.arange(count)
    sort = np.lexsort((rank, keys[:, 1], keys[:, 0]))
    sorted_keys = keys[sort]
    new_group = np.concatenate([[True], np.any(sorted_keys[1:] != sorted_keys[:-1], axis=1)])
    group_first = sort[np.flatnonzero(new_group)]
    representative = group_first[np.cumsum(new_group) - 1]
    duplicates = ~new_group
    duplicate_of[sort[duplicates]] = representative[duplicates]
    return duplicate_of


def processing_order(lengths: np.ndarray, keep: str) -> np.ndarray:
    """The order in which records claim their place: file order (`first`), or most characters first with
    ties in file order (`longest`)."""
    if keep == "longest":
        return np.lexsort((np.arange(len(lengths)), -lengths.astype(np.int64)))
    return np.arange(len(lengths))
