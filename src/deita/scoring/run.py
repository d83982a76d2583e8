"""`deita score`: per-turn scores of one type added to every record of a file."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deita.data.policy import RecordPolicy, given_or_own, rejects_path_for
from deita.errors import DeitaError
from deita.runtime.options import RunOptions
from deita.runtime.runner import StageSummary, cache_root, run_stage
from deita.runtime.sinks import RecordSink
from deita.runtime.stage import Stage
from deita.scoring.ifd import IFD_FIELD
from deita.scoring.scorer import ScoreConfig, ScoreStage
from deita.scoring.signals import QUALITY_FIELD, SIGNAL_FIELDS, SignalStage, signal_fields
from deita.scoring.templates import SCORE_FIELDS


@dataclass
class ScoreReport:
    summary: StageSummary
    output: Path
    field: str

    def lines(self) -> list[str]:
        s = self.summary
        rate = s.requests / s.seconds if s.seconds > 0 else 0.0
        lines = [
            f"scored {s.requests:,} turns of {s.records:,} records into '{self.field}' → {self.output}",
            f"throughput {rate:,.1f} turns/s over {s.seconds:,.1f} s"
            + (f" ({s.resumed_shards} of {s.shards} shards resumed from cache)" if s.resumed_shards else ""),
        ]
        if self.field == IFD_FIELD:
            return lines + self.ifd_lines()
        if self.field == QUALITY_FIELD:
            return lines + self.signal_lines()
        lines.append(f"truncated to fit the scorer's context: {s.counters.get('truncated', 0):,} turns")
        if s.counters.get("renormalised"):
            lines.append(f"scores renormalised over the digits the server returned: {s.counters['renormalised']:,} turns")
        return lines + self.rejected_lines()

    def ifd_lines(self) -> list[str]:
        counters = self.summary.counters
        empty, short = counters.get("empty_responses", 0), counters.get("too_short", 0)
        truncated = (f"truncated to fit --max-length: {counters.get('truncated', 0):,} turns lost the start of their "
                     f"instruction, {counters.get('responses_cut', 0):,} of them also the end of their response")
        nulls = f"ifd null (no score): {empty + short:,} turns, {empty:,} with an empty response"
        nulls += f", {short:,} with a one-token response and no token before it" if short else ""
        return [truncated, nulls, *self.rejected_lines()]

    def signal_lines(self) -> list[str]:
        counters = self.summary.counters

        def count(key: str, one: str, many: str) -> str:
            n = counters.get(key, 0)
            return f"{n:,} {one if n == 1 else many}"

        return [f"offline quality signals ({', '.join(SIGNAL_FIELDS)}) and their product gate {QUALITY_FIELD}: "
                f"{count('refusals', 'refusal', 'refusals')}, "
                f"{count('truncated_responses', 'response', 'responses')} cut mid-sentence, "
                f"{count('language_mismatches', 'answer', 'answers')} in another language than their question, "
                f"{count('unanswered', 'unanswered turn', 'unanswered turns')}", *self.rejected_lines()]

    def rejected_lines(self) -> list[str]:
        return self.summary.rejected_lines()


def score_file(input_path: str | Path, output_path: str | Path, config: ScoreConfig,
               options: RunOptions = RunOptions(), policy: RecordPolicy | None = None) -> ScoreReport:
    """Score every turn of every record; the output keeps each record as it was, plus the score field.

    `policy`: what happens to bad records (default: `options.on_error`, rejects beside the output).
    """
    output_path = Path(output_path)
    if config.type == "signals":
        return signal_scores(input_path, output_path, config, options, policy)
    field = score_field(config)
    with given_or_own(policy, options, rejects_path_for(output_path)) as policy:
        summary = run_stage(score_stage(config), input_path, RecordSink(output_path, score_fields(config)), options,
                            cache_root(options, output_path), policy=policy, description=f"scoring {config.type}")
    return ScoreReport(summary, output_path, field)


def score_stage(config: ScoreConfig, counts: Path | None = None) -> Stage:
    """The stage that scores records for `config` (what `deita score` and `select`'s pass both run);
    `counts`: the pool's bigram counts, for the offline signals (`type: signals`)."""
    if config.type == "signals":
        from deita.dedup.bigrams import counts_key
        from deita.embedding.embedder import EmbedConfig

        if counts is None:
            raise DeitaError("internal error: the signals scorer needs the pool's bigram counts")
        return SignalStage(config.resolved_model(), EmbedConfig().static_dims, None, counts, counts_key(counts))
    return ScoreStage(config)


def score_field(config: ScoreConfig) -> str:
    """The record field a scorer of this type writes (one value per turn)."""
    if config.type == "signals":
        return QUALITY_FIELD
    return IFD_FIELD if config.type == "ifd" else SCORE_FIELDS[config.type]


def score_fields(config: ScoreConfig) -> Callable[[Any], dict[str, list[float | None]]]:
    """A scorer's per-record rows as the fields it adds: what `deita score` writes and `select`'s columns hold."""
    if config.type == "signals":
        return signal_fields
    field, nullable = score_field(config), config.type == "ifd"
    return lambda rows: {field: turn_values(rows, nullable=nullable)}


def turn_values(rows: Any, nullable: bool) -> list[float | None]:
    """Per-turn scores as JSON values; only a nullable field (IFD) turns NaN, a turn with no score, into null."""
    values = [float(v) for v in rows]
    return [None if math.isnan(v) else v for v in values] if nullable else values


def signal_scores(input_path: str | Path, output_path: Path, config: ScoreConfig, options: RunOptions,
                  policy: RecordPolicy | None) -> ScoreReport:
    """The offline quality signals (`scoring/signals.py`), with the pool's bigram counts from dedup's pass, or,
    where no such pass ran, counted from the input first."""
    from deita.dedup.bigrams import BigramCounts

    root = cache_root(options, output_path)
    counts = Path(config.bigram_counts) if config.bigram_counts else root / "bigram_counts.npy"
    if not config.bigram_counts:
        counts.parent.mkdir(parents=True, exist_ok=True)
        BigramCounts.from_file(input_path, options).save(counts)
    stage = score_stage(config, counts)
    sink = RecordSink(output_path, signal_fields)
    with given_or_own(policy, options, rejects_path_for(output_path)) as policy:
        summary = run_stage(stage, input_path, sink, options, root, policy=policy, description="quality signals")
    return ScoreReport(summary, output_path, QUALITY_FIELD)
