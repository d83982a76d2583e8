"""`deita embed`: one row per record in a memory-mappable `.npy` (never a pickle)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deita.data.policy import RecordPolicy, given_or_own, rejects_path_for
from deita.embedding.embedder import EmbedConfig, EmbedStage
from deita.runtime.options import RunOptions
from deita.runtime.runner import StageSummary, cache_root, run_stage
from deita.runtime.sinks import ArraySink


@dataclass
class EmbedReport:
    summary: StageSummary
    dim: int
    dtype: str
    output: Path
    window: str = "the model's window"
    """What bounds the tokens of a conversation, naming the flag (EmbedConfig.window)."""

    def lines(self) -> list[str]:
        s = self.summary
        rate = s.records / s.seconds if s.seconds > 0 else 0.0
        lines = [
            f"embedded {s.records:,} records → {self.output} ({s.records}×{self.dim} {self.dtype})",
            f"throughput {rate:,.1f} records/s, {s.counters.get('tokens', 0) / max(s.seconds, 1e-9):,.0f} tokens/s "
            f"over {s.seconds:,.1f} s" + (f" ({s.resumed_shards} of {s.shards} shards resumed from cache)"
                                         if s.resumed_shards else ""),
            f"truncated: {s.counters.get('truncated', 0):,} records, to {self.window}",
        ]
        if s.counters.get("chars_total"):
            seen = s.counters["chars_seen"] / s.counters["chars_total"]
            lines.append(f"text seen: {seen:.1%} of all characters ({s.counters['chars_seen']:,} of "
                         f"{s.counters['chars_total']:,})")
        return lines + s.rejected_lines()


def embed_file(input_path: str | Path, output_path: str | Path, config: EmbedConfig,
               options: RunOptions = RunOptions(), policy: RecordPolicy | None = None) -> EmbedReport:
    """Embed every good record; row i belongs to the i-th good record of the input (rejects have no row)."""
    output_path = Path(output_path)
    sink = ArraySink(output_path, config.output_dtype())
    with given_or_own(policy, options, rejects_path_for(output_path)) as policy:
        summary = run_stage(EmbedStage(config), input_path, sink, options, cache_root(options, output_path),
                            policy=policy, description="embedding")
    return EmbedReport(summary, sink.dim or 0, config.output_dtype(), output_path, config.window())
