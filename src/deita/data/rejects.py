"""Bad records of a run: where they go (``rejects_path_for``), the JSONL writer, and the hint to skip them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

SKIP_HINT = "Use --on-error skip to write bad records to {rejects} and continue"
ON_ERROR = ("fail", "skip")


def rejects_path_for(output: str | Path) -> Path:
    """Where bad records of a run writing ``output`` go: ``<output>.rejects.jsonl``."""
    p = Path(output)
    return p.with_name(p.name + ".rejects.jsonl")


class RejectsWriter:
    """JSONL of rejected records: ``{"index", "location", "reason", "record"}``; created on the first one.

    A stale rejects file from an earlier run is removed at construction, so the file always describes
    this run.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._f: IO[str] | None = None
        self.path.unlink(missing_ok=True)

    def add(self, index: int, location: str, reason: str, record: Any, kind: str | None = None) -> None:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "w", encoding="utf-8", errors="backslashreplace", newline="\n")  # noqa: SIM115
        row = {"index": index, "location": location, "reason": reason, "record": record}
        if kind is not None:
            row = {"index": index, "location": location, "kind": kind, "reason": reason, "record": record}
        self._f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
