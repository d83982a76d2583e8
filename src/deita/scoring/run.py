"""`deita score`: per-turn scores of one type added to every record of a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deita.data.io import RecordWriter
from deita.runtime.runner import RunOptions, run_stage
from deita.scoring.scorer import ScoreConfig, ScoreStage
from deita.scoring.templates import SCORE_FIELDS


@dataclass
class ScoreReport:
    records: int
    turns: int
    rejected: int
    truncated: int
    renormalised: int
    resumed_shards: int
    shards: int
    seconds: float
    output: Path
    rejects: Path | None
    field: str

    def lines(self) -> list[str]:
        rate = self.turns / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"scored {self.turns:,} turns of {self.records:,} records into '{self.field}' → {self.output}",
            f"throughput {rate:,.1f} turns/s over {self.seconds:,.1f} s"
            + (f" ({self.resumed_shards} of {self.shards} shards resumed from cache)" if self.resumed_shards else ""),
            f"truncated to fit the scorer's context: {self.truncated:,} turns",
        ]
        if self.renormalised:
            lines.append(f"scores renormalised over the digits the server returned: {self.renormalised:,} turns")
        if self.rejected:
            lines.append(f"rejected {self.rejected:,} records → {self.rejects}")
        return lines


def score_file(input_path: str | Path, output_path: str | Path, config: ScoreConfig,
               options: RunOptions = RunOptions()) -> ScoreReport:
    """Score every turn of every record; the output keeps each record as it was, plus the score field."""
    field = SCORE_FIELDS[config.type] if config.type in SCORE_FIELDS else config.type
    run = run_stage(ScoreStage(config), input_path, output_path, options, f"scoring {config.type}")
    with RecordWriter(output_path) as writer:
        for record, scores in run.records_with_results():
            writer.write({**record.raw, field: [float(s) for s in scores]})
    return ScoreReport(
        records=run.summary.records, turns=run.summary.requests, rejected=run.read.rejected,
        truncated=run.summary.counters.get("truncated", 0), renormalised=run.summary.counters.get("renormalised", 0),
        resumed_shards=run.summary.resumed_shards, shards=run.summary.shards, seconds=run.seconds,
        output=Path(output_path), rejects=run.rejects, field=field,
    )
