"""`run_stage`: one stage over one input file, in a single read, into a sink; resumable, nothing lost.

The input is read once. Each good record's requests are grouped into shards; a shard whose result is in
the store (same stage fingerprint, same requests) is reused, the others go to the executor. Results are
handed to the sink in input order together with the very records they were computed from, so the output
never pairs results with a re-read of a file that may have changed meanwhile. Bad records, from the
reader, the stage (`RecordProblem`) or the sink (`UnwritableRecord`), go to the run's `RecordPolicy`: set
aside into the rejects file, or a `RecordError` naming the file and record that stops the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deita.data.io import ReadStats, RecordPolicy, UnwritableRecord, input_size, iter_records
from deita.data.policy import rejected_line
from deita.data.records import Record
from deita.errors import DeitaError
from deita.runtime.options import RunOptions
from deita.runtime.progress import ProgressBar
from deita.runtime.shards import Executor, LocalExecutor, ShardResult, ShardStore, ShardTask, shard_key
from deita.runtime.sinks import Sink
from deita.runtime.stage import RecordProblem, Stage

log = logging.getLogger(__name__)

def make_executor(options: RunOptions) -> Executor:
    if options.executor == "local":
        return LocalExecutor()
    from deita.runtime.ray import RayExecutor

    return RayExecutor(address=options.ray_address, num_workers=options.num_workers)


def cache_root(options: RunOptions, output_path: Path) -> Path:
    """Where a command writing `output_path` keeps finished shards: --cache-dir, else OUTPUT.cache/."""
    return Path(options.cache_dir) if options.cache_dir else output_path.with_name(output_path.name + ".cache")


@dataclass
class StageSummary:
    """What one run of a stage did: counts add up as records read = written + rejected."""

    records: int = 0
    """Good records written to the sink."""
    rejected: int = 0
    requests: int = 0
    shards: int = 0
    resumed_shards: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    read: ReadStats = field(default_factory=ReadStats)
    rejects: Path | None = None
    by_kind: str = ""
    """The run's rejects counted by kind ("2 parse, 1 empty"), for the summary line."""

    def rejected_lines(self, of: int | None = None) -> list[str]:
        """"rejected N records (counts by kind) → FILE", or nothing when none was."""
        return rejected_line(self.rejected, self.by_kind, self.rejects, of)


def run_stage(stage: Stage, input_path: str | Path, sink: Sink, options: RunOptions, cache_root: str | Path,
              policy: RecordPolicy | None = None, description: str = "",
              executor: Executor | None = None) -> StageSummary:
    """Run `stage` over every record of `input_path` into `sink`; returns the counts.

    `policy`: what happens to bad records (default: the first one stops the run).
    """
    input_path = Path(input_path)
    if not input_path.exists():
        raise DeitaError(f"{input_path}: no such file or directory")
    summary = StageSummary()
    policy = policy or RecordPolicy.failing()
    before = policy.snapshot()
    bad = _Bad(input_path, policy)
    store = ShardStore(Path(cache_root) / stage.name,
                       {"format": options.format, "pairing": options.pairing, **stage.fingerprint()})
    records = iter_records(input_path, fmt=options.format, policy=policy, pairing=options.pairing,
                           stats=summary.read)
    held: dict[int, list[Record]] = {}  # records of shards handed out, until their result is written

    def tasks() -> Iterator[ShardTask]:
        batch: list[tuple[Record, list[Any]]] = []
        index = 0
        for record in records:
            try:
                batch.append((record, stage.requests(record)))
            except RecordProblem as problem:
                bad.add(record, str(problem), problem.kind)
                continue
            if len(batch) == options.shard_size:
                yield _task(index, batch, store, held)
                index, batch = index + 1, []
        if batch:
            yield _task(index, batch, store, held)

    total, unit = input_size(input_path)
    executor = executor or make_executor(options)
    written = 0
    ready: dict[int, ShardResult] = {}
    with ProgressBar(description or stage.name, total, quiet=options.quiet, interval=options.progress_interval,
                     total_unit=unit) as bar:
        try:
            for task, result in executor.run(stage, tasks()):
                if result is None:
                    result = task.result
                    summary.resumed_shards += 1
                else:
                    if int(result.counts.sum()) != len(result.values):
                        raise DeitaError(f"shard {task.index}: {len(result.values)} results for "
                                         f"{int(result.counts.sum())} requests")
                    if result.problems:  # not stored: a rerun asks the server again for this shard
                        log.info("shard %d: %d invalid answers; not stored", task.index, len(result.problems))
                    else:
                        store.save(task.key, result)
                ready[task.index] = result
                while written in ready:
                    shard = ready.pop(written)
                    _emit(held.pop(written), shard, sink, bad, summary)
                    bar.advance(len(shard.counts), summary.read.bytes_read)
                    written += 1
        except BaseException:
            sink.abort()
            raise
        if ready:
            sink.abort()
            raise DeitaError(f"internal error: shards {sorted(ready)} finished but shard {written} never did")
        sink.close()
    summary.shards = written
    summary.seconds = bar.seconds
    summary.rejected = sum((policy.counts - before).values())
    summary.by_kind = policy.by_kind(since=before)
    summary.rejects = policy.path if summary.rejected else None
    if summary.records == 0:
        raise DeitaError(f"{input_path}: no usable records ({summary.rejected} rejected)")
    if summary.resumed_shards:
        log.info("resumed: %d of %d shards were already done in %s", summary.resumed_shards, summary.shards,
                 store.directory)
    return summary


def _task(index: int, batch: list[tuple[Record, list[Any]]], store: ShardStore,
          held: dict[int, list[Record]]) -> ShardTask:
    """A shard's task; its stored result is attached (read and checked now) when there is a good one."""
    requests = [q for _, qs in batch for q in qs]
    counts = np.array([len(qs) for _, qs in batch], dtype=np.int64)
    key = shard_key(requests, counts)
    held[index] = [record for record, _ in batch]
    cached = store.load(key) if store.has(key) else None
    if cached is not None and not np.array_equal(cached.counts, counts):
        cached = None
    return ShardTask(index, key, [] if cached is not None else requests, counts, result=cached)



class _Bad:
    """A record the stage or the sink cannot take, to the policy."""

    def __init__(self, input_path: Path, policy: RecordPolicy) -> None:
        self.input_path, self.policy = input_path, policy

    def add(self, record: Record, problem: str, kind: str) -> None:
        self.policy.reject(self.input_path, record.index, record.location, problem, record.raw, kind=kind)


def _emit(records: list[Record], result: ShardResult, sink: Sink, bad: _Bad, summary: StageSummary) -> None:
    summary.requests += len(result.values)
    for key, value in result.counters.items():
        summary.counters[key] = summary.counters.get(key, 0) + int(value)
    start = 0
    for record, rows in zip(records, result.per_record(), strict=True):
        first, start = start, start + len(rows)
        failed = [result.problems[i] for i in range(first, start) if i in result.problems]
        if failed:
            bad.add(record, f"invalid server answer: {failed[0]}", "server")
            continue
        try:
            sink.write(record, rows)
        except UnwritableRecord as problem:
            bad.add(record, str(problem), "write")
            continue
        summary.records += 1
