"""Check a whole file without stopping at the first bad record: every problem, plus notes on odd-but-valid data."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .readers import ReadStats
from .reading import check_read_options, open_input, parse_records


@dataclass
class ValidationReport:
    """What ``validate_file`` found; ``problems`` are "PATH, LOCATION: problem" lines, one per bad record."""

    path: str
    format: str | None
    file_type: str
    records: int
    turns: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    """Problems counted by kind (`problem_kind`)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def tally(self) -> list[str]:
        """One line per kind of problem, the most frequent first: "46  roles do not alternate"."""
        width = len(f"{max(self.kinds.values(), default=0):,}")
        return [f"{count:>{width},}  {kind}" for kind, count in self.kinds.most_common()]


PROBLEM_KINDS: tuple[tuple[str, str], ...] = (
    ("not valid UTF-8", r"^not valid UTF-8"),
    ("not valid Unicode (lone surrogate)", r"^text is not valid Unicode"),
    ("invalid JSON", r"^invalid JSON"),
    ("duplicate key", r"^duplicate key"),
    ("data after the array", r"^unexpected data after"),
    ("nested too deep", r"^nested "),
    ("not a JSON object", r"^not a JSON object"),
    ("unknown format", r"^cannot tell the record format"),
    ("no turns", r"^no turns"),
    ("roles do not alternate", r"roles must alternate"),
    ("system message inside the conversation", r"is a system message inside"),
    ("empty message", r"is empty"),
    ("unknown role", r"has unknown role"),
    ("missing field", r"^missing '|has no '"),
    ("wrong type", r"expected (?:a string|an array|an object)"),
)
"""(kind, pattern of the problem sentence) in the order they are tried; anything else is "other"."""
_KIND_PATTERNS = [(kind, re.compile(pattern)) for kind, pattern in PROBLEM_KINDS]


def problem_kind(problem: str) -> str:
    """The kind of a reader's problem sentence, for the tally at the end of `deita validate`."""
    for kind, pattern in _KIND_PATTERNS:
        if pattern.search(problem):
            return kind
    return "other"


def validate_file(path: str | Path, fmt: str | None = None, pairing: str = "role") -> ValidationReport:
    """Read every record of ``path`` with the same rules as ``iter_records`` and report all problems."""
    check_read_options(fmt, "skip", pairing)
    p, file_type = open_input(path)
    stats, problems, kinds = ReadStats(), [], Counter()

    def on_bad(index: int, location: str, problem: str, record: Any) -> None:
        problems.append(f"{p}, {location}: {problem}")
        kinds[problem_kind(problem)] += 1

    split = system = unanswered = 0
    for rec in parse_records(p, file_type, fmt, pairing, stats, on_bad):
        split += rec.skipped_leading_assistant > 0
        system += rec.system is not None
        unanswered += rec.turns[-1].response == ""
    notes = []
    if split:
        notes.append(
            f"{split} records start with an assistant message (split chats): those "
            f"{stats.skipped_leading_assistant} messages are not turns"
        )
    if system:
        notes.append(f"{system} record(s) have a leading system message: kept aside, not a turn")
    if unanswered and pairing == "role":
        notes.append(f'{unanswered} record(s) end with a user message without a response: its response is ""')
    if pairing == "positional":
        notes.append(
            "positional pairing: messages paired by position, ignoring roles (reproduces the reference toolkit)"
        )
    return ValidationReport(str(p), stats.format, file_type, stats.records, stats.turns, problems, notes, kinds)
