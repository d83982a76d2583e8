"""Test data builders shared by the test folders: records, JSONL files, varied turns."""

from __future__ import annotations

import json
from pathlib import Path

from deita.data.records import Turn


def example_turns():
    """Varied turns for scoring tests: short, long (truncation), unanswered, multi-sentence."""
    return [
        Turn("What is 2+2?", "4"),
        Turn("Write a poem about the sea. " * 12, "The sea is blue and wide. " * 20),
        Turn("Explain recursion", ""),
        Turn("hi", "hello there, how can I help you today?"),
        Turn("Summarise this text: " + "lorem ipsum dolor sit amet " * 30, "A summary."),
    ]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Write records as JSON Lines (test data)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def sharegpt(*messages: tuple[str, str], **fields) -> dict:
    """A ShareGPT record from (role, text) pairs plus extra fields (test data)."""
    return {**fields, "conversations": [{"from": role, "value": text} for role, text in messages]}


def scored_pool(output: Path, target: Path | None = None) -> Path:
    """The scored pool a `deita select` run stands on (its kept records with their score fields, as the staged
    path wrote them to OUTPUT.work/scored.jsonl), rebuilt from the run's columns and pool into `target`
    (default: beside the output), for `deita filter` and `deita report` by hand."""
    from deita.data.io import RecordWriter
    from deita.serve.selection import FinishedRun

    run = FinishedRun(output)
    target = target or output.with_name(output.name + ".scored.jsonl")
    with RecordWriter(target, "jsonl") as writer:
        for record in run.scored_records():
            writer.write(record.raw)
    return target
