"""Calibrating the diversity walk's threshold with the probe's copy classes.

The probe's exact and near copies are planted in the pool (dedup off, so only the walk can catch them). For
each threshold the Deita walk goes through the whole pool in the offline preset's length order (Σ instruction
× response length; the signals' gate scales a copy as it scales its original) and the calibration counts, per
class, the share of planted copies it does not keep beside their original (the copy or the original skipped),
and how many records it skips in the same pool without the copies: real records lost to the threshold. A
threshold is good where it catches the copies and skips few real records.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deita.probe.pool import COPIES, MARK, inject_traced, read_pool

GRID = (0.95, 0.97, 0.98, 0.985, 0.99, 0.993, 0.995)
"""The thresholds the calibration tries by default (the static embedder's cosines crowd near 1)."""


@dataclass(frozen=True)
class ThresholdRow:
    """What the walk does at one threshold."""

    threshold: float
    copies_skipped: dict[str, float]
    """Per copy class, the share of its planted copies the walk does not keep beside their original."""
    real_skipped: int
    """Records the walk skips in the pool without the copies."""
    real_records: int

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "copies_skipped": self.copies_skipped,
                "real_skipped": self.real_skipped, "real_records": self.real_records}


def walk_skips(scores: np.ndarray, embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """Mask of the records the Deita walk skips going through the whole pool at `threshold`."""
    from deita.selection.deita import deita_filter

    kept = deita_filter(scores, embeddings, -1, threshold).indices
    mask = np.ones(len(scores), dtype=bool)
    mask[kept] = False
    return mask


def threshold_rows(scores: np.ndarray, embeddings: np.ndarray, origin: Sequence[int], classes: Sequence[str],
                   thresholds: Sequence[float]) -> list[ThresholdRow]:
    """One row per threshold. `origin[i]` is the row record i was copied from (-1 for a real record) and
    `classes[i]` its class ("" for a real record)."""
    origin = np.asarray(origin, dtype=np.int64)
    kinds = np.asarray(classes, dtype=object)
    copies = np.flatnonzero(origin >= 0)
    real = np.flatnonzero(origin < 0)
    names = sorted({str(kinds[i]) for i in copies})
    rows = []
    for threshold in thresholds:
        skipped = walk_skips(scores, embeddings, threshold)
        caught = skipped[copies] | skipped[origin[copies]]
        real_skipped = int(walk_skips(scores[real], embeddings[real], threshold).sum())
        shares = {name: float(caught[kinds[copies] == name].mean()) for name in names}
        rows.append(ThresholdRow(float(threshold), shares, real_skipped, len(real)))
    return rows


def length_order(records: Sequence) -> np.ndarray:
    """The offline preset's ranking without the gate: Σ over turns of capped instruction × response length."""
    from deita.scoring.lengths import measure_lengths

    return np.array([float(np.prod(measure_lengths(r.turns).values, axis=1).sum()) for r in records])


def calibrate(pool_path: Path, seed: int = 0, rate: float = 0.2,
              thresholds: Sequence[float] = GRID) -> list[ThresholdRow]:
    """Plant the probe's exact and near copies (`rate` of the pool, seeded) and walk it at each threshold with
    the static embedder (the offline preset's)."""
    from deita.data.io import iter_records
    from deita.embedding.embedder import EmbedConfig, EmbedStage

    records, _ = read_pool(pool_path)
    mixed, _, origin = inject_traced(records, COPIES, rate, seed)
    with tempfile.TemporaryDirectory(prefix="deita-calibrate-") as tmp:
        path = Path(tmp) / "pool.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in mixed), encoding="utf-8")
        parsed = list(iter_records(path))
    config = EmbedConfig(kind="static")
    embeddings = EmbedStage(config).load_worker()([config.text(r) for r in parsed]).values
    classes = [r.get(MARK, "") for r in mixed]
    return threshold_rows(length_order(parsed), embeddings, origin, classes, thresholds)


def table_lines(rows: Sequence[ThresholdRow]) -> list[str]:
    """A Markdown table of the rows."""
    names = list(rows[0].copies_skipped) if rows else []
    lines = ["| threshold | " + " | ".join(f"{n} skipped" for n in names) + " | real records skipped |",
             "|---:|" + "---:|" * (len(names) + 1)]
    for row in rows:
        shares = " | ".join(f"{row.copies_skipped[n]:.1%}" for n in names)
        lines.append(f"| {row.threshold:g} | {shares} | {row.real_skipped:,} of {row.real_records:,} "
                     f"({row.real_skipped / max(row.real_records, 1):.1%}) |")
    return lines
