"""`deita embed`: one row per record in a memory-mappable `.npy` (never a pickle)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deita.embedding.embedder import EmbedConfig, EmbedStage
from deita.errors import DeitaError
from deita.runtime.runner import RunOptions, run_stage


@dataclass
class EmbedReport:
    records: int
    dim: int
    dtype: str
    tokens: int
    truncated: int
    rejected: int
    resumed_shards: int
    shards: int
    seconds: float
    output: Path
    rejects: Path | None

    def lines(self) -> list[str]:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"embedded {self.records:,} records → {self.output} ({self.records}×{self.dim} {self.dtype})",
            f"throughput {rate:,.1f} records/s, {self.tokens / max(self.seconds, 1e-9):,.0f} tokens/s over "
            f"{self.seconds:,.1f} s" + (f" ({self.resumed_shards} of {self.shards} shards resumed from cache)"
                                        if self.resumed_shards else ""),
            f"truncated to the model's window (--max-length for causal models): {self.truncated:,} records",
        ]
        if self.rejected:
            lines.append(f"rejected {self.rejected:,} records → {self.rejects}")
        return lines


def embed_file(input_path: str | Path, output_path: str | Path, config: EmbedConfig,
               options: RunOptions = RunOptions()) -> EmbedReport:
    """Embed every record; row i of the array belongs to the i-th record written by the same reading."""
    output_path = Path(output_path)
    if output_path.suffix != ".npy":
        raise DeitaError(f"{output_path}: embeddings are written as a .npy array; give a path ending in .npy")
    run = run_stage(EmbedStage(config), input_path, output_path, options, "embedding")
    temporary = output_path.with_name(f".{output_path.name}.{os.getpid()}.tmp.npy")
    array, row, dim = None, 0, 0
    for index in range(run.summary.shards):
        values = run.store.load(index).values
        if array is None:
            dim = values.shape[1]
            array = np.lib.format.open_memmap(temporary, mode="w+", dtype=config.output_dtype(),
                                              shape=(run.summary.records, dim))
        array[row : row + len(values)] = values
        row += len(values)
    array.flush()
    del array
    os.replace(temporary, output_path)
    rejects = run.write_rejects() if options.on_error == "skip" and run.read.rejected else None
    return EmbedReport(
        records=run.summary.records, dim=dim, dtype=config.output_dtype(), tokens=run.summary.counters.get("tokens", 0),
        truncated=run.summary.counters.get("truncated", 0), rejected=run.read.rejected,
        resumed_shards=run.summary.resumed_shards, shards=run.summary.shards, seconds=run.seconds,
        output=output_path, rejects=rejects,
    )
