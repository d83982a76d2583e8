"""Paid LLM work over a file, resumable: items in shards keyed by content, each shard's outcomes saved the
moment it finishes, so a rerun after a crash pays for no finished shard again.

The runtime's `ShardStore` keeps numeric arrays; these outcomes are texts (variants, reasons), so they
are kept as one small JSONL file per shard, under the same content-and-fingerprint naming
(`runtime.shards.shard_key`, `fingerprint_key`). An outcome is a row for the output or a reject with its
reason. Rejects that may succeed later (a server error or timeout that outlasted the retries) are
marked transient: a rerun asks again for those items only.

Shards run concurrently (a few at a time, so the end of one overlaps the start of the next); the
client's semaphore bounds the requests in flight. Outcomes are handed on in input order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deita.data import atomic
from deita.evol.client import Usage
from deita.runtime.shards import fingerprint_directory, shard_key

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One unit of paid work: the record it came from (for rejects), its content (the shard key), its input."""

    index: int
    location: str
    raw: Any
    content: list[str]
    payload: Any


REJECT_KINDS = {"server": "the server gave no answer", "model": "no usable answer"}
"""Why paid work failed: the server gave no answer (HTTP errors, refusals, timeouts after the retries),
or it answered and no answer was usable (empty, refused, unchanged, cut off, invalid scores)."""


@dataclass
class Outcome:
    row: dict[str, Any] | None = None
    reject: str | None = None
    transient: bool = False
    usage: Usage = field(default_factory=Usage)
    kind: str = "model"
    """For a reject: a key of `REJECT_KINDS`."""

    def to_json(self) -> str:
        return json.dumps({"row": self.row, "reject": self.reject, "transient": self.transient,
                           "usage": self.usage.to_dict(), "kind": self.kind}, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Outcome:
        data = json.loads(line)
        if (data["row"] is None) == (data["reject"] is None):
            raise ValueError("an outcome is a row or a reject")
        transient = bool(data["transient"])
        kind = data.get("kind") or ("server" if transient else "model")  # shards saved before kinds were kept
        if kind not in REJECT_KINDS:
            raise ValueError(f"unknown reject kind {kind!r}")
        return cls(data["row"], data["reject"], transient, Usage.from_dict(data["usage"]), kind)


Work = Callable[[Item], Awaitable[Outcome]]
Emit = Callable[[list[Item], list[Outcome]], None]


class OutcomeStore:
    """Finished shards of one job fingerprint: `root/<fingerprint key>/<shard key>.jsonl`, one outcome a line."""

    def __init__(self, root: str | Path, fingerprint: dict[str, Any]) -> None:
        self.directory = fingerprint_directory(root, fingerprint)

    def key(self, items: Sequence[Item]) -> str:
        return shard_key([part for item in items for part in item.content],
                         np.array([len(item.content) for item in items]))

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.jsonl"

    def load(self, key: str, count: int) -> list[Outcome] | None:
        """The stored outcomes of a shard of `count` items, or None (one warning line if the file is damaged)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            outcomes = [Outcome.from_json(line) for line in path.read_text(encoding="utf-8").splitlines()]
            if len(outcomes) != count:
                raise ValueError(f"{len(outcomes)} outcomes for {count} items")
            return outcomes
        except Exception as err:
            log.warning("cache shard %s is damaged (%s); redoing it", path, err)
            path.unlink(missing_ok=True)
            return None

    def save(self, key: str, outcomes: Sequence[Outcome]) -> None:
        text = "".join(outcome.to_json() + "\n" for outcome in outcomes)
        atomic.write_bytes(self.path(key), text.encode("utf-8", "surrogatepass"), sync=True)


@dataclass
class JobSummary:
    items: int = 0
    rows: int = 0
    rejected: int = 0
    transient: int = 0
    shards: int = 0
    resumed_shards: int = 0
    usage: Usage = field(default_factory=Usage)
    """Tokens this run paid for."""
    earlier: Usage = field(default_factory=Usage)
    """Tokens the reused shards cost when they ran."""
    kinds: dict[str, int] = field(default_factory=dict)
    """Rejects by kind (`REJECT_KINDS`)."""
    examples: dict[str, str] = field(default_factory=dict)
    """The first reject's reason of each kind."""

    def count_reject(self, outcome: Outcome) -> None:
        self.rejected += 1
        self.transient += outcome.transient
        self.kinds[outcome.kind] = self.kinds.get(outcome.kind, 0) + 1
        self.examples.setdefault(outcome.kind, outcome.reject or "")

    def breakdown(self) -> str:
        """`2 server (the server gave no answer), 1 model (no usable answer)`, kinds in table order."""
        return ", ".join(f"{self.kinds[kind]:,} {kind} ({what})" for kind, what in REJECT_KINDS.items()
                         if self.kinds.get(kind))


def shards_in_flight(concurrency: int, shard_size: int) -> int:
    """Enough shards at once to keep `concurrency` requests busy across shard ends, and at least two."""
    return max(2, math.ceil(2 * concurrency / max(shard_size, 1)))


async def run_job(shards: Iterator[list[Item]], store: OutcomeStore, work: Work, emit: Emit,
                  window: int = 2) -> JobSummary:
    """Every item's outcome, shard by shard through `emit` in input order; stored shards are reused."""
    summary = JobSummary()
    pending: deque[tuple[list[Item], asyncio.Task]] = deque()

    def finish(items: list[Item], outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            summary.items += 1
            if outcome.row is not None:
                summary.rows += 1
            else:
                summary.count_reject(outcome)
        summary.shards += 1
        emit(items, outcomes)

    try:
        for items in shards:
            pending.append((items, asyncio.create_task(_shard(items, store, work, summary))))
            while len(pending) >= window:
                items, task = pending.popleft()
                finish(items, await task)
        while pending:
            items, task = pending.popleft()
            finish(items, await task)
    finally:
        for _, task in pending:
            task.cancel()
        await asyncio.gather(*(task for _, task in pending), return_exceptions=True)
    return summary


async def _shard(items: list[Item], store: OutcomeStore, work: Work, summary: JobSummary) -> list[Outcome]:
    key = store.key(items)
    stored = store.load(key, len(items))
    outcomes: list[Outcome | None] = list(stored) if stored is not None else [None] * len(items)
    todo = [i for i, outcome in enumerate(outcomes) if outcome is None or outcome.transient]
    if stored is not None and not todo:
        summary.resumed_shards += 1
    for i, outcome in enumerate(outcomes):
        if outcome is not None and i not in todo:
            summary.earlier.add(outcome.usage)
    if todo:
        tasks = [asyncio.create_task(work(items[i])) for i in todo]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for i, task in zip(todo, tasks, strict=True):
            fresh: Outcome = task.result()
            summary.usage.add(fresh.usage)
            if outcomes[i] is not None:  # a transient reject asked again: keep the cost of both tries
                fresh.usage.add(outcomes[i].usage)  # type: ignore[union-attr]
            outcomes[i] = fresh
        store.save(key, outcomes)  # type: ignore[arg-type]
    return outcomes  # type: ignore[return-value]
