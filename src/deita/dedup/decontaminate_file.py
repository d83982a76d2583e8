"""`deita decontaminate` on a file: drop the records that hold an eval prompt (by shared word n-grams and,
optionally, embedding cosine), write the kept ones untouched and `OUT.contaminated.jsonl`, which names each
removed record, the eval item and the evidence. It decides record by record, so it reads the input once."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deita.data.io import ReadStats, RecordPolicy, RecordWriter, input_size
from deita.data.policy import given_or_own, rejected_line, rejects_path_for
from deita.data.records import Record
from deita.dedup.bigrams import BigramCounts, record_buckets
from deita.dedup.config import DecontaminateConfig
from deita.dedup.normalize import field_messages
from deita.dedup.output import KeptWriter, batches, contaminated_path_for, read_pool, record_id_of
from deita.errors import DeitaError
from deita.runtime.options import RunOptions
from deita.runtime.progress import ProgressBar


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
    rejected_kinds: str = ""
    """The rejects counted by kind ("2 parse, 1 write")."""

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
        return lines + rejected_line(self.rejected, self.rejected_kinds, self.rejects)


def decontaminate_file(input_path: str | Path, output_path: str | Path, config: DecontaminateConfig,
                       options: RunOptions | None = None, policy: RecordPolicy | None = None,
                       embed: Any = None, bigrams_path: Path | None = None) -> DecontaminateReport:
    """Write the records of `input_path` that hold no eval prompt, untouched, to `output_path`, and every
    removed one to `OUT.contaminated.jsonl` with the eval item and the shared words or the cosine; with
    `bigrams_path` (dedup's bigram counts of the pool), the removed records' bigrams are taken out of them.

    `embed` (an EmbedConfig) is the embedder of the paraphrase check (with `config.embedding_threshold`).
    `policy`: what happens to bad records (default: `options.on_error`, rejects beside the output).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    options = options or RunOptions()
    with given_or_own(policy, options, rejects_path_for(output_path)) as policy:
        return _decontaminate(input_path, output_path, config, options, policy, embed, bigrams_path)


def _decontaminate(input_path: Path, output_path: Path, config: DecontaminateConfig, options: RunOptions,
                   policy: RecordPolicy, embed: Any, bigrams_path: Path | None = None) -> DecontaminateReport:
    from deita.dedup.decontaminate import EmbeddingIndex, NgramIndex, read_eval_items

    before = policy.snapshot()
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
    kept = KeptWriter(input_path, output_path, policy)
    bigrams = BigramCounts.load(bigrams_path, writable=True) if bigrams_path is not None else None
    try:
        with RecordWriter(contaminated_path, "jsonl") as removed, \
                ProgressBar("decontaminate", total, quiet=options.quiet, interval=options.progress_interval,
                            total_unit=unit) as bar:
            for batch in batches(read_pool(input_path, options, policy, stats)):
                for record, row in zip(batch, check_batch(batch, stats.format or "", config, index, embedder,
                                                           items), strict=True):
                    if row is None:
                        kept.write(record)
                        continue
                    counts[row["check"]] += 1
                    if bigrams is not None:
                        bigrams.subtract(*record_buckets(record, stats.format or ""))
                    record_id = record_id_of(record.raw)
                    head = {"index": record.index, "location": record.location}
                    removed.write({**head, **({"id": record_id} if record_id is not None else {}), **row})
                bar.advance(len(batch), stats.bytes_read)
        kept.writer.close()
    except BaseException:
        kept.writer.abort()
        raise
    if bigrams is not None and bigrams_path is not None:
        bigrams.save(bigrams_path)
    return DecontaminateReport(stats.records - stats.rejected - kept.unwritable, stats.rejected + kept.unwritable,
                               counts["ngram"], counts["embedding"], index.prompts, len(config.against),
                               index.unchecked, time.perf_counter() - start, output_path, contaminated_path, config,
                               _embedder_name(embedder.config) if embedder is not None else "",
                               policy.path, policy.by_kind(since=before))


def check_batch(batch: list[Record], fmt: str, config: DecontaminateConfig, index: Any, embedder: Any,
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
        for unit, item, value in zip(pending, best.tolist(), similarity.tolist(), strict=True):
            position, number, role, _ = owners[unit]
            if value >= threshold and rows[position] is None:
                rows[position] = {"check": "embedding", "message": number, "role": role,
                                  "similarity": round(float(value), 4), "eval": items[item].describe()}
    return rows


def _embedder_name(embed: Any) -> str:
    if embed.kind == "sentence" and not embed.model:
        return "the packaged all-MiniLM-L6-v2"
    return embed.resolved_model()
