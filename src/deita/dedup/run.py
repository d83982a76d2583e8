"""`deita dedup` and `deita decontaminate` on files: stream the records, decide, write the kept records
untouched (in the output's file type) and a JSONL that names every removed record and why.

Dedup reads the input twice. The first pass keeps, per record, a 16-byte exact key and, for near dedup,
one MinHash signature row (numpy arrays, no text) and its shingle hashes (in a temporary file); the
decisions need the whole pool; the second pass writes. Decontamination decides record by record, so it
reads once.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from deita.data.io import (
    ReadStats,
    RecordWriter,
    RejectsWriter,
    UnwritableRecord,
    input_size,
    iter_records,
    rejects_path_for,
)
from deita.data.records import Record
from deita.dedup.config import DecontaminateConfig, DedupConfig
from deita.dedup.exact import exact_duplicates, keys_array, processing_order
from deita.dedup.minhash import (
    ShingleStore,
    lsh_params,
    near_duplicates,
    ngram_hashes,
    signatures,
    word_hashes,
)
from deita.dedup.normalize import compared_texts, field_messages, text_key
from deita.errors import DeitaError, RecordError
from deita.runtime.options import RunOptions
from deita.runtime.progress import ProgressBar

BATCH = 4096
"""Records hashed together: enough to amortise numpy and rensa calls, a few MB of text."""
HELPER_BYTES = 64 << 20
"""Inputs larger than this get a helper process for the signatures (below, starting it costs more)."""
SKIP_HINT = "Use --on-error skip to write bad records to {rejects} and continue"


def duplicates_path_for(output: str | Path) -> Path:
    """`OUT.duplicates.jsonl`: every record dedup removed, the record kept in its place and the similarity."""
    output = Path(output)
    return output.with_name(output.name + ".duplicates.jsonl")


def contaminated_path_for(output: str | Path) -> Path:
    """`OUT.contaminated.jsonl`: every record decontamination removed, the eval item and the evidence."""
    output = Path(output)
    return output.with_name(output.name + ".contaminated.jsonl")


def _read(input_path: Path, output_path: Path, options: RunOptions, rejects: RejectsWriter | None,
          stats: ReadStats) -> Iterator[Record]:
    return iter_records(input_path, fmt=options.format, on_error="skip" if rejects is not None else "fail",
                        rejects=rejects, pairing=options.pairing, stats=stats,
                        rejects_hint=rejects_path_for(output_path))


def _batches(records: Iterator[Record], size: int = BATCH) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _KeptWriter:
    """The kept records into OUT; a record OUT's file type cannot hold is a bad record like any other."""

    def __init__(self, input_path: Path, output_path: Path, rejects: RejectsWriter | None) -> None:
        self.input_path, self.rejects = input_path, rejects
        self.writer = RecordWriter(output_path)
        self.unwritable = 0

    def write(self, record: Record) -> None:
        try:
            self.writer.write(record.raw)
        except UnwritableRecord as err:
            problem = f"cannot write to {self.writer.file_type}: {err}"
            if self.rejects is None:
                raise RecordError(self.input_path, record.location, problem,
                                  hint=SKIP_HINT.format(rejects=rejects_path_for(self.writer.path))) from err
            self.rejects.add(record.index, record.location, problem, record.raw)
            self.unwritable += 1


def _record_id(raw: dict) -> Any:
    value = raw.get("id", raw.get("question_id"))
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- dedup


@dataclass
class PoolHashes:
    """What the first pass keeps per good record, in file order: no text, a few hundred bytes a record."""

    indices: np.ndarray  # int64: the record's index in the file (rejected records count)
    keys: np.ndarray  # (n, 2) uint64: 128-bit hash of the normalised text
    lengths: np.ndarray  # int64: characters of the compared text (for keep=longest)
    signatures: np.ndarray | None  # (n, num_perm) uint32, for near dedup


def hash_batch(shingle_texts: list[str], ngram: int, num_perm: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(MinHash signatures (texts, num_perm) uint32, shingle hashes' low 32 bits, per-text offsets) of texts
    prepared by `normalize.compared_texts`."""
    shingles = ngram_hashes(word_hashes(shingle_texts), ngram)
    return (signatures(shingles.hashes, shingles.offsets, num_perm), shingles.hashes.astype(np.uint32),
            shingles.offsets)


def hash_pool(records: Iterator[Record], stats: ReadStats, config: DedupConfig,
              progress: ProgressBar | None = None, helper: bool = False,
              store: ShingleStore | None = None, batch_size: int = BATCH) -> PoolHashes:
    """First pass: exact keys, lengths and (for near dedup) signatures of every record, and its shingles
    into `store`.

    With `helper`, a second process hashes one batch while this one reads and normalises the next (two
    cores: the two halves of the work cost about the same). The result does not depend on it: every hash is
    a fixed function of the text.
    """
    indices, keys, lengths, sigs = [], [], [], []
    pending: deque[tuple[Future, list[str]]] = deque()
    executor = ProcessPoolExecutor(1, mp_context=get_context("spawn")) if helper and config.near and \
        _can_spawn() else None

    def done(result: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        sigs.append(result[0])
        if store is not None:
            store.add(result[1], result[2])

    try:
        for batch in _batches(records, batch_size):
            texts = []
            batch_keys = []
            for record in batch:
                messages = field_messages(record, stats.format or "", config.field)
                exact, shingle = compared_texts(messages)
                batch_keys.append(text_key(exact))
                texts.append(shingle)
                lengths.append(sum(len(text) for _, text in messages))
                indices.append(record.index)
            keys.append(keys_array(batch_keys))
            if executor is not None:
                pending.append((executor.submit(hash_batch, texts, config.ngram, config.num_perm), texts))
                while len(pending) > 2:
                    done(_result(*pending.popleft(), config))
            elif config.near:
                done(hash_batch(texts, config.ngram, config.num_perm))
            if progress is not None:
                progress.advance(len(batch), stats.bytes_read)
        while pending:
            done(_result(*pending.popleft(), config))
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return PoolHashes(np.asarray(indices, dtype=np.int64), _stack(keys, 2, np.uint64),
                      np.asarray(lengths, dtype=np.int64),
                      _stack(sigs, config.num_perm, np.uint32) if config.near else None)


def _stack(chunks: list[np.ndarray], width: int, dtype: type) -> np.ndarray:
    """The chunks as one array, each chunk freed as soon as it is copied: peak memory is the result and one
    chunk, not twice the result (as np.concatenate would need)."""
    out = np.empty((sum(len(chunk) for chunk in chunks), width), dtype=dtype)
    position = 0
    chunks.reverse()
    while chunks:
        chunk = chunks.pop()
        out[position:position + len(chunk)] = chunk
        position += len(chunk)
    return out


def _can_spawn() -> bool:
    """A spawned process re-imports the main script: impossible for a script read from stdin."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or Path(main_file).exists()


def _result(future: Future, texts: list[str], config: DedupConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The helper's result, or the same computed here if the helper died (killed, out of memory)."""
    try:
        return future.result()
    except BrokenProcessPool:
        return hash_batch(texts, config.ngram, config.num_perm)


@dataclass
class Decisions:
    """Per good record (file order): -1 if kept, else the ordinal of the record kept in its place."""

    duplicate_of: np.ndarray
    similarity: np.ndarray  # float32: Jaccard with the kept record (1.0 for exact duplicates)
    estimate: np.ndarray  # float32: its MinHash estimate (1.0 for exact duplicates)
    exact: np.ndarray  # bool: removed as an exact duplicate
    bands: int = 0
    rows: int = 0
    compared: int = 0
    verified: int = 0


def decide(pool: PoolHashes, config: DedupConfig, store: ShingleStore | None = None) -> Decisions:
    """Exact duplicates first, then near-duplicates among the records exact dedup kept. Every removed record
    names a record that stays."""
    count = len(pool.indices)
    order = processing_order(pool.lengths, config.keep)
    duplicate_of = np.full(count, -1, dtype=np.int64)
    similarity = np.zeros(count, dtype=np.float32)
    if config.exact:
        duplicate_of = exact_duplicates(pool.keys, order)
        similarity[duplicate_of >= 0] = 1.0
    exact = duplicate_of >= 0
    decisions = Decisions(duplicate_of, similarity, similarity.copy(), exact)
    if config.near and pool.signatures is not None and count:
        bands, rows = lsh_params(config.threshold, config.num_perm)
        near = near_duplicates(pool.signatures, order, config.threshold, bands, rows, active=~exact, store=store)
        removed = near.duplicate_of >= 0
        duplicate_of[removed] = near.duplicate_of[removed]
        similarity[removed] = near.similarity[removed]
        decisions.estimate[removed] = near.estimate[removed]
        decisions.bands, decisions.rows = bands, rows
        decisions.compared, decisions.verified = near.compared, near.verified
        # an exact group whose kept record went as a near-duplicate of another record: the whole group goes
        # in favour of that record, with its similarity
        moved = exact & (duplicate_of >= 0)
        moved[moved] = duplicate_of[duplicate_of[moved]] >= 0
        targets = duplicate_of[moved]
        duplicate_of[moved] = duplicate_of[targets]
        similarity[moved], decisions.estimate[moved] = similarity[targets], decisions.estimate[targets]
        exact[moved] = False
    return decisions


@dataclass
class DedupReport:
    records: int
    rejected: int
    exact: int
    near: int
    seconds: float
    output: Path
    duplicates: Path
    config: DedupConfig
    bands: int = 0
    rows: int = 0
    compared: int = 0
    verified: int = 0
    rejects: Path | None = None

    @property
    def kept(self) -> int:
        return self.records - self.exact - self.near

    def counts(self) -> dict[str, Any]:
        """The figures a manifest or report keeps."""
        return {"records": self.records, "rejected": self.rejected, "exact_duplicates": self.exact,
                "near_duplicates": self.near, "kept": self.kept, "threshold": self.config.threshold,
                "ngram": self.config.ngram, "num_perm": self.config.num_perm, "field": self.config.field,
                "keep": self.config.keep, "candidate_pairs": self.compared, "verified_pairs": self.verified,
                "output": str(self.output), "duplicates": str(self.duplicates)}

    def lines(self) -> list[str]:
        what = "every message" if self.config.field == "all" else "the first instruction"
        methods = []
        if self.config.exact:
            methods.append(f"{self.exact:,} exact")
        if self.config.near:
            methods.append(f"{self.near:,} near (Jaccard ≥ {self.config.threshold} of word {self.config.ngram}-gram "
                           f"shingles: MinHash {self.config.num_perm}, LSH {self.bands}×{self.rows}, "
                           f"{self.verified:,} of {self.compared:,} candidate pairs verified exactly)")
        summary = (f"dedup: kept {self.kept:,} of {self.records:,} records → {self.output}; removed "
                 f"{' and '.join(methods)} duplicates of {what}, keeping the {self.config.keep} of each group "
                 f"→ {self.duplicates} ({self.seconds:,.1f} s)")
        lines = [summary]
        if self.rejected:
            lines.append(f"rejected {self.rejected:,} records → {self.rejects}")
        return lines


def dedup_file(input_path: str | Path, output_path: str | Path, config: DedupConfig,
               options: RunOptions | None = None, rejects: RejectsWriter | None = None) -> DedupReport:
    """Write the records of `input_path` that are not duplicates of a kept one, untouched, to `output_path`,
    and every removed one to `OUT.duplicates.jsonl` (index, id, the index of the record kept in its place,
    estimated similarity, exact or near)."""
    input_path, output_path = Path(input_path), Path(output_path)
    options = options or RunOptions()
    start = time.perf_counter()
    stats = ReadStats()
    total, unit = input_size(input_path)
    helper = unit == "bytes" and total > HELPER_BYTES or unit == "rows" and total > 50_000
    store = ShingleStore(output_path.with_name(f".{output_path.name}.shingles.tmp")) if config.near else None
    try:
        with ProgressBar("dedup: hashing", total, quiet=options.quiet, interval=options.progress_interval,
                         total_unit=unit) as bar:
            pool = hash_pool(_read(input_path, output_path, options, rejects, stats), stats, config, bar, helper,
                             store)
        if store is not None:
            store.finish()
        decisions = decide(pool, config, store)
    finally:
        if store is not None:
            store.close()
    duplicates = duplicates_path_for(output_path)
    with ProgressBar("dedup: writing", total, quiet=options.quiet, interval=options.progress_interval,
                     total_unit=unit) as bar:
        unwritable = _write_dedup(input_path, output_path, duplicates, pool, decisions, stats, options, rejects,
                                  bar)
    removed = decisions.duplicate_of >= 0
    return DedupReport(len(pool.indices) - unwritable, stats.rejected + unwritable,
                       int((removed & decisions.exact).sum()), int((removed & ~decisions.exact).sum()),
                       time.perf_counter() - start, output_path, duplicates, config, decisions.bands,
                       decisions.rows, decisions.compared, decisions.verified,
                       rejects.path if rejects is not None else None)


def _write_dedup(input_path: Path, output_path: Path, duplicates_path: Path, pool: PoolHashes,
                 decisions: Decisions, stats: ReadStats, options: RunOptions, rejects: RejectsWriter | None,
                 bar: ProgressBar) -> int:
    """Second pass: kept records to OUT, removed ones to OUT.duplicates.jsonl; returns unwritable records."""
    again = ReadStats()
    count = len(pool.indices)
    ordinal = 0
    kept = _KeptWriter(input_path, output_path, rejects)
    try:
        with RecordWriter(duplicates_path, "jsonl") as removed:
            for ordinal, record in enumerate(iter_records(input_path, fmt=stats.format, on_error="skip",
                                                          pairing=options.pairing, stats=again)):
                if ordinal >= count or record.index != pool.indices[ordinal]:
                    raise DeitaError(f"{input_path} changed while deduplicating (record {record.location} "
                                     "differs from the first read); run again")
                target = int(decisions.duplicate_of[ordinal])
                if target < 0:
                    kept.write(record)
                else:
                    row = {"index": record.index, "location": record.location}
                    record_id = _record_id(record.raw)
                    if record_id is not None:
                        row["id"] = record_id
                    row.update({"kept_index": int(pool.indices[target]),
                                "kind": "exact" if decisions.exact[ordinal] else "near",
                                "similarity": round(float(decisions.similarity[ordinal]), 4),
                                "estimated_similarity": round(float(decisions.estimate[ordinal]), 4)})
                    removed.write(row)
                if (ordinal + 1) % BATCH == 0:
                    bar.advance(BATCH, again.bytes_read)
            if again.records - again.rejected != count:
                raise DeitaError(f"{input_path} changed while deduplicating ({count:,} good records at the first "
                                 f"read, {again.records - again.rejected:,} now); run again")
        kept.writer.close()
    except BaseException:
        kept.writer.abort()
        raise
    return kept.unwritable


# ---------------------------------------------------------------- decontamination


@dataclass
class DecontaminateReport:
    records: int
    rejected: int
    by_ngram: int
    by_embedding: int
    prompts: int
    files: int
    unchecked_prompts: int
    seconds: float
    output: Path
    contaminated: Path
    config: DecontaminateConfig
    embedder: str = ""
    rejects: Path | None = None

    @property
    def kept(self) -> int:
        return self.records - self.by_ngram - self.by_embedding

    def counts(self) -> dict[str, Any]:
        """The figures a manifest or report keeps."""
        return {"records": self.records, "rejected": self.rejected, "contaminated_ngram": self.by_ngram,
                "contaminated_embedding": self.by_embedding, "kept": self.kept, "eval_prompts": self.prompts,
                "eval_files": list(self.config.against), "ngram": self.config.ngram, "field": self.config.field,
                "embedding_threshold": self.config.embedding_threshold, "output": str(self.output),
                "contaminated": str(self.contaminated)}

    def lines(self) -> list[str]:
        what = "any message" if self.config.field == "all" else "the first instruction"
        how = f"{self.by_ngram:,} by a shared run of {self.config.ngram} words"
        if self.config.embedding_threshold is not None:
            how += f", {self.by_embedding:,} by cosine ≥ {self.config.embedding_threshold} ({self.embedder})"
        summary = (f"decontaminate: kept {self.kept:,} of {self.records:,} records → {self.output}; removed "
                 f"{self.by_ngram + self.by_embedding:,} where {what} matches one of {self.prompts:,} eval prompts "
                 f"from {self.files} file{'s' if self.files != 1 else ''} ({how}) → {self.contaminated} "
                 f"({self.seconds:,.1f} s)")
        lines = [summary]
        if self.unchecked_prompts and self.config.embedding_threshold is None:
            lines.append(f"note: {self.unchecked_prompts:,} eval prompts have fewer than {self.config.min_ngram} "
                         "words: no n-gram test covers them (--embedding-threshold does)")
        if self.rejected:
            lines.append(f"rejected {self.rejected:,} records → {self.rejects}")
        return lines


def decontaminate_file(input_path: str | Path, output_path: str | Path, config: DecontaminateConfig,
                       options: RunOptions | None = None, rejects: RejectsWriter | None = None,
                       embed: Any = None) -> DecontaminateReport:
    """Write the records of `input_path` that hold no eval prompt, untouched, to `output_path`, and every
    removed one to `OUT.contaminated.jsonl` with the eval item and the shared words or the cosine.

    `embed` (an EmbedConfig) is the embedder of the paraphrase check (with `config.embedding_threshold`).
    """
    from deita.dedup.decontaminate import EmbeddingIndex, NgramIndex, read_eval_items

    input_path, output_path = Path(input_path), Path(output_path)
    options = options or RunOptions()
    start = time.perf_counter()
    if not config.against:
        raise DeitaError("decontaminate: no eval files (give --against EVAL [EVAL …])")
    items = read_eval_items(config.against)
    index = NgramIndex(items, config.ngram, config.min_ngram)
    embedder = None
    if config.embedding_threshold is not None:
        from deita.embedding.embedder import EmbedConfig

        embed = embed if embed is not None else EmbedConfig()
        embedder = EmbeddingIndex(items, embed)
    stats = ReadStats()
    contaminated_path = contaminated_path_for(output_path)
    counts = {"ngram": 0, "embedding": 0}
    total, unit = input_size(input_path)
    kept = _KeptWriter(input_path, output_path, rejects)
    try:
        with RecordWriter(contaminated_path, "jsonl") as removed, \
                ProgressBar("decontaminate", total, quiet=options.quiet, interval=options.progress_interval,
                            total_unit=unit) as bar:
            for batch in _batches(_read(input_path, output_path, options, rejects, stats)):
                for record, row in zip(batch, _check_batch(batch, stats.format or "", config, index, embedder,
                                                           items)):
                    if row is None:
                        kept.write(record)
                        continue
                    counts[row["check"]] += 1
                    record_id = _record_id(record.raw)
                    head = {"index": record.index, "location": record.location}
                    removed.write({**head, **({"id": record_id} if record_id is not None else {}), **row})
                bar.advance(len(batch), stats.bytes_read)
        kept.writer.close()
    except BaseException:
        kept.writer.abort()
        raise
    return DecontaminateReport(stats.records - stats.rejected - kept.unwritable, stats.rejected + kept.unwritable,
                               counts["ngram"], counts["embedding"], index.prompts, len(config.against),
                               index.unchecked, time.perf_counter() - start, output_path, contaminated_path, config,
                               _embedder_name(embedder.config) if embedder is not None else "",
                               rejects.path if rejects is not None else None)


def _check_batch(batch: list[Record], fmt: str, config: DecontaminateConfig, index: Any, embedder: Any,
                 items: list) -> list[dict | None]:
    """For each record: None if clean, else what its contaminated message matched."""
    from deita.dedup.normalize import normalize, words_text

    owners: list[tuple[int, int, str, str]] = []  # (record in batch, message number, role, raw text)
    for position, record in enumerate(batch):
        for number, (role, text) in enumerate(field_messages(record, fmt, config.field), 1):
            owners.append((position, number, role, text))
    hits = index.find([words_text(normalize(text)) for _, _, _, text in owners])
    rows: list[dict | None] = [None] * len(batch)
    for unit in sorted(hits):
        position, number, role, _ = owners[unit]
        if rows[position] is None:
            hit = hits[unit]
            rows[position] = {"check": "ngram", "message": number, "role": role, "ngram": hit.ngram,
                              "eval": items[hit.item].describe()}
    if embedder is not None:
        pending = [unit for unit, owner in enumerate(owners) if rows[owner[0]] is None]
        best, similarity = embedder.best([owners[unit][3] for unit in pending])
        threshold = config.embedding_threshold
        for unit, item, value in zip(pending, best.tolist(), similarity.tolist()):
            position, number, role, _ = owners[unit]
            if value >= threshold and rows[position] is None:
                rows[position] = {"check": "embedding", "message": number, "role": role,
                                  "similarity": round(float(value), 4), "eval": items[item].describe()}
    return rows


def _embedder_name(embed: Any) -> str:
    if embed.kind == "sentence" and not embed.model:
        return "the packaged all-MiniLM-L6-v2"
    return embed.resolved_model()
