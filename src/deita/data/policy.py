"""The one bad-record policy: what happens to a record deita cannot use, in every command and stage.

A `RecordPolicy` is built once per run (`RecordPolicy.for_run`, the only reader of the `on_error` setting)
and handed to every stage. It owns the fail/skip decision, the rejects file (JSONL rows `{"index",
"location", "kind", "reason", "record"}`), the counts by kind and the one hint text. The hint names only
what the running interface has: a command's own `--on-error` flag, the Python API's `on_error="skip"`, or,
where nothing can skip, says so and points at `deita validate`.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from deita.errors import DeitaError, RecordError

from . import atomic

if TYPE_CHECKING:
    from typing_extensions import Self

ON_ERROR = ("fail", "skip")
"""The values of the `on_error` setting: stop at the first bad record, or set bad records aside."""

KINDS: dict[str, str] = {
    "encoding": "bytes or text that are not valid UTF-8 / Unicode",
    "parse": "not valid JSON (broken syntax, data after the array, nested too deep, a cut-off file)",
    "schema": "not a record deita reads: not an object, a missing field, a wrong type, an unknown format",
    "turns": "messages that do not form turns: roles out of order, an unknown role, no turns",
    "empty": "nothing to work on: an empty message, no instruction, no answer",
    "convert": "cannot be converted to the target format",
    "write": "the output's file type cannot hold the record",
    "tokenizer": "the tokenizer or chat template cannot render the record",
    "server": "the model server failed or refused the request",
    "model": "the model's answer is unusable: an empty, refused or unchanged evolution, invalid scores",
}
"""Every kind of reject, defined once: the `kind` of each rejects row is one of these."""

READER_PROBLEMS: tuple[tuple[str, str, str], ...] = (
    ("not valid UTF-8", "encoding", r"^not valid UTF-8"),
    ("not valid Unicode (lone surrogate)", "encoding", r"not valid Unicode"),
    ("invalid JSON", "parse", r"^invalid JSON"),
    ("duplicate key", "parse", r"^duplicate key"),
    ("data after the array", "parse", r"^unexpected data after"),
    ("nested too deep", "parse", r"^nested "),
    ("not a JSON object", "schema", r"^not a JSON object"),
    ("unknown format", "schema", r"^cannot tell the record format"),
    ("no turns", "turns", r"^no turns"),
    ("roles do not alternate", "turns", r"roles must alternate"),
    ("system message inside the conversation", "turns", r"is a system message inside"),
    ("empty message", "empty", r"is empty|empty answer|^no instruction|^no response|no assistant answer"),
    ("unknown role", "turns", r"has unknown role"),
    ("missing field", "schema", r"^missing '|has no '"),
    ("wrong type", "schema", r"expected (?:a string|an array|an object)"),
)
"""(detail, kind, pattern of the problem sentence) in the order they are tried, for problems that come as
sentences (the readers', a pair's); `deita validate` tallies by detail. Anything else is "other" / the
`fallback` kind."""
_PATTERNS = [(detail, kind, re.compile(pattern)) for detail, kind, pattern in READER_PROBLEMS]
_PARSE_TAIL = re.compile(r"array is not closed|expected ',' or '\]'|not a JSON array")


def problem_detail(problem: str) -> str:
    """The detail of a problem sentence ("roles do not alternate"), or "other"."""
    for detail, _, pattern in _PATTERNS:
        if pattern.search(problem):
            return detail
    return "other"


def problem_kind(problem: str, fallback: str = "schema") -> str:
    """The kind (a key of `KINDS`) of a problem sentence; `fallback` where no pattern matches."""
    for _, kind, pattern in _PATTERNS:
        if pattern.search(problem):
            return kind
    return "parse" if _PARSE_TAIL.search(problem) else fallback


def rejects_path_for(output: str | Path) -> Path:
    """Where bad records of a run writing `output` go: `<output>.rejects.jsonl`."""
    p = Path(output)
    return p.with_name(p.name + ".rejects.jsonl")


API_SWITCH = "on_error=\"skip\""
"""How the Python API asks for skipping (a `RunOptions` field): the hint of a policy built outside the CLI."""
CLI_SWITCH = "--on-error skip"
"""How a command that has the `--on-error` flag asks for skipping."""
POLICY_SWITCH = "policy=RecordPolicy.skipping(REJECTS)"
"""How a Python function that takes a policy (`iter_records`, `convert_file`) is asked to skip."""


def rejected_line(count: int, by_kind: str, path: str | Path | None, of: int | None = None) -> list[str]:
    """The one summary line of a run's rejects, counted by kind: "rejected 3 of 10 records (2 parse, 1 schema)
    → FILE"; no line when nothing was rejected."""
    if not count:
        return []
    total = f" of {of:,}" if of is not None else ""
    kinds = f" ({by_kind})" if by_kind else ""
    where = f" → {path}" if path is not None else ""
    return [f"rejected {count:,}{total} records{kinds}{where}"]


@dataclass(frozen=True)
class Reject:
    """One record set aside: where it is, what kind of problem, the reason in words, and the record itself."""

    index: int
    location: str
    kind: str
    reason: str
    record: Any

    def row(self) -> dict[str, Any]:
        return {"index": self.index, "location": self.location, "kind": self.kind, "reason": self.reason,
                "record": self.record}


class RecordPolicy:
    """What happens to a bad record in this run: stop (a one-line `RecordError` naming file and record, with
    the hint), or set it aside into the rejects file and count it by kind.

    `skip`: set bad records aside instead of stopping. `rejects`: the rejects file of this run (None: the
    caller has none). `switch`: how the running interface asks for skipping (`CLI_SWITCH`, `API_SWITCH`);
    None where it cannot skip, and `who` ("`deita report`", "The filter") names it in the hint. `write`: False
    counts without writing (a dry run, a secondary training process). `keep_failures`: `set_aside` is used
    (failed LLM items always go to the file), so the file is this run's even under fail. Used as a context
    manager, the policy closes the file and, when nothing was rejected, removes a stale one.
    `on_reject` sees each reject as it is taken (`deita validate` lists them).
    """

    def __init__(self, skip: bool, rejects: Path | None = None, *, switch: str | None = API_SWITCH,
                 who: str = "This reader", write: bool = True, keep_failures: bool = False,
                 on_reject: Callable[[Reject], None] | None = None) -> None:
        self.skip, self.switch, self.who, self.on_reject = skip, switch, who, on_reject
        self.rejects = Path(rejects) if rejects is not None else None
        self.write = write and self.rejects is not None
        self.counts: Counter[str] = Counter()
        self._file: IO[str] | None = None
        self._temp: Path | None = None  # the rows of this run until it ends well (data/atomic.py's temps)
        self._lock = threading.Lock()  # the Ray executor reads the input in a feeder thread
        self._replaces = self.write and (skip or keep_failures)
        self.keep_failures = keep_failures
        self._written = False

    @classmethod
    def for_run(cls, options: Any, rejects: str | Path | None, *, switch: str | None = API_SWITCH,
                who: str = "This reader", write: bool = True, keep_failures: bool = False) -> RecordPolicy:
        """The policy of a run from its options (anything with `on_error`, e.g. `RunOptions`): the one
        place the setting is read. An unknown value is an error naming the choices."""
        on_error = getattr(options, "on_error", "fail")
        if on_error not in ON_ERROR:
            raise DeitaError(f"unknown on_error {on_error!r} (expected one of {', '.join(ON_ERROR)})")
        return cls(on_error == "skip", Path(rejects) if rejects is not None else None, switch=switch, who=who,
                   write=write, keep_failures=keep_failures)

    @classmethod
    def skipping(cls, rejects: str | Path | None, *, write: bool = True) -> RecordPolicy:
        """Set every bad record aside into `rejects` (None: only count them)."""
        return cls(True, Path(rejects) if rejects is not None else None, write=write)

    @classmethod
    def failing(cls, rejects: str | Path | None = None, *, switch: str | None = POLICY_SWITCH,
                who: str = "This reader") -> RecordPolicy:
        """Stop at the first bad record. The hint names `switch` and `rejects` (where a skipping run would
        write); `switch=None` is a caller that cannot skip, and the hint says so plainly, naming `who`."""
        return cls(False, Path(rejects) if rejects is not None else None, switch=switch, who=who)

    # ------------------------------------------------------------ deciding

    @property
    def can_skip(self) -> bool:
        return self.switch is not None

    @property
    def path(self) -> Path | None:
        """The rejects file this run writes to (None when it writes none)."""
        return self.rejects if self.write and (self.skip or self.counts) else None

    def hint(self, path: str | Path) -> str:
        """The one hint after a bad record of `path` stopped the run."""
        if self.switch is None:
            return (f"{self.who} stops at bad records (it cannot skip them); `deita validate {path}` lists "
                    "every one")
        if self.rejects is None:
            return f"Use {self.switch} to set bad records aside and continue"
        return f"Use {self.switch} to write bad records to {self.rejects} and continue"

    def reject(self, path: str | Path, index: int, location: str, reason: str, record: Any,
               kind: str | None = None) -> None:
        """A bad record of `path`: raise a `RecordError` naming file and record (fail), or set it aside
        (skip). `kind`: one of `KINDS`; None classifies `reason` (`problem_kind`)."""
        kind = kind or problem_kind(reason)
        if not self.skip:
            raise RecordError(str(path), location, reason, hint=self.hint(path))
        self.set_aside(index, location, kind, reason, record)

    def set_aside(self, index: int, location: str, kind: str, reason: str, record: Any) -> None:
        """Count a record as rejected and write it to the rejects file, whatever the mode (an item the LLM
        could not do is a result, not bad input)."""
        if kind not in KINDS:
            raise ValueError(f"unknown reject kind {kind!r} (expected one of {', '.join(KINDS)})")
        reject = Reject(index, location, kind, reason, record)
        with self._lock:
            self.counts[kind] += 1
            if self.write:
                self._write_row(reject.row())
            if self.on_reject is not None:
                self.on_reject(reject)

    def _write_row(self, row: dict[str, Any]) -> None:
        if self._file is None:
            assert self.rejects is not None
            self._written = True
            self.rejects.parent.mkdir(parents=True, exist_ok=True)
            self._temp = atomic.temp_path(self.rejects)  # removed on a failure or signal, moved at the end
            self._file = open(self._temp, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                              newline="\n")
        self._file.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    # ------------------------------------------------------------ reporting

    @property
    def count(self) -> int:
        """Records rejected so far, every kind."""
        return sum(self.counts.values())

    def snapshot(self) -> Counter[str]:
        """The counts by kind now, to report one stage's share later (`by_kind(since=...)`)."""
        with self._lock:
            return Counter(self.counts)

    def by_kind(self, since: Counter[str] | None = None) -> str:
        """The counts by kind, most frequent first: "2 parse, 1 schema" (those after `since`, if given)."""
        counts = self.counts - since if since is not None else self.counts
        return ", ".join(f"{count:,} {kind}" for kind, count in counts.most_common())

    def line(self, of: int | None = None) -> list[str]:
        """The summary line of the rejects ("rejected 3 of 10 records (2 parse, 1 schema) → FILE"), or none."""
        return rejected_line(self.count, self.by_kind(), self.path, of)

    def rows_file(self) -> Path | None:
        """The file holding this run's rows so far, flushed, for a reader while the run goes on (a report):
        the temporary file until the run ends, then the rejects file; None when no row was written."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
            if self._temp is not None:
                return self._temp
        return self.rejects if self._written else None

    def close(self) -> None:
        """End the run well: the rows written so far are moved into place as the rejects file."""
        self._finish(keep=True)

    def _finish(self, keep: bool) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._temp is not None:
                temp, self._temp = self._temp, None
                if keep:
                    atomic.commit(temp, self.rejects)  # type: ignore[arg-type]
                else:
                    atomic.discard(temp)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Move the rows into place when the run ended well, and remove a stale rejects file of an earlier run
        that rejected nothing, so the file always describes the last run (never before the run's path checks
        passed). On a failure, an interrupt or SIGTERM the rows are removed and an earlier file is left as it
        was; only `keep_failures` rows (failed LLM items, the run's results) outlive an error, since its message
        names them."""
        ended_well = exc_type is None or (self.keep_failures and issubclass(exc_type, Exception))
        self._finish(keep=ended_well)
        if exc_type is None and self._replaces and not self._written:
            self.rejects.unlink(missing_ok=True)  # type: ignore[union-attr]


@contextlib.contextmanager
def given_or_own(policy: RecordPolicy | None, options: Any, rejects: str | Path | None, *, write: bool = True,
                 keep_failures: bool = False) -> Iterator[RecordPolicy]:
    """`policy` as given (the caller closes it), or, for a Python caller that gave none, the run's own
    from `options` writing to `rejects` (`write`, `keep_failures`: see `RecordPolicy`), closed at the end."""
    if policy is not None:
        yield policy
        return
    with RecordPolicy.for_run(options, rejects, write=write, keep_failures=keep_failures) as own:
        yield own
