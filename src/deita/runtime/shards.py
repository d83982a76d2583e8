"""Resumable shard results: each shard of records is persisted the moment it finishes, keyed by content.

A shard is a run of consecutive good records. Its result (one row per request, and how many requests
each record had) is written atomically as `.npz` (no pickle) in a directory named by the stage's
fingerprint (model, template, options), under a name taken from the shard's own requests. So a moved or
renamed input reuses its finished shards, a pool with records appended reuses the unchanged ones, and a
changed model or option never reuses stale ones. An index of checksums catches empty, truncated or
corrupt shard files, which are reported in one line and recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deita.data import atomic
from deita.data.records import Turn
from deita.runtime.stage import Stage

log = logging.getLogger(__name__)
INDEX = "index.jsonl"


@dataclass
class ShardResult:
    values: np.ndarray
    counts: np.ndarray  # requests per record
    counters: dict[str, int] = field(default_factory=dict)
    problems: dict[int, str] = field(default_factory=dict)
    """Requests without a result (see `WorkResult.problems`); a shard with any is never stored."""

    def per_record(self) -> Iterator[np.ndarray]:
        """The rows of each record in turn."""
        start = 0
        for count in self.counts:
            yield self.values[start : start + count]
            start += int(count)


@dataclass
class ShardTask:
    """A shard as the executors see it: plain requests (picklable), or, when its result is already stored,
    that result (kept on the driver; executors pass such a task through without computing it)."""

    index: int
    key: str
    requests: list[Any]
    counts: np.ndarray
    result: ShardResult | None = None

    @property
    def cached(self) -> bool:
        return self.result is not None


def fingerprint_key(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shard_key(requests: Sequence[Any], counts: np.ndarray) -> str:
    """A shard's name from the requests themselves (texts and turns): equal content, equal key."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.asarray(counts, dtype=np.int64).tobytes())
    for request in requests:
        parts = (request.instruction, request.response) if isinstance(request, Turn) else (request,)
        for part in parts:
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    return digest.hexdigest()


def file_identity(path: str | Path) -> dict[str, Any]:
    """Name, size and modification time of a model file or of the files in a model directory.

    Only names, sizes and times: a moved model folder with the same files keeps its caches.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return {"files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]}
    if path.exists():
        stat = path.stat()
        return {"name": path.name, "size": stat.st_size, "mtime": stat.st_mtime_ns}
    return {"id": str(path)}  # a hub id


def fingerprint_directory(root: str | Path, fingerprint: dict[str, Any]) -> Path:
    """`root/<fingerprint key>/`, created, with the fingerprint written beside the results it decides."""
    directory = Path(root) / fingerprint_key(fingerprint)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / "fingerprint.json"
    if not manifest.exists():
        manifest.write_text(json.dumps(fingerprint, indent=2, sort_keys=True, default=str))
    return directory


class ShardStore:
    """Finished shard results of one stage fingerprint, under `root/<fingerprint key>/<shard key>.npz`."""

    def __init__(self, root: str | Path, fingerprint: dict[str, Any]) -> None:
        self.directory = fingerprint_directory(root, fingerprint)
        self.index = self._read_index()

    def _read_index(self) -> dict[str, dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {}
        path = self.directory / INDEX
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    entries[entry["key"]] = entry
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut off by a crash: that shard is simply not done
        return entries

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def has(self, key: str) -> bool:
        return key in self.index and self.path(key).exists()

    def save(self, key: str, result: ShardResult) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, values=result.values, counts=result.counts, counters=np.array(json.dumps(result.counters)))
        data = buffer.getvalue()
        atomic.write_bytes(self.path(key), data, sync=True)
        entry = {"key": key, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        with open(self.directory / INDEX, "a", encoding="utf-8") as index:
            index.write(json.dumps(entry) + "\n")
            index.flush()
            os.fsync(index.fileno())
        self.index[key] = entry

    def load(self, key: str) -> ShardResult | None:
        """The stored result, or None (after one warning line) when the file is missing or damaged."""
        path = self.path(key)
        entry = self.index.get(key)
        try:
            data = path.read_bytes()
            if entry is None:
                raise ValueError("not in the shard index")
            if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise ValueError(f"{len(data)} bytes, checksum mismatch" if data else "empty file")
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                return ShardResult(arrays["values"], arrays["counts"], json.loads(str(arrays["counters"])))
        except Exception as err:  # noqa: BLE001 (any damage means: recompute this shard)
            log.warning("cache shard %s is damaged (%s); recomputing it", path, err)
            self.index.pop(key, None)
            path.unlink(missing_ok=True)
            return None


class Executor(Protocol):
    def run(self, stage: Stage, tasks: Iterator[ShardTask]) -> Iterator[tuple[ShardTask, ShardResult | None]]:
        """Compute the tasks that are not cached (in any order); yield every task with its result (None
        for a cached one) as it finishes."""
        ...


class LocalExecutor:
    """Runs the stage's worker in this process, shard after shard; the model loads on the first real shard."""

    def run(self, stage: Stage, tasks: Iterator[ShardTask]) -> Iterator[tuple[ShardTask, ShardResult | None]]:
        worker = None
        for task in tasks:
            if task.cached:
                yield task, None
                continue
            if worker is None:
                worker = stage.load_worker()
            result = worker(task.requests)
            yield task, ShardResult(result.values, task.counts, result.counters, result.problems)
