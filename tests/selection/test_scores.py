"""final_scores: Σ over turns of the product of per-turn scores, and errors naming record and key."""

from __future__ import annotations

import numpy as np
import pytest

from deita.errors import DeitaError
from deita.selection import final_scores
from deita.selection.scores import DEFAULT_SCORE_KEYS, record_score


def test_multi_turn_sum_of_products() -> None:
    complexity = [[2.0, 3.0], [4.0], [1.5, 1.0, 2.0]]
    quality = [[5.0, 1.0], [2.5], [2.0, 3, 0.5]]
    got = final_scores([complexity, quality])
    np.testing.assert_array_equal(got, [13.0, 10.0, 7.0])
    assert got.dtype == np.float64


def test_single_key_and_three_keys() -> None:
    np.testing.assert_array_equal(final_scores([[[1.0, 2.0]]], keys=["a"]), [3.0])
    np.testing.assert_array_equal(final_scores([[[2.0]], [[3.0]], [[0.5]]], keys=["a", "b", "c"]), [3.0])


def test_empty_pool() -> None:
    assert final_scores([[], []]).shape == (0,)


@pytest.mark.parametrize(
    ("complexity", "quality", "message"),
    [
        ([[1.0], None], [[1.0], [2.0]], "record 1: missing 'complexity_scores'"),
        ([[1.0], [1.0, 2.0]], [[1.0], [2.0]], "record 1: 'quality_scores' has 1 turns but 'complexity_scores' has 2"),
        ([[1.0], []], [[1.0], []], "record 1: 'complexity_scores' is empty"),
        ([[1.0], [float("nan")]], [[1.0], [2.0]], "record 1: 'complexity_scores' turn 0 is nan"),
        ([[1.0], [2.0]], [[1.0], [1.0, float("inf")][1:]], "record 1: 'quality_scores' turn 0 is inf"),
        ([[1.0], [2.0, "3"]], [[1.0], [2.0, 1.0]], "record 1: 'complexity_scores' turn 1 is '3', not a number"),
        ([[1.0], [True]], [[1.0], [2.0]], "turn 0 is True, not a number"),
        ([[1.0], 3.0], [[1.0], [2.0]], "must be a list"),
    ],
)
def test_record_errors_name_record_and_key(complexity: list, quality: list, message: str) -> None:
    with pytest.raises(DeitaError, match=message.replace("(", r"\(")):
        final_scores([complexity, quality])


def test_locations_name_the_record() -> None:
    with pytest.raises(DeitaError, match="data.jsonl line 7: missing 'quality_scores'"):
        final_scores([[[1.0]], [None]], locations=["data.jsonl line 7"])


@pytest.mark.parametrize(
    ("lists", "keys", "locations", "message"),
    [
        ([[[1.0]]], ["a", "b"], None, "2 score keys but 1 lists"),
        ([[[1.0]], [[1.0], [2.0]]], ["a", "b"], None, "'b' has 2 records but 'a' has 1"),
        ([[[1.0]]], ["a"], ["x", "y"], "2 locations for 1 records"),
        ([], [], None, "at least one score key"),
    ],
)
def test_shape_errors(lists: list, keys: list, locations: list | None, message: str) -> None:
    with pytest.raises(DeitaError, match=message):
        final_scores(lists, keys, locations)


def plain_aggregate(complexity: list[list[float]], quality: list[list[float]], how: str) -> list[float]:
    """The reference: per record, the per-turn products folded by `how`, one record at a time."""
    out = []
    for c, q in zip(complexity, quality, strict=True):
        products = [a * b for a, b in zip(c, q, strict=True)]
        out.append({"sum": sum(products), "mean": sum(products) / len(products), "max": max(products)}[how])
    return out


@pytest.mark.parametrize("how", ["sum", "mean", "max"])
def test_aggregate_matches_reference(how: str) -> None:
    rng = np.random.default_rng(7)
    turns = rng.integers(1, 40, size=300)  # past the 32 vectorised columns too
    complexity = [rng.uniform(1, 6, n).tolist() for n in turns]
    quality = [rng.uniform(1, 6, n).tolist() for n in turns]
    got = final_scores([complexity, quality], aggregate=how)
    np.testing.assert_allclose(got, plain_aggregate(complexity, quality, how), rtol=1e-12)
    for i in range(0, 300, 37):
        assert record_score([complexity[i], quality[i]], DEFAULT_SCORE_KEYS, "r", how) == pytest.approx(got[i],
                                                                                                         rel=1e-12)


def test_sum_is_the_default_and_unchanged() -> None:
    complexity, quality = [[1.0, 2.0], [3.0]], [[4.0, 5.0], [6.0]]
    np.testing.assert_array_equal(final_scores([complexity, quality]), [14.0, 18.0])
    np.testing.assert_array_equal(final_scores([complexity, quality], aggregate="mean"), [7.0, 18.0])
    np.testing.assert_array_equal(final_scores([complexity, quality], aggregate="max"), [10.0, 18.0])


def test_unknown_aggregate_is_refused() -> None:
    with pytest.raises(DeitaError, match="unknown aggregate 'median'"):
        final_scores([[[1.0]], [[1.0]]], aggregate="median")
