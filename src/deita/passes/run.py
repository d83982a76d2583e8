"""`deita select`'s two reads of the pool: dedup's keep mask, then every per-record column of the kept
records; finished columns are reused by a rerun with the same pool and settings."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deita.data import atomic
from deita.data.policy import RecordPolicy, rejected_line
from deita.data.source import Fingerprint
from deita.embedding.embedder import EmbedStage
from deita.embedding.run import EmbedReport
from deita.errors import DeitaError
from deita.passes.columns import ColumnsWriter, read_marker
from deita.passes.compute import Job, PassInput, PassSummary, TurnFields, compute_columns
from deita.passes.keep import KeepMask, KeptBigrams, hash_and_decide
from deita.passes.limits import add_limit_columns, only_limits_differ
from deita.runtime.sinks import ArraySink
from deita.runtime.stage import Stage
from deita.scoring.lengths import LENGTH_FIELDS, LengthStage, length_fields
from deita.scoring.run import ScoreReport, score_field, score_fields, score_stage
from deita.scoring.scorer import ScoreConfig
from deita.select_config import SelectConfig
from deita.selection.run import budget_tokenizer, limit_columns

if TYPE_CHECKING:
    from deita.workflow import SelectPaths

COLUMNS = "columns"
LAYOUT = 3
"""The columns' file layout (3: the reads' fingerprint holds the pool's sha256); a run that finds another one
computes them again."""
EMBEDDINGS = "embeddings.npy"
BIGRAM_COUNTS = "bigram_counts.npy"
"""The kept records' word-bigram counts for the offline signals: made in read 1, removed once the columns
are finished."""


@dataclass(frozen=True)
class Planned:
    """One stage of the pass: what it is for (its summary lines), the stage, and the fields it adds (None: one
    `.npy` row per record)."""

    kind: str  # "lengths", "score" or "embed"
    stage: Stage | None
    """None until what it needs is there (the signals scorer: the kept records' bigram counts)."""
    fields: TurnFields | None
    scorer: ScoreConfig | None = None


def pass_plan(config: SelectConfig, counts: Path | None = None) -> list[Planned]:
    """The pass's stages, in the order the staged path added fields: length scores (where a role has no
    scorer), each role's scorer and the IFD scorer (the stage `deita score` runs for its type), then the
    embedder."""
    plan = [Planned("lengths", LengthStage(), length_fields)] if config.length_scored() else []
    plan += [Planned("score", score_stage(scorer, counts) if scorer.type != "signals" or counts else None,
                     score_fields(scorer), scorer) for scorer in config.pass_scorers()]
    return [*plan, Planned("embed", EmbedStage(config.embed), None)]


def pass_jobs(plan: list[Planned], config: SelectConfig, embeddings: Path) -> list[Job]:
    """Each stage with where its rows go: the fields it adds (as `deita score` adds them), or the `.npy`."""
    return [Job(planned.stage, planned.fields) if planned.fields is not None else
            Job(planned.stage, rows=ArraySink(embeddings, config.embed.output_dtype())) for planned in plan]


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def limit_settings(config: SelectConfig) -> dict[str, str | None]:
    """What decides the limit columns: the budget's tokenizer and the field --max-share balances (not the
    budget or the share themselves, which only the walk reads)."""
    filter_config = config.filter
    return {"budget_tokenizer": budget_tokenizer(filter_config) if filter_config.token_budget is not None else None,
            "group_field": filter_config.group_field() if filter_config.max_share is not None else None}


def pass_fingerprint(pool: Path, config: SelectConfig, plan: list[Planned], extra: tuple[str, ...]) -> dict[str, Any]:
    """What decides the columns: the pool (path, size, time) and every setting of the two reads."""
    stat = pool.stat()
    run = config.run
    return _plain({"pool": {"path": str(pool.resolve()), "identity": [stat.st_size, stat.st_mtime_ns]},
                   "settings": {"layout": LAYOUT, "dedup": dataclasses.asdict(config.dedup),
                                "decontaminate": dataclasses.asdict(config.decontaminate),
                                "format": run.format, "pairing": run.pairing, "on_error": run.on_error,
                                "stages": [planned.stage.fingerprint() if planned.stage is not None else
                                           {"scorer": dataclasses.asdict(planned.scorer)} for planned in plan],
                                "extra_fields": extra, "limits": limit_settings(config)}})


def run_pass(pool: Path, paths: SelectPaths, config: SelectConfig, policy: RecordPolicy) -> dict[str, Any]:
    """The columns of `pool` under `paths.work` (computed, or reused when finished with the same settings);
    returns what the run reports: summary lines, funnel, counts and seconds."""
    directory = paths.work / COLUMNS
    embeddings = paths.work / EMBEDDINGS
    computed_fields = {*_computed(config)}
    extra = tuple(key for key in config.sort_key() if key not in computed_fields)
    plan = pass_plan(config)
    fingerprint = pass_fingerprint(pool, config, plan, extra)
    found = read_marker(directory)
    if found is not None and embeddings.exists():
        reuse = None
        if {k: found.get(k) for k in fingerprint} == fingerprint:
            reuse = f"reused the finished columns in {directory}"
        elif only_limits_differ(found, fingerprint):
            read = add_limit_columns(pool, directory, config, fingerprint)
            reuse = (f"reused the finished columns in {directory}; read the pool once more for the limit columns "
                     f"({read:,} records)")
        if reuse is not None:
            replay_rejects(paths.rejects, policy, int(found["result"]["rejected"]))
            return {**found["result"], "lines": [*found["result"]["lines"], reuse]}
    directory.joinpath("columns.json").unlink(missing_ok=True)  # columns being rewritten are not finished
    run = dataclasses.replace(config.run, cache_dir=config.run.cache_dir or str(paths.work / "cache"))
    clean = None
    try:
        signals = any(planned.stage is None for planned in plan)  # the offline signals: the kept records' bigrams
        bigrams = KeptBigrams(atomic.temp_path(paths.work / "bigrams")) if signals and config.dedup.enabled \
            else None
        try:
            keep = hash_and_decide(pool, config.dedup, run, policy, atomic.temp_path(paths.work / "shingles"),
                                   bigrams) if config.dedup.enabled else None
            first = keep.fingerprint if keep is not None else None
            counts = paths.work / BIGRAM_COUNTS
            if bigrams is not None and keep is not None:
                bigrams.save_kept(keep.keep, counts)
            elif signals:  # no dedup read: one of its own, the first
                first = count_kept_bigrams(pool, keep, run, counts)
        finally:
            if bigrams is not None:
                bigrams.close()
        if signals:
            plan = pass_plan(config, counts)
        jobs = pass_jobs(plan, config, embeddings)
        clean = _decontamination(config, paths) if config.decontaminate.against else None
        costs, groups = limit_columns(config.filter)
        source = PassInput(pool, keep, policy,
                           duplicates=paths.work / "duplicates.jsonl" if keep is not None else None,
                           extra_fields=extra, clean=clean.check if clean is not None else None,
                           stays=clean.stays if clean is not None else None, costs=costs, groups=groups,
                           expect=first)
        columns = ColumnsWriter(directory)
        summary = compute_columns(source, jobs, run, Path(run.cache_dir), columns)
    finally:
        if clean is not None:
            clean.close()
    result = _result(config, paths, plan, jobs, keep, clean, summary, policy)
    columns.finish({**fingerprint, "read": _plain(dataclasses.asdict(summary.fingerprint))
                    if summary.fingerprint is not None else None, "result": result})
    if not config.run.cache_dir:  # the columns are the cache now: keep each array once
        shutil.rmtree(paths.work / "cache", ignore_errors=True)
    # the signals' bigram table (16 MB whatever the pool) served read 2 only; a rerun counts it again in read 1
    (paths.work / BIGRAM_COUNTS).unlink(missing_ok=True)
    return result


def count_kept_bigrams(pool: Path, keep: KeepMask | None, run: Any, path: Path) -> Fingerprint | None:
    """The word-bigram counts of the records dedup kept (the offline signals' fluency model), in one more read
    of the pool; only a run with the signals scorer makes it. Returns the read's fingerprint (without dedup
    this is the first read), which the later reads must find again."""
    from deita.data.io import ReadStats, iter_records
    from deita.dedup.bigrams import BigramCounts, record_buckets
    from deita.passes.fetch import already_counted

    counts = BigramCounts()
    stats = ReadStats(expect=keep.fingerprint) if keep is not None else ReadStats(reread=True)
    for ordinal, record in enumerate(iter_records(pool, fmt=run.format, policy=already_counted(),
                                                  pairing=run.pairing, stats=stats)):
        if keep is None or keep.keep[ordinal]:
            counts.add(*record_buckets(record, stats.format or ""))
    counts.save(path)
    return stats.expect or stats.fingerprint


def replay_rejects(path: Path, policy: RecordPolicy, count: int) -> None:
    """A rerun that reuses finished columns reads no record: the rejects the run that computed them set aside
    go through this run's policy again, from its rejects file, so the file and the counts describe this run."""
    if not count:
        return
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError) as err:
        raise DeitaError(f"{path}: the rejects of the finished columns are unreadable ({err}); delete "
                         f"{path.with_name(path.name.replace('.rejects.jsonl', '.work'))} and run again") from None
    for row in rows:
        policy.set_aside(row["index"], row["location"], row["kind"], row["reason"], row["record"])


def _computed(config: SelectConfig) -> list[str]:
    fields = list(LENGTH_FIELDS) if config.length_scored() else []
    return fields + [score_field(scorer) for scorer in config.pass_scorers()]


def _decontamination(config: SelectConfig, paths: SelectPaths):
    from deita.passes.decontaminate import Decontamination

    return Decontamination(config.decontaminate, config.embed, paths.work / "contaminated.jsonl",
                           paths.work / COLUMNS)


def _result(config: SelectConfig, paths: SelectPaths, plan: list[Planned], jobs: list[Job], keep: KeepMask | None,
            clean: Any, summary: PassSummary, policy: RecordPolicy) -> dict[str, Any]:
    """The summary lines, funnel and counts of the pass (kept in the columns' marker for a rerun)."""
    from deita.dedup.run import DedupReport
    from deita.workflow import offline_length_lines

    lines: list[str] = []
    records = keep.records if keep is not None else summary.records
    rejected = policy.count
    removed: dict[str, int] = {}
    details: dict[str, int] = {}
    seconds: dict[str, float] = {}
    clean_stats: dict[str, Any] = {}
    if keep is not None:
        d = keep.decisions
        report = DedupReport(len(keep.indices), keep.rejected, keep.exact, keep.near, keep.seconds,
                             paths.work / COLUMNS, paths.work / "duplicates.jsonl", config.dedup, d.bands, d.rows,
                             d.compared, d.verified)
        lines.append(report.lines()[0])
        removed["removed as duplicates"] = keep.exact + keep.near
        details.update(exact_duplicates=keep.exact, near_duplicates=keep.near)
        seconds["dedup"] = keep.seconds
        clean_stats["dedup"] = report.counts()
    if clean is not None:
        removed["removed as contaminated"] = clean.counts["ngram"] + clean.counts["embedding"]
        details.update(contaminated_ngram=clean.counts["ngram"], contaminated_embedding=clean.counts["embedding"])
        lines += clean.lines()
        clean_stats["decontaminate"] = clean.stats()
    truncated = 0
    first = jobs[0].summary
    for planned, job in zip(plan, jobs, strict=True):
        s = job.summary
        if planned.kind == "lengths":
            lines += offline_length_lines(s)
            seconds["lengths"] = summary.seconds
        elif planned.scorer is not None:
            lines += ScoreReport(s, paths.work / COLUMNS, score_field(planned.scorer)).lines()
            seconds[planned.scorer.type] = summary.seconds
            truncated += s.counters.get("truncated", 0)
        elif job.rows is not None:
            lines += rejected_line(rejected, policy.by_kind(), policy.path, of=records)
            lines += EmbedReport(s, job.rows.dim or 0, config.embed.output_dtype(), job.rows.path,
                                 config.embed.window()).lines()
            seconds["embed"] = summary.seconds
    if config.preset == "offline" and not config.embed.model:
        model = "a static model distilled from the packaged" if config.embed.kind == "static" else "the packaged"
        lines.append(f"offline preset: embedded {config.embed.window()} of each conversation with {model} "
                     f"all-MiniLM-L6-v2 ({config.embed.resolved_model()})")
    atomic.write_bytes(paths.clean_stats, (json.dumps(clean_stats, indent=2) + "\n").encode("utf-8"))
    funnel = {"input": records, "rejected": rejected, **removed, "scored": first.records, "turns": first.requests,
              "truncated_turns": truncated}
    return {"lines": lines, "funnel": funnel, "details": details, "seconds": seconds, "rejected": rejected}
