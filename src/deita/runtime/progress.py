"""One progress helper for long work: a rich bar on a terminal, plain flushed lines in a log file.

On a terminal it draws a bar with records/s and ETA. When stderr is not a terminal (a log file, a job
scheduler), it prints one line every `interval` seconds with the same figures, flushed at once, so a log
shows progress while the job runs rather than at exit. `quiet` silences both.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from deita.runtime.options import DEFAULT_PROGRESS_INTERVAL


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressBar:
    """Counts records done against a total measured in `total_unit` (records, rows or bytes of input).

    `advance(records, position)`: `position` is how far into the input (in `total_unit`) the reading is;
    without it the record count is the position.
    """

    def __init__(self, description: str, total: int | None, unit: str = "records", quiet: bool = False,
                 interval: float = DEFAULT_PROGRESS_INTERVAL, total_unit: str | None = None,
                 stream: TextIO | None = None) -> None:
        self.description, self.unit = description, unit
        self.total, self.total_unit = total or None, total_unit or unit
        self.done = 0
        self.position = 0
        self.interval = interval
        self.started = time.perf_counter()
        self._last_line = self.started
        self.stream = stream or sys.stderr
        terminal = self.stream.isatty()
        self._lines = not quiet and not terminal
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[done]}"),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            disable=quiet or not terminal, transient=False, console=Console(file=self.stream),
        )
        self._task = self._progress.add_task(description, total=self.total, done="", rate="")

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, records: int, position: int | None = None) -> None:
        self.done += records
        self.position = position if position is not None else self.done
        rate = self.done / max(self.seconds, 1e-9)
        self._progress.update(self._task, completed=self.position, done=f"{self.done:,} {self.unit}",
                              rate=f"{rate:,.1f} {self.unit}/s")
        now = time.perf_counter()
        if self._lines and now - self._last_line >= self.interval:
            self._last_line = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        """The plain progress line: done, share of the input, rate and ETA."""
        elapsed = self.seconds
        rate = self.done / max(elapsed, 1e-9)
        text = f"{self.description}: {self.done:,} {self.unit}, {rate:,.1f} {self.unit}/s, elapsed {_clock(elapsed)}"
        if self.total and self.position:
            share = min(self.position / self.total, 1.0)
            remaining = elapsed * (1 - share) / share if share > 0 else 0.0
            text += f", {100 * share:.0f} % of the input, ETA {_clock(remaining)}"
        return text

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started
