"""The paper's length baselines as per-turn scores: no model, no network (the `offline` preset).

A stage like the scorers, so it shards, resumes and rejects the same way. Each side of a turn counts only
what training sees: its first `MAX_CHARS` characters (2,048 tokens at about 4 characters a token), so a
pasted 90K-character document does not win on size alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deita.data.policy import RecordPolicy, given_or_own, rejects_path_for
from deita.data.records import Record, Turn
from deita.runtime.options import RunOptions
from deita.runtime.runner import StageSummary, cache_root, run_stage
from deita.runtime.sinks import RecordSink
from deita.runtime.stage import WorkResult, check_text

LENGTH_FIELDS = ("instruction_lengths", "response_lengths")
MAX_TOKENS = 2048
"""Tokens of a side that training sees (the SFT recipe's max length, DEITA.md §5)."""
CHARS_PER_TOKEN = 4
MAX_CHARS = MAX_TOKENS * CHARS_PER_TOKEN
"""Characters of an instruction or a response that count towards its length score."""


class LengthStage:
    """Per turn: characters of the instruction and of the response, each capped at `MAX_CHARS`."""

    name = "lengths"

    def fingerprint(self) -> dict[str, Any]:
        return {"stage": "lengths", "unit": "characters", "cap": MAX_CHARS}

    def requests(self, record: Record) -> list[Turn]:
        for number, turn in enumerate(record.turns, 1):
            check_text(turn.instruction, f"turn {number}'s instruction")
            check_text(turn.response, f"turn {number}'s response")
        return list(record.turns)

    def load_worker(self):
        return measure_lengths


def measure_lengths(turns: Sequence[Turn]) -> WorkResult:
    full = np.array([[len(t.instruction), len(t.response)] for t in turns], dtype=np.int64).reshape(-1, 2)
    seen = np.minimum(full, MAX_CHARS)
    return WorkResult(seen.astype(np.float64), {"capped_sides": int((full > MAX_CHARS).sum()),
                                                "chars_seen": int(seen.sum()), "chars_total": int(full.sum())})


def length_fields(rows: np.ndarray) -> dict[str, list[float]]:
    return {LENGTH_FIELDS[0]: [float(v) for v in rows[:, 0]], LENGTH_FIELDS[1]: [float(v) for v in rows[:, 1]]}


def add_length_scores(input_path: str | Path, output_path: str | Path, options: RunOptions = RunOptions(),
                      policy: RecordPolicy | None = None) -> StageSummary:
    """Write each record with per-turn instruction and response lengths (characters, capped at `MAX_CHARS`)
    added; the summary's counters say how many sides were capped and how much text counted."""
    output_path = Path(output_path)
    with given_or_own(policy, options, rejects_path_for(output_path)) as policy:
        return run_stage(LengthStage(), input_path, RecordSink(output_path, length_fields), options,
                         cache_root(options, output_path), policy=policy, description="length scores")
