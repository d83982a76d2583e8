"""The selection walk under a token budget and a cap per group: the same picks as the one-at-a-time reference for
every block size, the budget held and filled, the caps held, and errors for inconsistent limits."""

from __future__ import annotations

import re

import numpy as np
import pytest
from reference import one_at_a_time_limited
from test_deita_filter import clustered_pool

from deita.errors import ConfigError, DeitaError
from deita.selection import deita_filter
from deita.selection.config import FilterConfig
from deita.selection.quota import GroupColumn, Quota, quota_walk


def limited_pool(seed: int, n: int = 400, n_groups: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scores, clustered embeddings (many near-duplicates), token costs with a long tail, and skewed group ids."""
    rng = np.random.default_rng(seed)
    costs = (rng.pareto(1.5, n) * 40 + 5).astype(np.int64)
    groups = np.minimum(rng.geometric(0.45, n) - 1, n_groups - 1).astype(np.int64)
    return rng.random(n), clustered_pool(n, 16, seed, n_clusters=60, spread=0.05), costs, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("size", "budget", "cap"), [(-1, 3000, None), (150, 2000, None), (60, None, 15),
                                                     (80, 2500, 20), (-1, 10**9, None)])
def test_walk_matches_reference(seed: int, size: int, budget: int | None, cap: int | None, device: str) -> None:
    scores, emb, costs, groups = limited_pool(seed)
    quota = Quota(costs if budget else None, budget, groups if cap else None, cap)
    expected, counts = one_at_a_time_limited(scores, emb, size, 0.9, quota.costs, budget, quota.groups, cap)
    limited = counts["over_budget"] + counts["group_full"] > 0 or counts["examined"] < len(scores)
    assert counts["near"] > 0 and (limited or budget == 10**9)  # the case tests what it is meant to
    for block_size in (1, 7, 64, 1024):
        got = deita_filter(scores, emb, size, 0.9, block_size=block_size, device=device, quota=quota)
        np.testing.assert_array_equal(got.indices, expected, err_msg=f"block_size={block_size}")
        assert got.quota.tokens == counts["tokens"]
        assert (got.quota.over_budget, got.quota.group_full) == (counts["over_budget"], counts["group_full"])
        assert got.n_examined == counts["examined"]
        assert len(got.skipped) == counts["near"]  # provenance lists the near-duplicates only
        assert not set(got.skipped.tolist()) & set(got.indices.tolist())
    if budget:
        assert counts["tokens"] <= budget
    if cap:
        assert np.bincount(groups[expected]).max() <= cap


def test_ranking_walk_matches_reference() -> None:
    scores, _, costs, groups = limited_pool(3, n=2000)
    order = np.argsort(-scores, kind="stable")
    for size, budget, cap in ((-1, 5000, None), (100, None, 25), (300, 8000, 70)):
        quota = Quota(costs if budget else None, budget, groups if cap else None, cap)
        expected, counts = one_at_a_time_limited(scores, None, size, None, quota.costs, budget, quota.groups, cap,
                                                 order=order)
        indices, examined, got = quota_walk(order, size, quota)
        assert indices.tolist() == expected
        assert (examined, got.tokens, got.over_budget, got.group_full) == \
            (counts["examined"], counts["tokens"], counts["over_budget"], counts["group_full"])


def best_fill(costs: list[int], budget: int) -> int:
    """The most tokens any subset holds within `budget`: every reachable subset sum, enumerated exhaustively."""
    reachable = {0}
    for cost in costs:
        reachable |= {total + cost for total in reachable if total + cost <= budget}
    return max(reachable)


@pytest.mark.parametrize("seed", range(6))
def test_budget_fills_within_ten_percent_of_the_best_subset(seed: int) -> None:
    """Records far smaller than the budget (the realistic case): the walk holds the budget and fills it to within
    10 % of the fullest subset brute force finds, whatever the ranking."""
    rng = np.random.default_rng(seed)
    budget = 500
    costs = rng.integers(5, budget // 10 + 1, size=40)  # each at most 10 % of the budget
    scores = rng.random(40)
    order = np.argsort(-scores, kind="stable")
    indices, _, counts = quota_walk(order, -1, Quota(costs, budget))
    best = best_fill(costs.tolist(), budget)
    assert counts.tokens == int(costs[indices].sum()) <= budget
    assert counts.tokens >= 0.9 * best, (counts.tokens, best)
    assert counts.over_budget > 0  # the pool holds more than the budget: the walk skipped some and walked on


def test_skips_a_record_too_big_and_walks_on() -> None:
    costs = np.asarray([10, 95, 30, 50, 5])
    indices, examined, counts = quota_walk(np.arange(5), -1, Quota(costs, 100))
    assert indices.tolist() == [0, 2, 3, 4]  # 95 would overflow: skipped, the walk goes on
    assert (counts.tokens, counts.over_budget, examined) == (95, 1, 5)


def test_stops_when_nothing_left_fits() -> None:
    costs = np.asarray([60, 50, 45, 70])
    indices, examined, counts = quota_walk(np.arange(4), -1, Quota(costs, 100))
    assert indices.tolist() == [0]
    assert examined == 1 and counts.over_budget == 0  # from position 1 on nothing fits in 40 tokens: stop


def test_group_cap_and_missing_field_group() -> None:
    column = GroupColumn("source")
    for raw in ({"source": "a"}, {"source": "a"}, {}, {"source": None}, {"source": "a"}, {"source": 1},
                {"source": "1"}):
        column.add(raw)
    assert column.names() == ["a", "(no field)", "1 (int)", "1"]
    ids = column.array()
    assert ids[2] == ids[3] != ids[0]  # absent and null: one group of their own
    assert ids[5] != ids[6]  # 1 and "1" are different values
    indices, _, counts = quota_walk(np.arange(7), -1, Quota(groups=ids, cap=1))
    assert indices.tolist() == [0, 2, 5, 6]
    assert counts.group_full == 3
    assert column.count_selected(indices) == {"a": 1, "(no field)": 1, "1 (int)": 1, "1": 1}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"budget": 10}, "a token budget needs token costs"),
    ({"costs": np.asarray([1, 2]), "budget": 0}, "at least 1"),
    ({"groups": np.asarray([0, 1])}, "a cap per group needs group ids"),
    ({"costs": np.asarray([1.5, 2.0]), "budget": 10}, "non-negative integers"),
    ({"groups": np.asarray([0, -1]), "cap": 1}, "non-negative integers"),
])
def test_inconsistent_limits_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(DeitaError, match=message):
        Quota(**kwargs)


def test_columns_must_cover_the_pool() -> None:
    quota = Quota(np.asarray([1, 2, 3]), 10)
    with pytest.raises(DeitaError, match="token costs for 3 records but the pool has 4"):
        quota_walk(np.arange(4), -1, quota)
    with pytest.raises(DeitaError, match="token costs for 3 records but the pool has 5"):
        deita_filter(np.zeros(5), np.eye(5, dtype=np.float32), -1, quota=quota)


@pytest.mark.parametrize(("options", "message"), [
    ({"size": 10, "max_share": 0.05}, "max_share 0.05 × size 10 leaves no room"),
    ({"size": 10, "max_share": 0.0}, "max_share: 0.0 is out of range"),
    ({"token_budget": 0}, "token_budget: 0 is out of range"),
    ({"budget_tokenizer": "x"}, "budget_tokenizer counts token_budget, which is not set"),
    ({"strategy": "kcenter", "max_share": 0.5}, "max_share needs a strategy that walks a ranking"),
    ({"aggregate": "median"}, "'median' is not one of sum, mean, max"),
])
def test_filter_config_checks_the_limits(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        FilterConfig(**options)


def test_size_minus_one_with_max_share_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="max_share needs a record count") as caught:
        FilterConfig(size=-1, max_share=0.5)
    assert caught.value.usage
    assert FilterConfig(size=30, max_share=0.1).group_cap() == 3  # floor(0.1 × 30), not 2 from 2.9999…
