"""Records sent to the service, parsed the way `deita score` parses a file's records.

A record is a ShareGPT, Alpaca or chat-messages object (format detected per record), or a plain
`{"question": …, "answer": …}`. A record that cannot be read gets a `RecordFailure` (kind and reason) in
its slot; the other records of the request are still served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deita.data.formats import detect_format, json_type, parse_turns
from deita.data.records import Record, Turn

FORMAT_KEYS = ("conversations", "messages", "instruction")
QA_KEYS = ("question", "answer")


@dataclass(frozen=True)
class RecordFailure:
    """Why one record of a request was not served: `kind` (schema, turns, encoding, engine) and a sentence."""

    kind: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"error": {"kind": self.kind, "reason": self.reason}}


def question_answer_turns(raw: dict) -> list[Turn]:
    """The single turn of a plain `{"question", "answer"}` record (answer optional)."""
    for key in QA_KEYS:
        if key in raw and not isinstance(raw[key], str):
            raise ValueError(f"'{key}' is {json_type(raw[key])}, expected a string")
    question, answer = raw["question"], raw.get("answer", "")
    if not question.strip():
        raise ValueError("'question' is empty (whitespace-only)")
    return [Turn(question, answer)]


def parse_record(raw: Any, index: int, pairing: str = "role") -> Record | RecordFailure:
    """A request's record as a `Record` (location `records[i]`), or the failure naming what is wrong."""
    if not isinstance(raw, dict):
        return RecordFailure("schema", f"the record is {json_type(raw)}, expected an object")
    system = None
    try:
        if "question" in raw and not any(key in raw for key in FORMAT_KEYS):
            turns = question_answer_turns(raw)
        else:
            try:
                fmt = detect_format(raw)
            except ValueError as err:
                return RecordFailure("schema", f"{err}, or 'question' and 'answer'")
            turns, system, _ = parse_turns(raw, fmt, pairing)
    except ValueError as err:
        return RecordFailure("turns", str(err))
    return Record(index, f"records[{index}]", raw, turns, system)
