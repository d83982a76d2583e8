"""Baseline strategies: seeded determinism, hand-made cases, and k-center against brute force."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from deita.errors import DeitaError
from deita.selection import STRATEGIES, kcenter_select, length_select, random_select, score_select


def brute_force_kcenter(emb: np.ndarray, size: int, first: int) -> list[int]:
    """Greedy k-center with the full N x N cosine-distance matrix."""
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    dist = 1.0 - unit @ unit.T
    centers = [first]
    min_dist = dist[first].copy()
    min_dist[first] = -np.inf
    while len(centers) < size:
        nxt = int(np.argmax(min_dist))
        centers.append(nxt)
        min_dist = np.minimum(min_dist, dist[nxt])
        min_dist[centers] = -np.inf
    return centers


def test_strategy_names() -> None:
    assert tuple(STRATEGIES) == ("deita", "random", "score", "length", "kcenter", "ifd")


def test_random_is_seeded_and_without_replacement() -> None:
    a = random_select(100, 30, seed=1)
    np.testing.assert_array_equal(a, random_select(100, 30, seed=1))
    assert not np.array_equal(a, random_select(100, 30, seed=2))
    assert len(set(a.tolist())) == 30 and a.min() >= 0 and a.max() < 100
    assert a.dtype == np.int64
    assert sorted(random_select(5, -1).tolist()) == [0, 1, 2, 3, 4]
    assert len(random_select(5, 50)) == 5


def test_score_select_is_stable_top_k() -> None:
    np.testing.assert_array_equal(score_select(np.array([1.0, 3.0, 2.0, 3.0, 0.5]), 3), [1, 3, 2])
    np.testing.assert_array_equal(score_select(np.array([1.0, 2.0]), -1), [1, 0])


def test_length_select_is_longest_first_stable() -> None:
    np.testing.assert_array_equal(length_select(np.array([10, 50, 50, 7]), 2), [1, 2])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: score_select(np.array([1.0, np.nan]), 1), "row 1"),
        (lambda: length_select(np.array([[1, 2]]), 1), "1-D"),
        (lambda: random_select(10, 0), "size"),
        (lambda: score_select(np.ones(3), -3), "size"),
        (lambda: kcenter_select(np.ones(3), 1), "2-D"),
    ],
)
def test_baseline_errors(call: Callable[[], object], message: str) -> None:
    with pytest.raises(DeitaError, match=message):
        call()


def test_kcenter_hand_made() -> None:
    emb = np.array([[1, 0], [0.99, 0.1], [0, 1], [-1, 0], [-0.1, 0.99]], dtype=np.float32)
    got = kcenter_select(emb, 3, seed=0)
    first = int(np.random.default_rng(0).integers(5))
    assert got[0] == first
    assert got.tolist() == brute_force_kcenter(emb, 3, first)


@pytest.mark.parametrize("block_size", [1, 7, 1000])
def test_kcenter_matches_brute_force(block_size: int, device: str) -> None:
    emb = np.random.default_rng(3).standard_normal((120, 10)).astype(np.float32)
    got = kcenter_select(emb, 25, seed=5, device=device, block_size=block_size)
    expected = brute_force_kcenter(emb, 25, int(np.random.default_rng(5).integers(120)))
    assert got.tolist() == expected
    np.testing.assert_array_equal(got, kcenter_select(emb, 25, seed=5, device=device, block_size=block_size))


def test_kcenter_memmap_duplicates_and_whole_pool(tmp_path: Path) -> None:
    base = np.random.default_rng(4).standard_normal((10, 6))
    np.save(tmp_path / "e.npy", np.concatenate([base, base]).astype(np.float16))
    emb = np.load(tmp_path / "e.npy", mmap_mode="r")
    got = kcenter_select(emb, -1, block_size=4)
    assert sorted(got.tolist()) == list(range(20))  # every row once, duplicates last
    assert {int(i) % 10 for i in got[:10]} == set(range(10))
