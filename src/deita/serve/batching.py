"""Dynamic batching: the jobs of concurrent requests merged into one engine call.

Requests put their jobs in one queue. A single engine thread takes everything waiting (up to
`max_batch` jobs) as one batch; when it was idle, it first waits a short window so that requests
arriving together share a batch. While a batch runs, the next one gathers. The queue is bounded: past
`max_queue` waiting jobs a request is refused at once (`QueueFull`), never left to time out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

J = TypeVar("J")
R = TypeVar("R")


class QueueFull(Exception):
    """The queue holds too many jobs; `retry_after` estimates the seconds until there is room."""

    def __init__(self, waiting: int, retry_after: int) -> None:
        super().__init__(f"{waiting:,} records are waiting for the engine; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Pending(Generic[J, R]):
    jobs: Sequence[J]
    future: asyncio.Future[list[R]]


class DynamicBatcher(Generic[J, R]):
    """Runs `run(jobs) -> results` (one result per job, in order) on one thread, over merged requests.

    `on_batch(jobs, seconds)` is called after each batch (metrics)."""

    def __init__(self, run: Callable[[list[J]], list[R]], wait_s: float, max_batch: int, max_queue: int,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        self.run, self.wait_s, self.max_batch, self.max_queue = run, wait_s, max_batch, max_queue
        self.on_batch = on_batch
        self.waiting = 0
        self.seconds_per_job = 0.0
        self.busy = False
        self._queue: deque[_Pending[J, R]] = deque()
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deita-engine")

    def start(self) -> None:
        """Start gathering batches on the running event loop."""
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        """Finish what is queued, then stop the loop and the engine thread."""
        while self._queue or self.busy:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._thread.shutdown(wait=True)

    async def submit(self, jobs: Sequence[J]) -> list[R]:
        """The results of `jobs`, computed in some batch; `QueueFull` when there is no room for them."""
        if not jobs:
            return []
        if self.waiting + len(jobs) > self.max_queue:
            raise QueueFull(self.waiting, self.retry_after())
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(jobs, future))
        self.waiting += len(jobs)
        assert self._ready is not None, "start() the batcher first"
        self._ready.set()
        return await future

    def retry_after(self) -> int:
        """Seconds until the jobs now waiting should be done, at the recent pace (at least 1)."""
        return max(1, math.ceil(self.waiting * self.seconds_per_job))

    async def _serve(self) -> None:
        assert self._ready is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.wait()
            if self.waiting < self.max_batch and self.wait_s > 0:
                await asyncio.sleep(self.wait_s)  # idle engine: let requests arriving together join
            taken: list[_Pending[J, R]] = []
            count = 0
            while self._queue and (not taken or count + len(self._queue[0].jobs) <= self.max_batch):
                pending = self._queue.popleft()
                taken.append(pending)
                count += len(pending.jobs)
            self.waiting -= count
            if not self._queue:
                self._ready.clear()
            jobs = [job for pending in taken for job in pending.jobs]
            start = time.perf_counter()
            self.busy = True
            try:
                results = await loop.run_in_executor(self._thread, self.run, jobs)
                if len(results) != len(jobs):
                    raise RuntimeError(f"the engine returned {len(results)} results for {len(jobs)} jobs")
            except Exception as err:  # noqa: BLE001  (handed to the requests that wait for these jobs)
                for pending in taken:
                    if not pending.future.done():
                        pending.future.set_exception(err)
            else:
                position = 0
                for pending in taken:
                    if not pending.future.done():
                        pending.future.set_result(results[position : position + len(pending.jobs)])
                    position += len(pending.jobs)
            finally:
                self.busy = False
            seconds = time.perf_counter() - start
            self.seconds_per_job = seconds / max(count, 1)
            if self.on_batch is not None:
                self.on_batch(count, seconds)
