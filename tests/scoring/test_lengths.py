"""Offline length scores count what training sees: each side up to MAX_CHARS characters."""

from __future__ import annotations

import json
from pathlib import Path

from deita.data.io import iter_records
from deita.data.records import Turn
from deita.runtime.options import RunOptions
from deita.scoring.lengths import MAX_CHARS, LengthStage, add_length_scores, measure_lengths


def test_each_side_capped_and_counted() -> None:
    result = measure_lengths([Turn("q" * 100, "a" * 90_000), Turn("x" * 9000, "")])
    assert result.values.tolist() == [[100.0, float(MAX_CHARS)], [float(MAX_CHARS), 0.0]]
    assert result.counters == {"capped_sides": 2, "chars_seen": 100 + 2 * MAX_CHARS, "chars_total": 99_100}
    assert LengthStage().fingerprint()["cap"] == MAX_CHARS == 8192


def test_a_pasted_document_no_longer_wins_on_size_alone(tmp_path: Path) -> None:
    pasted = {"id": "pasted", "conversations": [{"from": "human", "value": "summarise: " + "doc " * 250},
                                                 {"from": "gpt", "value": "word " * 18_000}]}  # 90K characters
    solid = {"id": "solid", "conversations": [{"from": "human", "value": "explain " * 250},
                                               {"from": "gpt", "value": "careful answer " * 530}]}
    src = tmp_path / "pool.jsonl"
    src.write_text(json.dumps(pasted) + "\n" + json.dumps(solid) + "\n")
    summary = add_length_scores(src, tmp_path / "scored.jsonl", RunOptions(quiet=True), None)
    scored = {r.raw["id"]: r.raw for r in iter_records(tmp_path / "scored.jsonl")}
    product = {k: r["instruction_lengths"][0] * r["response_lengths"][0] for k, r in scored.items()}
    uncapped_pasted = len(pasted["conversations"][0]["value"]) * len(pasted["conversations"][1]["value"])
    assert uncapped_pasted > product["solid"] > product["pasted"]  # it used to win; now the solid chat does
    assert summary.counters["capped_sides"] == 1
