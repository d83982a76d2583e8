"""Sharded, resumable execution: results of each shard of records are persisted the moment they finish.

A shard is a run of consecutive records. Its result (one row per request, and how many requests each
record had) is written atomically as `.npz` (no pickle) under a directory named by the fingerprint of
everything that determines it, so a rerun after a crash (even `kill -9`) skips finished shards, and a
changed model, template or input never reuses stale ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deita.data.records import Record
from deita.errors import DeitaError
from deita.runtime.stage import Stage


@dataclass
class ShardResult:
    values: np.ndarray
    counts: np.ndarray  # requests per record
    counters: dict[str, int] = field(default_factory=dict)

    def per_record(self) -> Iterator[np.ndarray]:
        """The rows of each record in turn."""
        start = 0
        for count in self.counts:
            yield self.values[start : start + count]
            start += int(count)


@dataclass
class Shard:
    index: int
    records: list[Record]

    def requests(self, stage: Stage) -> tuple[list[Any], np.ndarray]:
        per_record = [stage.requests(r) for r in self.records]
        flat = [q for qs in per_record for q in qs]
        return flat, np.array([len(qs) for qs in per_record], dtype=np.int64)


def fingerprint_key(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def content_digest(path: str | Path) -> dict[str, Any]:
    """Identity of an input by its bytes (files, or every file of a dataset folder): a rewrite with the
    same content keeps its cache, any edit invalidates it."""
    path = Path(path)
    digest = hashlib.blake2b(digest_size=16)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return {"path": str(path.resolve()), "blake2b": digest.hexdigest()}


def file_identity(path: str | Path) -> dict[str, Any]:
    """Path, size and modification time of a file or of the files in a model directory (cheap for weights)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return {"path": str(path.resolve()), "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]}
    if path.exists():
        stat = path.stat()
        return {"path": str(path.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns}
    return {"id": str(path)}  # a hub id


class ShardStore:
    """Finished shard results of one fingerprint, under `root/<key>/shard-NNNNNN.npz`."""

    def __init__(self, root: str | Path, fingerprint: dict[str, Any]) -> None:
        self.directory = Path(root) / fingerprint_key(fingerprint)
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest = self.directory / "fingerprint.json"
        if not manifest.exists():
            manifest.write_text(json.dumps(fingerprint, indent=2, sort_keys=True, default=str))

    def path(self, index: int) -> Path:
        return self.directory / f"shard-{index:06d}.npz"

    def done(self, index: int) -> bool:
        return self.path(index).exists()

    def save(self, index: int, result: ShardResult) -> None:
        temporary = self.directory / f".shard-{index:06d}.{os.getpid()}.tmp.npz"
        np.savez(temporary, values=result.values, counts=result.counts,
                 counters=np.array(json.dumps(result.counters)))
        os.replace(temporary, self.path(index))

    def load(self, index: int) -> ShardResult:
        try:
            with np.load(self.path(index), allow_pickle=False) as data:
                return ShardResult(data["values"], data["counts"], json.loads(str(data["counters"])))
        except (OSError, ValueError, KeyError) as err:
            raise DeitaError(f"cache file {self.path(index)} is unreadable ({err}); delete it and rerun") from err


def iter_shards(records: Iterable[Record], shard_size: int) -> Iterator[Shard]:
    batch: list[Record] = []
    index = 0
    for record in records:
        batch.append(record)
        if len(batch) == shard_size:
            yield Shard(index, batch)
            index, batch = index + 1, []
    if batch:
        yield Shard(index, batch)


@dataclass
class PendingShard:
    """A shard still to compute, reduced to what a worker needs (picklable for Ray)."""

    index: int
    requests: list[Any]
    counts: np.ndarray


class Executor(Protocol):
    def run(self, stage: Stage, pending: Iterator[PendingShard], progress: ProgressSink) -> Iterator[tuple[int, ShardResult]]:
        """Compute pending shards (in any order) and yield each result as it finishes."""
        ...


class ProgressSink(Protocol):
    def advance(self, records: int) -> None: ...


class LocalExecutor:
    """Runs the stage's worker in this process, shard after shard."""

    def run(self, stage: Stage, pending: Iterator[PendingShard], progress: ProgressSink) -> Iterator[tuple[int, ShardResult]]:
        worker = None
        for shard in pending:
            if worker is None:
                worker = stage.load_worker()
            result = worker(shard.requests)
            yield shard.index, ShardResult(result.values, shard.counts, result.counters)
            progress.advance(len(shard.counts))


@dataclass
class RunSummary:
    records: int = 0
    requests: int = 0
    shards: int = 0
    resumed_shards: int = 0
    counters: dict[str, int] = field(default_factory=dict)


def compute_shards(stage: Stage, records: Iterable[Record], store: ShardStore, shard_size: int,
                   executor: Executor, progress: ProgressSink) -> RunSummary:
    """Make sure every shard of `records` has a persisted result; returns what was done."""
    summary = RunSummary()

    def pending() -> Iterator[PendingShard]:
        for shard in iter_shards(records, shard_size):
            summary.shards += 1
            summary.records += len(shard.records)
            if store.done(shard.index):
                summary.resumed_shards += 1
                progress.advance(len(shard.records))
                continue
            requests, counts = shard.requests(stage)
            yield PendingShard(shard.index, requests, counts)

    for index, result in executor.run(stage, pending(), progress):
        if int(result.counts.sum()) != len(result.values):
            raise DeitaError(f"shard {index}: {len(result.values)} results for {int(result.counts.sum())} requests")
        store.save(index, result)
    for index in range(summary.shards):
        result = store.load(index)
        summary.requests += len(result.values)
        for key, value in result.counters.items():
            summary.counters[key] = summary.counters.get(key, 0) + int(value)
    return summary


def iter_results(store: ShardStore, n_shards: int) -> Iterator[ShardResult]:
    for index in range(n_shards):
        yield store.load(index)
