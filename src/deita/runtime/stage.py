"""What a stage is to the runtime: records → requests, and a worker that turns requests into arrays.

A stage never knows which executor runs it: the local executor calls its worker in-process, the Ray
executor calls the same worker inside long-lived actors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from deita.data.records import Record


@dataclass
class WorkResult:
    """One array row per request, in request order, plus counters to add up for the run summary."""

    values: np.ndarray
    counters: dict[str, int] = field(default_factory=dict)


class Worker(Protocol):
    def __call__(self, requests: Sequence[Any]) -> WorkResult: ...


class Stage(Protocol):
    name: str
    """Short name for caches and messages ("complexity", "embed")."""

    def fingerprint(self) -> dict[str, Any]:
        """Everything that decides the results (model identity, template, lengths): a change means recompute."""
        ...

    def requests(self, record: Record) -> list[Any]:
        """The units of work for one record (a turn each for scoring, one text for embedding); picklable."""
        ...

    def load_worker(self) -> Worker:
        """Load the model once; the returned worker is called for many shards."""
        ...
