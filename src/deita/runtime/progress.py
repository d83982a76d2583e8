"""One progress helper: a rich bar with items/s and ETA, silent when not on a terminal or when quiet."""

from __future__ import annotations

import sys
import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressBar:
    """Counts records done; usable as a context manager and as the runtime's `ProgressSink`."""

    def __init__(self, description: str, total: int | None, unit: str = "records", quiet: bool = False) -> None:
        self.unit = unit
        self.done = 0
        self.started = time.perf_counter()
        enabled = not quiet and sys.stderr.isatty()
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            disable=not enabled, transient=False,
        )
        self._task = self._progress.add_task(description, total=total, rate="")

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, records: int) -> None:
        self.done += records
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self._progress.update(self._task, advance=records, rate=f"{self.done / elapsed:,.1f} {self.unit}/s")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started
