"""The threshold calibration counts the copies the walk catches and the real records it loses, per threshold."""

from __future__ import annotations

import numpy as np
from builders import chat_pool

from deita.data.formats import convert_record
from deita.probe.calibrate import table_lines, threshold_rows
from deita.probe.pool import COPIES, MARK, inject_traced


def _unit(*values: float) -> np.ndarray:
    vector = np.zeros(8, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def test_threshold_rows_count_caught_copies_and_lost_real_records() -> None:
    """Six real records (two of them at cosine 0.97 to each other), an exact copy of record 0, a near copy of
    record 1 at cosine 0.98 and one of record 2 at cosine 0.90."""
    basis = np.eye(8, dtype=np.float32)
    real = [*basis[:5], _unit(0, 0, 0, 0, 0.97, 0, np.sqrt(1 - 0.97**2))]  # record 5: cosine 0.97 to record 4
    copies = [basis[0], _unit(0, 0.98, 0, 0, 0, 0, 0, np.sqrt(1 - 0.98**2)),
              _unit(0, 0, 0.90, 0, 0, 0, 0, np.sqrt(1 - 0.90**2))]
    embeddings = np.stack([*real, *copies])
    scores = np.arange(len(embeddings), 0, -1, dtype=np.float64)  # originals first, copies after
    origin = [-1] * 6 + [0, 1, 2]
    classes = [""] * 6 + ["exact_copy", "near_copy", "near_copy"]
    rows = threshold_rows(scores, embeddings, origin, classes, (0.95, 0.99))
    assert [row.copies_skipped for row in rows] == [{"exact_copy": 1.0, "near_copy": 0.5},
                                                    {"exact_copy": 1.0, "near_copy": 0.0}]
    assert [(row.real_skipped, row.real_records) for row in rows] == [(1, 6), (0, 6)]
    # a copy ranked above its original still counts as caught: the original is the one skipped
    flipped = threshold_rows(scores[::-1].copy(), embeddings, origin, classes, (0.95,))
    assert flipped[0].copies_skipped == {"exact_copy": 1.0, "near_copy": 0.5}
    assert table_lines(rows)[2] == "| 0.95 | 100.0% | 50.0% | 1 of 6 (16.7%) |"


def test_inject_traced_names_each_copys_original() -> None:
    records = [convert_record(r, "sharegpt", "messages") for r in chat_pool(120, seed=4)]
    mixed, counts, origin = inject_traced(records, COPIES, 0.2, seed=7)
    injected = [i for i, place in enumerate(origin) if place >= 0]
    assert len(injected) == sum(counts.values()) == 24
    for i in injected:
        source = mixed[origin[i]]
        assert MARK not in source and origin[i] < i  # a real record, placed before its copy
        if mixed[i][MARK] == "exact_copy":
            assert {k: v for k, v in mixed[i].items() if k != MARK} == source
        else:
            assert mixed[i]["messages"][0] == source["messages"][0]  # a near copy keeps the question
