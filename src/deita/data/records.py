"""The in-memory shape of one input record: its turns plus the untouched original, for every stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Turn(NamedTuple):
    """One (instruction, response) pair; response is "" when the user message got no answer.

    A named tuple rather than a frozen dataclass: a pool of millions of records makes millions of turns,
    and a tuple is made several times faster (immutable and compared by value all the same)."""

    instruction: str
    response: str


@dataclass(slots=True)
class Record:
    """A parsed record: ``raw`` is kept whole so every field survives; ``turns`` is what scorers read."""

    index: int  # 0-based position in the input file, counting rejected records too
    location: str  # "line 7" (JSONL, 1-based) or "index 6" (JSON array / parquet / dataset row)
    raw: dict
    turns: list[Turn]
    system: str | None = None  # leading system message, kept aside (not a turn)
    skipped_leading_assistant: int = 0  # leading assistant messages with no instruction (split chats)
