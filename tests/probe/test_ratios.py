"""The probe's arithmetic: a class's share of the selection over its share of the pool, and its spread."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from deita.probe.pool import ProbePool
from deita.probe.run import ALL, ratios, share_ratio, spread, summarize


def test_share_ratio() -> None:
    assert share_ratio(10, 100, 50, 1000) == pytest.approx(2.0)  # 10 % of the selection, 5 % of the pool
    assert share_ratio(0, 100, 50, 1000) == 0.0
    assert share_ratio(5, 100, 50, 1000) == pytest.approx(1.0)  # kept at its pool share: random's figure
    assert share_ratio(3, 100, 0, 1000) is None and share_ratio(0, 0, 5, 10) is None


def test_ratios_per_class_and_all_together() -> None:
    pool = ProbePool(Path("p.jsonl"), 900, 0, {"truncated": 50, "refusal": 50})
    got = ratios(pool, 200, Counter(truncated=10, refusal=0, clean=190))
    assert got["truncated"] == pytest.approx((10 / 200) / (50 / 1000))
    assert got["refusal"] == 0.0 and got[ALL] == pytest.approx((10 / 200) / (100 / 1000))


def test_spread_over_seeds() -> None:
    assert spread([0.5, None, 1.5]) == {"mean": 1.0, "min": 0.5, "max": 1.5}
    assert spread([None]) == {"mean": None, "min": None, "max": None}
    runs = [{"ratios": {"a": 0.2, ALL: 0.1}, "random_ratios": {"a": 1.0, ALL: 1.0}},
            {"ratios": {"a": 0.4, ALL: 0.3}, "random_ratios": {"a": 0.8, ALL: 1.2}}]
    summary = summarize(runs, ["a"])
    assert summary["a"]["selector"] == pytest.approx({"mean": 0.3, "min": 0.2, "max": 0.4})
    assert summary[ALL]["random"] == pytest.approx({"mean": 1.1, "min": 1.0, "max": 1.2})
