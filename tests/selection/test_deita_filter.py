"""The blocked Repr Filter returns exactly the one-at-a-time definition's indices, and errors name rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from reference import one_at_a_time_filter, toolkit_style_filter

from deita.errors import DeitaError
from deita.selection import deita_filter


def clustered_pool(n: int, dim: int, seed: int, n_clusters: int = 8, spread: float = 0.15) -> np.ndarray:
    """Vectors around a few centers: many pairs above usual thresholds, so many rejections."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, dim))
    labels = rng.integers(n_clusters, size=n)
    noise = rng.standard_normal((n, dim)) * spread * rng.random((n, 1)) * 3
    return (centers[labels] + noise).astype(np.float32)


def assert_same(scores: np.ndarray, emb: np.ndarray, size: int, threshold: float, device: str = "cpu",
                block_sizes: tuple[int, ...] = (1, 7, 64, 1024)) -> np.ndarray:
    """Every block size gives the reference's indices; returns them."""
    expected = one_at_a_time_filter(scores, emb, size, threshold)
    for block_size in (*block_sizes, len(scores)):
        got = deita_filter(scores, emb, size, threshold, block_size=block_size, device=device)
        np.testing.assert_array_equal(got.indices, expected, err_msg=f"block_size={block_size}")
        assert got.indices.dtype == np.int64
    return expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_pools_match_reference(seed: int, device: str) -> None:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((600, 32)).astype(np.float32)
    expected = assert_same(rng.random(600), emb, 120, 0.5, device)
    assert len(expected) == 120


@pytest.mark.parametrize("seed", [3, 4])
def test_clustered_near_duplicates_match_reference(seed: int, device: str) -> None:
    emb = clustered_pool(800, 32, seed)
    scores = np.random.default_rng(seed).random(800)
    expected = assert_same(scores, emb, -1, 0.9, device)
    assert 8 <= len(expected) < 400  # most of the pool is rejected


def test_exact_duplicates_are_rejected(device: str) -> None:
    rng = np.random.default_rng(5)
    base = rng.standard_normal((50, 16)).astype(np.float32)
    emb = np.concatenate([base, base, base * 3.0])  # scaled copies are duplicates under cosine
    scores = rng.random(150)
    expected = assert_same(scores, emb, -1, 0.99, device)
    assert sorted(np.asarray(expected) % 50) == list(range(50))


def test_tied_scores_keep_input_order(device: str) -> None:
    rng = np.random.default_rng(6)
    emb = rng.standard_normal((300, 8)).astype(np.float32)
    scores = rng.integers(0, 4, size=300).astype(np.float64)
    expected = assert_same(scores, emb, 60, 0.6, device)
    got_scores = scores[expected]
    for level in np.unique(got_scores):
        picked = expected[got_scores == level]
        assert np.all(np.diff(picked) > 0)


def test_all_equal_scores_with_orthogonal_rows_select_in_input_order(device: str) -> None:
    emb = np.eye(5, dtype=np.float32)
    result = deita_filter(np.zeros(5), emb, 3, 0.0, block_size=2, device=device)
    np.testing.assert_array_equal(result.indices, [0, 1, 2])
    assert result.n_examined == 3


@pytest.mark.parametrize(("threshold", "expected"), [(0.5, [0, 1]), (0.4999, [0])])
def test_similarity_exactly_at_threshold_is_accepted(threshold: float, expected: list[int], device: str) -> None:
    emb = np.array([[1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]], dtype=np.float32)  # dot is exactly 0.5
    scores = np.array([2.0, 1.0])
    for block_size in (1, 2):
        got = deita_filter(scores, emb, -1, threshold, block_size=block_size, device=device)
        np.testing.assert_array_equal(got.indices, expected)
    np.testing.assert_array_equal(one_at_a_time_filter(scores, emb, -1, threshold), expected)


def test_at_threshold_across_blocks_and_within_block(device: str) -> None:
    half = [0.5, 0.5, 0.5, 0.5]
    emb = np.array([[1, 0, 0, 0], half, [0, 1, 0, 0], [0.5, 0.5, -0.5, -0.5], half], dtype=np.float32)
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    # the last is an exact duplicate of row 1 (similarity 1 > 0.5); the others sit exactly at 0.5 or 0
    assert_same(scores, emb, -1, 0.5, device, block_sizes=(1, 2, 3))
    np.testing.assert_array_equal(one_at_a_time_filter(scores, emb, -1, 0.5), [0, 1, 2, 3])


def test_size_larger_than_acceptable_returns_all_acceptable(device: str) -> None:
    emb = clustered_pool(300, 16, 7, n_clusters=4, spread=0.05)
    scores = np.random.default_rng(7).random(300)
    everything = assert_same(scores, emb, -1, 0.95, device)
    result = deita_filter(scores, emb, 10_000, 0.95, block_size=64, device=device)
    np.testing.assert_array_equal(result.indices, everything)
    assert result.n_examined == 300


def test_stops_once_size_is_reached(device: str) -> None:
    rng = np.random.default_rng(8)
    emb = rng.standard_normal((1000, 64)).astype(np.float32)
    result = deita_filter(rng.random(1000), emb, 10, 0.9, block_size=256, device=device)
    assert len(result.indices) == 10
    assert result.n_examined == 10  # random 64-d vectors are far below 0.9
    assert result.seconds >= 0


def test_float16_memmap_matches_reference(tmp_path: Path, device: str) -> None:
    path = tmp_path / "emb.npy"
    np.save(path, clustered_pool(700, 24, 9).astype(np.float16))
    emb = np.load(path, mmap_mode="r")
    scores = np.random.default_rng(9).random(700)
    assert_same(scores, emb, 200, 0.9, device)


def test_progress_reports_examined_and_accepted() -> None:
    rng = np.random.default_rng(10)
    calls: list[tuple[int, int]] = []
    emb = rng.standard_normal((100, 8)).astype(np.float32)
    result = deita_filter(rng.random(100), emb, -1, 0.7, block_size=30,
                          progress=lambda examined, accepted: calls.append((examined, accepted)))
    assert [c[0] for c in calls] == [30, 60, 90, 100]
    assert calls[-1][1] == len(result.indices)


def test_toolkit_style_reference_agrees() -> None:
    emb = clustered_pool(200, 16, 11)
    scores = np.random.default_rng(11).random(200)
    np.testing.assert_array_equal(toolkit_style_filter(scores, emb, 50, 0.9),
                                  one_at_a_time_filter(scores, emb, 50, 0.9))


def test_tf32_settings_are_restored() -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
    deita_filter(np.ones(3), np.eye(3, dtype=np.float32), -1)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()) == before


@pytest.mark.parametrize(
    ("scores", "emb", "kwargs", "message"),
    [
        (np.ones(10), np.ones((9, 4), np.float32), {}, "scores for 10 records but embeddings have 9 rows"),
        (np.array([1.0, np.nan, 1.0]), np.eye(3, dtype=np.float32), {}, "row 1"),
        (np.array([1.0, 2.0, np.inf]), np.eye(3, dtype=np.float32), {}, "row 2"),
        (np.ones(3), np.eye(3, dtype=np.float32), {"threshold": 1.5}, "threshold"),
        (np.ones(3), np.eye(3, dtype=np.float32), {"threshold": -1.01}, "threshold"),
        (np.ones(3), np.eye(3, dtype=np.float32), {"size": 0}, "size"),
        (np.ones(3), np.eye(3, dtype=np.float32), {"size": -2}, "size"),
        (np.ones(3), np.eye(3, dtype=np.float32), {"block_size": 0}, "block_size"),
        (np.ones(3), np.ones(3, np.float32), {}, "2-D"),
    ],
)
def test_argument_errors(scores: np.ndarray, emb: np.ndarray, kwargs: dict, message: str) -> None:
    args = {"size": -1, **kwargs}
    with pytest.raises(DeitaError, match=message):
        deita_filter(scores, emb, **args)


@pytest.mark.parametrize(("bad", "problem"), [(np.nan, "contains NaN or inf"), (np.inf, "contains NaN or inf"), (0.0, "has zero norm")])
def test_bad_embedding_row_is_named(bad: float, problem: str, device: str) -> None:
    emb = np.random.default_rng(12).standard_normal((20, 4)).astype(np.float32)
    emb[13] = bad if bad == 0.0 else emb[13]
    emb[13, 2] = bad
    scores = np.arange(20, dtype=np.float64)
    with pytest.raises(DeitaError, match=f"embedding row 13 {problem}"):
        deita_filter(scores, emb, -1, 1.0, block_size=4, device=device)
    # rows never read are not checked: the walk stops (size 2, highest scores 19 and 18) before row 13
    assert list(deita_filter(scores, emb, 2, 1.0, block_size=1, device=device).indices) == [19, 18]


def test_unavailable_cuda_is_a_deita_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    with pytest.raises(DeitaError, match="no CUDA GPU is visible"):
        deita_filter(np.ones(2), np.eye(2, dtype=np.float32), -1, device="cuda")
    assert len(deita_filter(np.ones(2), np.eye(2, dtype=np.float32), -1, device="auto").indices) == 2


@pytest.mark.parametrize("block_size", [1, 7, 64, 300])
def test_provenance_names_the_accepted_sample_each_skip_duplicated(block_size: int, device: str) -> None:
    """Each skipped candidate comes with the accepted sample most similar to it when it was examined."""
    rng = np.random.default_rng(0)
    emb = clustered_pool(300, 8, 0)
    scores = rng.random(300)
    result = deita_filter(scores, emb, 50, 0.9, block_size=block_size, device=device)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    accepted, skipped, duplicate_of, similarity = [], [], [], []
    for i in np.argsort(-scores, kind="stable"):
        if len(accepted) == 50:
            break
        sims = unit[accepted] @ unit[i] if accepted else np.empty(0)
        if len(sims) and sims.max() > 0.9:
            skipped.append(i)
            duplicate_of.append(accepted[int(np.argmax(sims))])
            similarity.append(sims.max())
            continue
        accepted.append(i)
    assert result.indices.tolist() == accepted
    assert result.skipped.tolist() == skipped and result.duplicate_of.tolist() == duplicate_of
    np.testing.assert_allclose(result.similarity, similarity, atol=1e-5)
    assert result.n_examined == len(accepted) + len(skipped)
