"""Check a whole file without stopping at the first bad record: every problem, plus notes on odd-but-valid data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import ReadStats, _check_options, _open, _records


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

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_file(path: str | Path, fmt: str | None = None, pairing: str = "role") -> ValidationReport:
    """Read every record of ``path`` with the same rules as ``iter_records`` and report all problems."""
    _check_options(fmt, "skip", pairing)
    p, file_type = _open(path)
    stats, problems = ReadStats(), []

    def on_bad(index: int, location: str, problem: str, record: Any) -> None:
        problems.append(f"{p}, {location}: {problem}")

    split = system = unanswered = 0
    for rec in _records(p, file_type, fmt, pairing, stats, on_bad):
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
    return ValidationReport(str(p), stats.format, file_type, stats.records, stats.turns, problems, notes)
