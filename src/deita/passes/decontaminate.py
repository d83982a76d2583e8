"""Decontamination inside `select`'s second read: the kept records are checked in batches against the eval
prompts (shared word n-grams, optionally embedding cosine), and each removed one is named in a side file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deita.data.io import RecordWriter
from deita.data.records import Record
from deita.dedup.config import DecontaminateConfig
from deita.dedup.decontaminate import EmbeddingIndex, NgramIndex, read_eval_items
from deita.dedup.decontaminate_file import DecontaminateReport, check_batch
from deita.dedup.output import record_id_of


class Decontamination:
    """The check `compute_columns` calls per batch; counts what it removed and writes `contaminated`."""

    def __init__(self, config: DecontaminateConfig, embed: Any, contaminated: Path, kept: Path) -> None:
        self.config, self.contaminated, self.kept = config, contaminated, kept
        self.items = read_eval_items(config.against)
        self.index = NgramIndex(self.items, config.ngram, config.min_ngram)
        self.embedder = EmbeddingIndex(self.items, embed) if config.embedding_threshold is not None else None
        self.counts = {"ngram": 0, "embedding": 0}
        self.records = 0
        self.writer = RecordWriter(contaminated, "jsonl")
        self.format = ""

    def rows(self, batch: list[Record]) -> list[dict | None]:
        """Per record, None if it holds no eval prompt, else what matched."""
        from deita.data.formats import detect_format

        self.format = self.format or detect_format(batch[0].raw)
        return check_batch(batch, self.format, self.config, self.index, self.embedder, self.items)

    def stays(self, batch: list[Record]) -> list[bool]:
        """Per record, True if it holds no eval prompt (nothing counted or written)."""
        return [row is None for row in self.rows(batch)]

    def check(self, batch: list[Record]) -> list[bool]:
        """Per record, True if it holds no eval prompt; each removed one is counted and named."""
        self.records += len(batch)
        verdicts = []
        for record, row in zip(batch, self.rows(batch), strict=True):
            verdicts.append(row is None)
            if row is not None:
                self.counts[row["check"]] += 1
                record_id = record_id_of(record.raw)
                head = {"index": record.index, "location": record.location}
                self.writer.write({**head, **({"id": record_id} if record_id is not None else {}), **row})
        return verdicts

    def close(self) -> None:
        self.writer.close()

    def report(self) -> DecontaminateReport:
        return DecontaminateReport(self.records, 0, self.counts["ngram"], self.counts["embedding"],
                                   self.index.prompts, len(self.config.against), self.index.unchecked, 0.0,
                                   self.kept, self.contaminated, self.config,
                                   self.embedder.config.resolved_model() if self.embedder is not None else "")

    def lines(self) -> list[str]:
        return [line for line in self.report().lines() if not line.startswith("rejected ")]

    def stats(self) -> dict[str, Any]:
        return self.report().counts()
