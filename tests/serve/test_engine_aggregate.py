"""The service folds turns as the run did: a run selected with --aggregate mean is served with mean scores."""

from __future__ import annotations

import numpy as np

from deita.select_config import SelectConfig
from deita.serve.engine import aggregation, record_scores


def test_the_runs_aggregate_makes_the_served_score() -> None:
    keys = ("complexity_scores", "quality_scores")
    lists = [[[1.0, 2.0], [3.0]], [[4.0, 5.0], [6.0]]]  # records: turns (1×4, 2×5) and (3×6)
    for how, expected in (("sum", [14.0, 18.0]), ("mean", [7.0, 18.0]), ("max", [10.0, 18.0])):
        config = SelectConfig.build({"filter": {"aggregate": how}})
        assert aggregation(config) == how
        np.testing.assert_array_equal(record_scores(lists, keys, config), expected)
