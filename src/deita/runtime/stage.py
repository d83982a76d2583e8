"""What a stage is to the runtime: records → requests, and a worker that turns requests into arrays.

A stage never knows which executor runs it: the local executor calls its worker in-process, the Ray
executor calls the same worker inside long-lived actors. Nor does it know where results go: the runner
hands them to a sink (records with a new field, or rows of an `.npy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from deita.data.records import Record


class RecordProblem(ValueError):
    """A record a stage cannot work on (e.g. text that is not valid Unicode): it becomes a reject of `kind`
    (a key of `deita.data.policy.KINDS`)."""

    def __init__(self, problem: str, kind: str = "schema") -> None:
        super().__init__(problem)
        self.kind = kind


@dataclass
class WorkResult:
    """One array row per request, in request order, plus counters to add up for the run summary.

    `problems`: requests that got no result (an invalid server answer), by position, with the reason;
    their rows hold NaN, and their records become rejects (kind "server").
    """

    values: np.ndarray
    counters: dict[str, int] = field(default_factory=dict)
    problems: dict[int, str] = field(default_factory=dict)


class Worker(Protocol):
    def __call__(self, requests: Sequence[Any]) -> WorkResult: ...


class Stage(Protocol):
    name: str
    """Short name for caches and messages ("complexity", "embed")."""

    def fingerprint(self) -> dict[str, Any]:
        """Everything besides the records that decides the results (model, template, lengths)."""
        ...

    def requests(self, record: Record) -> list[Any]:
        """The units of work for one record (a turn each for scoring, one text for embedding); plain data.

        Raises `RecordProblem` for a record the stage cannot work on.
        """
        ...

    def load_worker(self) -> Worker:
        """Load the model once; the returned worker is called for many shards."""
        ...


def check_text(text: str, where: str) -> None:
    """Refuse text that is not valid Unicode (lone surrogates): no tokenizer or encoder can take it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = text[err.start]
        raise RecordProblem(f"{where} is not valid Unicode: lone surrogate \\u{ord(bad):04x} at character "
                            f"{err.start + 1}", kind="encoding") from None
