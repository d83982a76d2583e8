"""The second read of the pool: every per-record column of the kept records, in one pass.

Each kept record is parsed once; every job's stage makes its requests from that same record, and the
records are cut into the same shards for all jobs. Each job keeps its own resume cache (`ShardStore`,
named by the stage's fingerprint and the shard's requests, as `deita score` and `deita embed` name theirs,
so their caches are shared) and its own executor: the jobs are chained as generators, so a shard goes
through the first job's executor, then the next job's, while later shards are read, and the token-budget
batching of each stage is the one the standalone commands use. A shard's results reach the columns in
input order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deita.data.io import ReadStats, RecordWriter, input_size, iter_records
from deita.data.policy import RecordPolicy
from deita.data.records import Record
from deita.data.source import Fingerprint, InputChanged
from deita.dedup.output import record_id_of
from deita.errors import DeitaError
from deita.passes.columns import GROUP_IDS, TOKEN_COSTS, ColumnsWriter
from deita.passes.fetch import already_counted
from deita.passes.keep import KeepMask
from deita.runtime.options import RunOptions
from deita.runtime.progress import ProgressBar
from deita.runtime.runner import StageSummary, make_executor
from deita.runtime.shards import Executor, ShardResult, ShardStore, ShardTask, shard_key
from deita.runtime.sinks import ArraySink
from deita.runtime.stage import RecordProblem, Stage
from deita.selection.quota import GroupColumn
from deita.selection.scores import record_score
from deita.selection.tokens import TokenColumn

TurnFields = Callable[[np.ndarray], dict[str, list[float | None]]]

RECORD_COLUMNS: dict[str, Callable[[Record], float]] = {
    "response_chars": lambda record: sum(len(turn.response) for turn in record.turns),
}
"""Per-record numbers the pass keeps for the selection walk, by column name: a new one is one line here.
The columns of the walk's limits depend on the run's settings (a tokenizer, a field): `PassInput.costs` and
`.groups` fill them in the same read, as `deita filter` fills them in its one read."""


@dataclass
class Job:
    """One stage of the pass and where its rows go: per-turn fields (scores) or one `.npy` row per record."""

    stage: Stage
    turn_fields: TurnFields | None = None
    rows: ArraySink | None = None
    summary: StageSummary = field(default_factory=StageSummary)


@dataclass
class Shard:
    index: int
    records: list[Record]
    spans: list[tuple[int, int]] | None
    requests: list[list[Any]]
    counts: list[np.ndarray]
    results: dict[int, ShardResult] = field(default_factory=dict)


@dataclass
class PassInput:
    """What the second read needs to know about the pool and the first read."""

    pool: Path
    keep: KeepMask | None
    policy: RecordPolicy
    """Bad records: the reader's (when this is the first read) and those a stage refuses."""
    duplicates: Path | None = None
    """Where each record dedup removed is named (with the record kept in its place)."""
    extra_fields: tuple[str, ...] = ()
    """Per-turn fields the sort key names that no job computes: taken from the records as they are."""
    clean: Callable[[list[Record]], list[bool]] | None = None
    """Decontamination: per record of a batch, True if it may stay (it counts and names what it removes)."""
    stays: Callable[[list[Record]], list[bool]] | None = None
    """The same verdicts without counting or naming (for a read that only fills a stage's cache)."""
    costs: TokenColumn | None = None
    """--token-budget: each row's tokens, counted as the row is emitted."""
    groups: GroupColumn | None = None
    """--max-share: each row's group, by the value of the source field."""
    expect: Fingerprint | None = None
    """The first read's fingerprint, which this read must find again; None: this is the first read."""

    def stats(self) -> ReadStats:
        """The stats of a read of the pool: the first keeps a fingerprint (and refuses a pipe), a later one
        must find the same bytes (`data.source`)."""
        return ReadStats(expect=self.expect) if self.expect is not None else ReadStats(reread=True)


@dataclass
class PassSummary:
    records: int = 0
    rejected: int = 0
    rows: int = 0
    seconds: float = 0.0
    read: ReadStats = field(default_factory=ReadStats)
    fingerprint: Fingerprint | None = None
    """The pool's bytes as every read found them."""


def compute_columns(source: PassInput, jobs: list[Job], options: RunOptions, cache_root: Path,
                    columns: ColumnsWriter, batch: int = 4096) -> PassSummary:
    """Read the pool once more; for each kept record run every job; fill `columns` and the jobs' sinks.

    With the Ray executor, whose actor pool takes the whole cluster, each stage first fills its cache in a read
    of its own; the pass proper then finds every shard done and runs locally."""
    if options.executor != "local":
        for position in range(len(jobs)):
            fill_cache(source, jobs, position, options, cache_root, batch)
        options = dataclasses.replace(options, executor="local")
    summary = PassSummary(read=source.stats())
    before = source.policy.count
    records = iter_records(source.pool, fmt=options.format, pairing=options.pairing, stats=summary.read,
                           policy=source.policy if source.keep is None else already_counted())
    stores = [ShardStore(cache_root / job.stage.name, {"format": options.format, "pairing": options.pairing,
                                                       **job.stage.fingerprint()}) for job in jobs]
    total, unit = input_size(source.pool)
    duplicates = RecordWriter(source.duplicates, "jsonl") if source.duplicates is not None else None
    try:
        with ProgressBar("select: scoring and embedding", total, quiet=options.quiet,
                         interval=options.progress_interval, total_unit=unit) as bar:
            kept = _kept(records, summary.read, source, duplicates)
            cleaned = _cleaned(kept, source.clean, batch) if source.clean is not None else kept
            shards = _shards(cleaned, jobs, options.shard_size, source.pool, source.policy)
            for position, job in enumerate(jobs):
                shards = _through(shards, position, job, stores[position], make_executor(options))
            for shard in shards:
                _emit(shard, jobs, source, columns, summary)
                bar.advance(len(shard.records), summary.read.bytes_read)
            summary.seconds = bar.seconds
            for job in jobs:
                job.summary.seconds = bar.seconds
        for job in jobs:
            if job.rows is not None:
                job.rows.close()
        if duplicates is not None:
            duplicates.close()
    except BaseException:
        for job in jobs:
            if job.rows is not None:
                job.rows.abort()
        if duplicates is not None:
            duplicates.abort()
        raise
    if source.costs is not None:
        columns.arrays[TOKEN_COSTS] = source.costs.array()
    if source.groups is not None:
        columns.arrays[GROUP_IDS] = source.groups.array()
        columns.group_keys = source.groups.keys()
    summary.fingerprint = source.expect or summary.read.fingerprint
    if source.keep is not None and summary.read.records - summary.read.rejected != len(source.keep.indices):
        raise InputChanged(f"{source.pool} changed during the run ({len(source.keep.indices):,} good records at the "
                           f"first read, {summary.read.records - summary.read.rejected:,} now): nothing was written; "
                           "run again on a file that stays put")
    summary.rejected = source.policy.count - before
    summary.records = summary.read.records
    return summary


def fill_cache(source: PassInput, jobs: list[Job], position: int, options: RunOptions, cache_root: Path,
               batch: int) -> None:
    """One read of the kept records for job `position` alone, its results into its cache; the shards are the
    pass's own (every stage's requests decide which records are in), and nothing else is written."""
    stats = ReadStats(expect=source.expect)
    records = iter_records(source.pool, fmt=options.format, policy=already_counted(), pairing=options.pairing,
                           stats=stats)
    kept = _kept(records, stats, source, None)
    cleaned = _cleaned(kept, source.stays, batch) if source.stays is not None else kept
    shards = _shards(cleaned, jobs, options.shard_size, source.pool, already_counted())
    job = jobs[position]
    store = ShardStore(cache_root / job.stage.name, {"format": options.format, "pairing": options.pairing,
                                                     **job.stage.fingerprint()})
    for _ in _through(shards, position, Job(job.stage), store, make_executor(options)):
        pass


def _kept(records: Iterator[Record], stats: ReadStats, source: PassInput,
          duplicates: RecordWriter | None) -> Iterator[tuple[Record, tuple[int, int] | None]]:
    """The records dedup kept, each with its byte span (JSONL); the removed ones are named in `duplicates`."""
    keep = source.keep
    for ordinal, record in enumerate(records):
        span = (stats.record_start, stats.bytes_read) if stats.file_type == "jsonl" else None
        if keep is None:
            yield record, span
            continue
        if ordinal >= len(keep.indices) or record.index != keep.indices[ordinal]:
            raise InputChanged(f"{source.pool} changed during the run (record {record.location} differs from the "
                               "first read): nothing was written; run again on a file that stays put")
        target = int(keep.decisions.duplicate_of[ordinal])
        if target < 0:
            yield record, span
        elif duplicates is not None:
            duplicates.write(_duplicate_row(record, keep, ordinal, target))


def _duplicate_row(record: Record, keep: KeepMask, ordinal: int, target: int) -> dict[str, Any]:
    """The row `deita dedup` writes to OUT.duplicates.jsonl for a removed record."""
    row: dict[str, Any] = {"index": record.index, "location": record.location}
    record_id = record_id_of(record.raw)
    if record_id is not None:
        row["id"] = record_id
    decisions = keep.decisions
    row.update({"kept_index": int(keep.indices[target]), "kind": "exact" if decisions.exact[ordinal] else "near",
                "similarity": round(float(decisions.similarity[ordinal]), 4),
                "estimated_similarity": round(float(decisions.estimate[ordinal]), 4)})
    return row


def _cleaned(kept: Iterator[tuple[Record, Any]], clean: Callable[[list[Record]], list[bool]],
             size: int) -> Iterator[tuple[Record, Any]]:
    """The kept records that decontamination lets stay, checked in batches."""
    held: list[tuple[Record, Any]] = []

    def flush() -> Iterator[tuple[Record, Any]]:
        verdicts = clean([record for record, _ in held])
        for item, stays in zip(held, verdicts, strict=True):
            if stays:
                yield item
        held.clear()

    for item in kept:
        held.append(item)
        if len(held) == size:
            yield from flush()
    if held:
        yield from flush()


def _shards(records: Iterator[tuple[Record, Any]], jobs: list[Job], size: int, pool: Path,
            policy: RecordPolicy) -> Iterator[Shard]:
    """Consecutive records, `size` at a time, with every job's requests; a record any stage refuses is bad."""
    held: list[tuple[Record, Any, list[list[Any]]]] = []
    index = 0

    def shard() -> Shard:
        spans = [span for _, span, _ in held] if held[0][1] is not None else None
        requests = [[q for _, _, per_job in held for q in per_job[j]] for j in range(len(jobs))]
        counts = [np.array([len(per_job[j]) for _, _, per_job in held], dtype=np.int64) for j in range(len(jobs))]
        return Shard(index, [record for record, _, _ in held], spans, requests, counts)

    for record, span in records:
        try:
            per_job = [job.stage.requests(record) for job in jobs]
        except RecordProblem as problem:
            policy.reject(pool, record.index, record.location, str(problem), record.raw)
            continue
        held.append((record, span, per_job))
        if len(held) == size:
            yield shard()
            index, held = index + 1, []
    if held:
        yield shard()


def _through(shards: Iterator[Shard], position: int, job: Job, store: ShardStore,
             executor: Executor) -> Iterator[Shard]:
    """Run job `position` on every shard (its stored result where there is one), yielding shards in order."""
    held: dict[int, Shard] = {}

    def tasks() -> Iterator[ShardTask]:
        for shard in shards:
            held[shard.index] = shard
            yield shard_task(shard.index, shard.requests[position], shard.counts[position], store)

    ready: dict[int, ShardResult] = {}
    written = 0
    for task, result in executor.run(job.stage, tasks()):
        if result is None:
            result = task.result
            job.summary.resumed_shards += 1
        else:
            if int(result.counts.sum()) != len(result.values):
                raise DeitaError(f"{job.stage.name} shard {task.index}: {len(result.values)} results for "
                                 f"{int(result.counts.sum())} requests")
            store.save(task.key, result)
        ready[task.index] = result
        while written in ready:
            shard = held.pop(written)
            shard.results[position] = ready.pop(written)
            yield shard
            written += 1
    if ready:
        raise DeitaError(f"internal error: {job.stage.name} shards {sorted(ready)} finished but shard {written} "
                         "never did")


def shard_task(index: int, requests: list[Any], counts: np.ndarray, store: ShardStore) -> ShardTask:
    """A shard's task; its stored result is attached when there is a good one."""
    key = shard_key(requests, counts)
    cached = store.load(key) if store.has(key) else None
    if cached is not None and not np.array_equal(cached.counts, counts):
        cached = None
    return ShardTask(index, key, [] if cached is not None else requests, counts, result=cached)


def _emit(shard: Shard, jobs: list[Job], source: PassInput, columns: ColumnsWriter, summary: PassSummary) -> None:
    """A finished shard's rows into the columns and the `.npy` sinks, record by record in input order."""
    per_job = []
    for position, job in enumerate(jobs):
        result = shard.results[position]
        job.summary.shards += 1
        job.summary.records += len(shard.records)
        job.summary.requests += len(result.values)
        for key, value in result.counters.items():
            job.summary.counters[key] = job.summary.counters.get(key, 0) + int(value)
        per_job.append(list(result.per_record()))
    for i, record in enumerate(shard.records):
        fields: dict[str, list[float | None]] = {}
        for position, job in enumerate(jobs):
            rows = per_job[position][i]
            if job.turn_fields is not None:
                fields.update(job.turn_fields(rows))
            if job.rows is not None:
                job.rows.write(record, rows)
        for name in source.extra_fields:
            value = record.raw.get(name)
            record_score([value], (name,), f"{source.pool}, {record.location}")  # refuses what the walk would
            fields[name] = value
        if source.costs is not None:
            source.costs.add(record.raw)
        if source.groups is not None:
            source.groups.add(record.raw)
        span = shard.spans[i] if shard.spans is not None else None
        columns.add_row(record.index, span, {name: value(record) for name, value in RECORD_COLUMNS.items()}, fields)
        summary.rows += 1
