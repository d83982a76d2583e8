"""Check a whole file without stopping at the first bad record: every problem, plus notes on odd-but-valid data."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .policy import RecordPolicy, Reject, problem_detail
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
    """Problems counted by detail (`policy.problem_detail`)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def tally(self) -> list[str]:
        """One line per kind of problem, the most frequent first: "46  roles do not alternate"."""
        width = len(f"{max(self.kinds.values(), default=0):,}")
        return [f"{count:>{width},}  {kind}" for kind, count in self.kinds.most_common()]


def validate_file(path: str | Path, fmt: str | None = None, pairing: str = "role") -> ValidationReport:
    """Read every record of ``path`` with the same rules as ``iter_records`` and report all problems."""
    check_read_options(fmt, pairing)
    p, file_type = open_input(path)
    stats, problems, kinds = ReadStats(), [], Counter()

    def listed(reject: Reject) -> None:
        problems.append(f"{p}, {reject.location}: {reject.reason}")
        kinds[problem_detail(reject.reason)] += 1

    policy = RecordPolicy(True, None, write=False, on_reject=listed)
    split = system = unanswered = 0
    for rec in parse_records(p, file_type, fmt, pairing, stats, policy):
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
