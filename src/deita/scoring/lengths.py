"""The paper's length baselines as per-turn scores: no model, no network (the `offline` preset)."""

from __future__ import annotations

from pathlib import Path

from deita.data.io import ReadStats, RecordWriter, RejectsWriter, iter_records, rejects_path_for
from deita.runtime.runner import RunOptions

LENGTH_FIELDS = ("instruction_lengths", "response_lengths")


def add_length_scores(input_path: str | Path, output_path: str | Path, options: RunOptions) -> ReadStats:
    """Write each record with per-turn instruction and response lengths (characters) added."""
    stats = ReadStats()
    rejects = RejectsWriter(rejects_path_for(output_path)) if options.on_error == "skip" else None
    try:
        with RecordWriter(output_path) as writer:
            for record in iter_records(input_path, fmt=options.format, on_error=options.on_error, rejects=rejects,
                                       pairing=options.pairing, stats=stats):
                writer.write({**record.raw,
                              LENGTH_FIELDS[0]: [float(len(t.instruction)) for t in record.turns],
                              LENGTH_FIELDS[1]: [float(len(t.response)) for t in record.turns]})
    finally:
        if rejects is not None:
            rejects.close()
    return stats
