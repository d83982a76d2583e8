"""`deita filter`: pick records from a scored file and its embeddings, write them in selection order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deita.data.io import ReadStats, RecordPolicy, RecordWriter, iter_records, records_at
from deita.data.paths import check_paths, prepare_output
from deita.errors import DeitaError
from deita.selection.config import FilterConfig
from deita.selection.deita import SelectionResult
from deita.selection.embeddings import open_embeddings
from deita.selection.ifd import IFD_KEY, ifd_record_scores
from deita.selection.quota import GroupColumn, Quota, QuotaCounts
from deita.selection.scores import final_scores, resolve_sort_key
from deita.selection.strategies import STRATEGIES, SelectionPool
from deita.selection.tokens import TokenColumn, TokenCounter

CANNOT_SKIP = RecordPolicy.failing(switch=None, who="The filter")
"""A bad record stops the filter: its scores and embedding rows pair with records by position."""


@dataclass
class FilterReport:
    n_pool: int
    n_selected: int
    n_examined: int
    threshold: float
    strategy: str
    seconds: float
    sort_key: tuple[str, ...]
    output: Path
    result: SelectionResult | None = None
    n_unselectable: int = 0
    """Records the strategy could not select (ifd: no turn below --max-ifd)."""
    max_ifd: float | None = None
    aggregate: str = "sum"
    limits: Limits | None = None
    """The token budget and the cap per group, with what they did (None: neither was set)."""

    @property
    def n_near_duplicates(self) -> int:
        """Candidates skipped as too similar to an accepted one (the strategies that walk: deita, ifd)."""
        if self.strategy not in ("deita", "ifd"):
            return 0
        skipped = self.limits.counts.over_budget + self.limits.counts.group_full if self.limits else 0
        return self.n_examined - self.n_selected - skipped

    def stats(self) -> dict:
        """The statistics JSON: counts, and provenance by pool index (positions in the filter's input)."""
        stats = {"n_pool": self.n_pool, "n_selected": self.n_selected, "n_examined": self.n_examined,
                 "n_near_duplicates": self.n_near_duplicates, "threshold": self.threshold,
                 "strategy": self.strategy, "seconds": self.seconds, "sort_key": list(self.sort_key),
                 "output": str(self.output)}
        if self.strategy == "ifd":
            stats.update(max_ifd=self.max_ifd, n_unselectable=self.n_unselectable)
        if self.aggregate != "sum":
            stats["aggregate"] = self.aggregate
        if self.limits is not None:
            stats.update(self.limits.stats())
        if self.result is not None:
            stats["selected"] = self.result.indices.tolist()
            stats["skipped"] = [{"index": int(i), "duplicate_of": int(j), "similarity": round(float(v), 6)}
                                for i, j, v in zip(self.result.skipped, self.result.duplicate_of,
                                                   self.result.similarity, strict=True)]
        return stats

    def lines(self) -> list[str]:
        how = self.strategy
        if self.strategy == "deita":
            how += (f": examined {self.n_examined:,}, skipped {self.n_near_duplicates:,} as near-duplicates at "
                    f"threshold {self.threshold}, ranked by {' × '.join(self.sort_key)}")
        elif self.strategy == "score":
            how += f", ranked by {' × '.join(self.sort_key)}"
        elif self.strategy == "ifd":
            how += (f": examined {self.n_examined:,}, skipped {self.n_near_duplicates:,} as near-duplicates at "
                    f"threshold {self.threshold}, ranked by the mean IFD of the turns below {self.max_ifd}; "
                    f"{self.n_unselectable:,} records have no such turn and were not selectable")
        if self.aggregate != "sum" and self.strategy in ("deita", "score"):
            how += f" ({self.aggregate} over turns)"
        lines = [f"selected {self.n_selected:,} of {self.n_pool:,} records ({how}) in {self.seconds:.3f} s "
                 f"→ {self.output}"]
        return lines + (self.limits.lines() if self.limits is not None else [])


@dataclass
class Limits:
    """The token budget and the cap per group of one filter run, and what they skipped."""

    counts: QuotaCounts
    token_budget: int | None
    tokenizer: str | None
    max_share: float | None
    group_field: str | None
    cap: int | None
    selected_per_group: dict[str, int]

    def stats(self) -> dict:
        stats: dict = {}
        if self.token_budget is not None:
            stats.update(token_budget=self.token_budget, budget_tokenizer=self.tokenizer,
                         tokens_selected=self.counts.tokens, n_over_budget=self.counts.over_budget)
        if self.max_share is not None:
            stats.update(max_share=self.max_share, source_field=self.group_field, group_cap=self.cap,
                         n_group_full=self.counts.group_full, selected_per_group=self.selected_per_group)
        return stats

    def lines(self) -> list[str]:
        lines = []
        if self.token_budget is not None:
            lines.append(f"token budget: the selection holds {self.counts.tokens:,} of {self.token_budget:,} tokens "
                         f"({self.counts.tokens / self.token_budget:.1%}, counted by {self.tokenizer}); "
                         f"{self.counts.over_budget:,} candidates skipped as they would overflow it")
        if self.max_share is not None:
            lines.append(f"max share: at most {self.cap:,} records per value of '{self.group_field}' "
                         f"(floor({self.max_share} × size)); {self.counts.group_full:,} candidates skipped as their "
                         f"group was full; selected from {len(self.selected_per_group):,} "
                         f"group{'s' if len(self.selected_per_group) != 1 else ''}")
        return lines


@dataclass
class Pool:
    """What one read of the scored file gives the filter."""

    size: int
    scores: np.ndarray | None
    """Final scores (strategies that use them; ifd: mean IFD of the kept turns)."""
    selectable: np.ndarray | None
    """Which records the strategy may pick (ifd); None: all."""
    lengths: np.ndarray | None
    """Response lengths (strategy `length`)."""
    sort_key: tuple[str, ...]
    spans: list[tuple[int, int]] | None
    """JSONL: each record's bytes, so the selected ones are fetched without a second read of the file."""
    read: ReadStats
    """The first read: its fingerprint (size, mtime, hash of the bytes) checks the second."""
    costs: np.ndarray | None = None
    """Tokens per record (--token-budget)."""
    groups: GroupColumn | None = None
    """Group ids per record (--max-share)."""


def _read_pool(path: Path, config: FilterConfig, fmt: str | None) -> Pool:
    """Pool size, the column the strategy ranks by (final scores, mean IFD or response lengths), the sort key,
    and, for JSONL, where each record lies in the file."""
    strategy = STRATEGIES[config.strategy]
    sort_key: tuple[str, ...] = (IFD_KEY,) if strategy.ifd else config.sort_key or ()
    lists: list[list] = [[] for _ in sort_key]
    locations: list[str] = []
    lengths: list[int] = []
    spans: list[tuple[int, int]] = []
    count = 0
    stats = ReadStats(reread=True)
    costs, groups = limit_columns(config)
    for record in iter_records(path, fmt=fmt, stats=stats, policy=CANNOT_SKIP):
        if count == 0 and strategy.scores:
            sort_key = resolve_sort_key(config.sort_key, record.raw)
            lists = [[] for _ in sort_key]
        count += 1
        if stats.file_type == "jsonl":
            spans.append((stats.record_start, stats.bytes_read))
        if strategy.scores or strategy.ifd:
            for key, column in zip(sort_key, lists, strict=True):
                column.append(record.raw.get(key))
            locations.append(record.location)
        if strategy.lengths:
            lengths.append(sum(len(t.response) for t in record.turns))
        if costs is not None:
            costs.add(record.raw)
        if groups is not None:
            groups.add(record.raw)
    locations = [f"{path}, {location}" for location in locations]
    scores = selectable = None
    if strategy.scores and count:
        scores = final_scores(lists, sort_key, locations, config.aggregate)
    elif strategy.ifd:
        scores, selectable = ifd_record_scores(lists[0], config.max_ifd, locations)
    return Pool(count, scores, selectable, np.asarray(lengths, dtype=np.float64) if strategy.lengths else None,
                sort_key, spans if stats.file_type == "jsonl" else None, stats,
                costs.array() if costs is not None else None, groups)


def budget_tokenizer(config: FilterConfig) -> str:
    """The tokenizer counting --token-budget: the one given, else the packaged sentence model's (what the
    default embedder reads); `deita select` passes its scorer's or embedder's."""
    if config.budget_tokenizer:
        return config.budget_tokenizer
    from deita.embedding.sentence import default_sentence_model

    return default_sentence_model()


def limit_columns(config: FilterConfig) -> tuple[TokenColumn | None, GroupColumn | None]:
    """Empty columns for the limits the config sets (token costs, group ids), to fill record by record in the
    pass that reads the pool (`.add(raw)`)."""
    costs = TokenColumn(TokenCounter(budget_tokenizer(config))) if config.token_budget is not None else None
    groups = GroupColumn(config.group_field()) if config.max_share is not None else None
    return costs, groups


def quota_for(config: FilterConfig, costs: np.ndarray | None, groups: GroupColumn | None) -> Quota | None:
    """The walk's limits from the config and the pool's columns (None when neither is set)."""
    if costs is None and groups is None:
        return None
    return Quota(costs, config.token_budget, groups.array() if groups is not None else None,
                 config.group_cap() if groups is not None else None)


def limits_of(config: FilterConfig, result: SelectionResult, groups: GroupColumn | None) -> Limits | None:
    """What the budget and the balance did, for the summary and the statistics (`FilterReport.limits`)."""
    if result.quota is None:
        return None
    per_group = groups.count_selected(result.indices) if groups is not None else {}
    return Limits(result.quota, config.token_budget, budget_tokenizer(config) if config.token_budget else None,
                  config.max_share, config.group_field() if config.max_share is not None else None,
                  config.group_cap() if config.max_share is not None else None, per_group)


def _chosen_records(path: Path, pool: Pool, indices: np.ndarray, fmt: str | None) -> list[dict]:
    """The selected records, in selection order: fetched by their bytes (JSONL), else by a second read."""
    if pool.spans is not None:
        return list(records_at(path, (pool.spans[int(i)] for i in indices), expect=pool.read.fingerprint))
    position = {int(index): rank for rank, index in enumerate(indices)}
    chosen: list[dict | None] = [None] * len(indices)
    for ordinal, record in enumerate(iter_records(path, fmt=fmt, stats=pool.read.again(), policy=CANNOT_SKIP)):
        rank = position.get(ordinal)
        if rank is not None:
            chosen[rank] = record.raw
    if any(raw is None for raw in chosen):
        raise DeitaError(f"{path} changed while selecting (fewer records than at the first read)")
    return chosen  # type: ignore[return-value]


def select_indices(config: FilterConfig, n_pool: int, scores: np.ndarray | None, lengths: np.ndarray | None,
                   embeddings: np.ndarray | None, selectable: np.ndarray | None = None,
                   quota: Quota | None = None) -> SelectionResult:
    """Run the configured strategy (`STRATEGIES`): indices in selection order, candidates examined, seconds,
    provenance; under `quota` (token costs and budget, group ids and cap) when given."""
    return STRATEGIES[config.strategy].select(SelectionPool(n_pool, scores, lengths, embeddings, selectable, quota),
                                              config)


def annotations(result: SelectionResult, scores: np.ndarray | None, embeddings: np.ndarray | None) -> list[dict]:
    """Per selected record: rank, pool index, final score, and its nearest other selected record."""
    indices = result.indices
    nearest, similarity = nearest_neighbours(embeddings, indices) if embeddings is not None and len(indices) > 1 \
        else (None, None)
    notes = []
    for rank, index in enumerate(indices):
        note: dict = {"rank": rank + 1, "pool_index": int(index)}
        if scores is not None:
            note["score"] = float(scores[index])
        if nearest is not None:
            note["nearest_selected"] = int(indices[nearest[rank]])
            note["nearest_similarity"] = round(float(similarity[rank]), 6)
        notes.append(note)
    return notes


def nearest_neighbours(embeddings: np.ndarray, indices: np.ndarray, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each of the rows `indices`, the position (in `indices`) of its most similar other row, and the cosine."""
    from deita.selection.tensors import read_rows

    vectors = read_rows(embeddings, indices).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    nearest = np.empty(len(indices), dtype=np.int64)
    best = np.empty(len(indices), dtype=np.float32)
    for lo in range(0, len(indices), block):
        sims = vectors[lo : lo + block] @ vectors.T
        sims[np.arange(len(sims)), np.arange(lo, lo + len(sims))] = -np.inf
        nearest[lo : lo + block] = sims.argmax(axis=1)
        best[lo : lo + block] = sims.max(axis=1)
    return nearest, best


def filter_file(input_path: str | Path, output_path: str | Path, config: FilterConfig,
                embeddings_path: str | Path | None = None, fmt: str | None = None,
                stats_path: str | Path | None = None) -> FilterReport:
    """Select records; the output holds them in selection order, each exactly as read."""
    input_path, output_path = Path(input_path), Path(output_path)
    check_paths({"input": input_path, "--embeddings": embeddings_path},
                {"--output": output_path, "--stats": stats_path})
    if not input_path.exists():
        raise DeitaError(f"{input_path}: no such file or directory")
    prepare_output("--output", output_path)
    if stats_path is not None:
        prepare_output("--stats", stats_path)
    if config.strategy == "ifd" and config.sort_key:
        raise DeitaError(f"--sort-key does not apply to --strategy ifd, which ranks by {IFD_KEY}")
    pool = _read_pool(input_path, config, fmt)
    n_pool, scores, lengths, sort_key = pool.size, pool.scores, pool.lengths, pool.sort_key
    if n_pool == 0:
        raise DeitaError(f"{input_path}: no records to select from")
    embeddings = None
    if STRATEGIES[config.strategy].embeddings:
        if embeddings_path is None:
            raise DeitaError(f"--strategy {config.strategy} needs --embeddings EMB.npy (from `deita embed`)")
        embeddings = open_embeddings(embeddings_path, n_pool, input_path)
    quota = quota_for(config, pool.costs, pool.groups)
    result = select_indices(config, n_pool, scores, lengths, embeddings, pool.selectable, quota)
    indices = result.indices
    chosen = _chosen_records(input_path, pool, indices, fmt)
    notes = annotations(result, scores, embeddings) if config.annotate else None
    with RecordWriter(output_path) as writer:
        for rank, raw in enumerate(chosen):
            writer.write({**raw, "deita": notes[rank]} if notes is not None else raw)
    unselectable = int((~pool.selectable).sum()) if pool.selectable is not None else 0
    report = FilterReport(n_pool, len(indices), result.n_examined, config.threshold, config.strategy,
                          result.seconds, sort_key, output_path, result, unselectable,
                          config.max_ifd if config.strategy == "ifd" else None, config.aggregate,
                          limits_of(config, result, pool.groups))
    if stats_path:
        Path(stats_path).write_text(json.dumps(report.stats(), indent=2) + "\n")
    return report
