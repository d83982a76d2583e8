"""Running a stage over a file: pass 1 fills the shard cache (resumable), pass 2 streams results out."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deita.data.io import ReadStats, RejectsWriter, count_records, iter_records, rejects_path_for
from deita.data.records import Record
from deita.errors import DeitaError
from deita.runtime.progress import ProgressBar
from deita.runtime.shards import (
    Executor,
    LocalExecutor,
    RunSummary,
    ShardStore,
    compute_shards,
    content_digest,
)
from deita.runtime.stage import Stage

log = logging.getLogger(__name__)
EXECUTORS = ("local", "ray")
ON_ERROR = ("fail", "skip")


@dataclass(frozen=True)
class RunOptions:
    """How a stage runs, whatever the stage: input reading, sharding, caching, executor."""

    format: str | None = None
    """Input format (sharegpt, alpaca, messages); detected from the records when not given."""
    pairing: str = "role"
    """Turn pairing: role (correct) or positional (only to reproduce the old toolkit's scores)."""
    on_error: str = "fail"
    """fail: stop at the first bad record; skip: write bad records to <output>.rejects.jsonl and go on."""
    shard_size: int = 1024
    """Records per shard: the unit of persisted progress and of work handed to a worker."""
    cache_dir: str | None = None
    """Where finished shards are kept (default: <output>.cache/)."""
    executor: str = "local"
    """local (this process) or ray (Ray Data actors across GPUs and nodes)."""
    ray_address: str | None = None
    """Ray cluster to join ('auto' for a running one); default starts a local cluster."""
    num_workers: int | None = None
    """Ray workers (default: one per GPU, else one per 2 CPU cores)."""
    quiet: bool = False

    def validate(self) -> None:
        if self.on_error not in ON_ERROR:
            raise DeitaError(f"--on-error must be one of {', '.join(ON_ERROR)}, not '{self.on_error}'")
        if self.executor not in EXECUTORS:
            raise DeitaError(f"--executor must be one of {', '.join(EXECUTORS)}, not '{self.executor}'")
        if self.shard_size < 1:
            raise DeitaError("--shard-size must be at least 1")


def make_executor(options: RunOptions) -> Executor:
    if options.executor == "local":
        return LocalExecutor()
    from deita.runtime.ray import RayExecutor

    return RayExecutor(address=options.ray_address, num_workers=options.num_workers)


@dataclass
class StageRun:
    """A stage's cached results over one input, ready to be merged into the output."""

    stage: Stage
    input: Path
    output: Path
    options: RunOptions
    store: ShardStore
    summary: RunSummary
    read: ReadStats
    seconds: float
    rejects: Path | None = None

    def _reread(self) -> Iterator[Record]:
        """The good records again, in order; with --on-error skip the bad ones go to the rejects file."""
        reject_file = rejects_path_for(self.output) if self.options.on_error == "skip" else None
        writer = RejectsWriter(reject_file) if reject_file else None
        try:
            yield from iter_records(self.input, fmt=self.options.format, on_error=self.options.on_error,
                                    rejects=writer, pairing=self.options.pairing)
        finally:
            if writer is not None:
                writer.close()
        if writer is not None and writer.count:
            self.rejects = reject_file

    def records_with_results(self) -> Iterator[tuple[Record, object]]:
        """Pass 2: each good record with its result rows (and the rejects file written on the way)."""
        records = self._reread()
        for index in range(self.summary.shards):
            for rows in self.store.load(index).per_record():
                yield next(records), rows
        if next(records, None) is not None:
            raise DeitaError(f"{self.input} changed during the run (more records than cached results)")

    def write_rejects(self) -> Path | None:
        """Write the rejects file without touching the results (for stages whose output is not records)."""
        for _ in self._reread():
            pass
        return self.rejects


def run_stage(stage: Stage, input_path: str | Path, output_path: str | Path, options: RunOptions,
              description: str) -> StageRun:
    """Pass 1: compute every missing shard of the input; resumes from the cache of an interrupted run."""
    options.validate()
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise DeitaError(f"{input_path}: no such file or directory")
    fingerprint = {"input": content_digest(input_path), "format": options.format, "pairing": options.pairing,
                   "on_error": options.on_error, "shard_size": options.shard_size, **stage.fingerprint()}
    cache_root = Path(options.cache_dir) if options.cache_dir else output_path.with_name(output_path.name + ".cache")
    store = ShardStore(cache_root / stage.name, fingerprint)
    read = ReadStats()
    records = iter_records(input_path, fmt=options.format, on_error=options.on_error, pairing=options.pairing,
                           stats=read, rejects_hint=rejects_path_for(output_path))
    with ProgressBar(description, total=count_records(input_path), quiet=options.quiet) as bar:
        summary = compute_shards(stage, records, store, options.shard_size, make_executor(options), bar)
    if summary.records == 0:
        raise DeitaError(f"{input_path}: no usable records ({read.rejected} rejected)")
    if summary.resumed_shards:
        log.info("resumed: %d of %d shards were already done in %s", summary.resumed_shards, summary.shards,
                 store.directory)
    return StageRun(stage, input_path, output_path, options, store, summary, read, bar.seconds)
