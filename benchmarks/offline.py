"""The offline preset on real data: end-to-end time, the old MiniLM embedder, and the threshold calibration.

    python benchmarks/offline.py                               # ../shared/data/sharegpt_v3_5k.json
    python benchmarks/offline.py --data pool.json --planted 300

1. End to end, as a user runs it (subprocesses): `deita select --preset offline` with the static embedder,
   once with an empty model cache (it distils the static model first) and once warm; then the same with
   the old embedder (`kind: sentence`, the packaged MiniLM at its 256-token window, threshold 0.9). It
   prints each time, the embedding stages' records/s and their ratio (target ≥ 5×), and the overlap of the
   two selections (target for the warm run: ≤ 60 s on two cores).
2. Calibration of the offline threshold: near-copies of real records (light edits, a changed name, a
   reordered list) are planted in the pool. For each threshold the Deita filter walks the whole pool in
   the offline preset's order (length scores) and the script counts the planted copies it skips (target
   ≥ 95 %) and the real records it skips in the un-planted pool, against what MiniLM at 0.9 skips there
   (target ≤ 2×). The preset's declared threshold (PRESET_DEFAULTS) is checked against both.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _planted import KINDS, plant

from deita.data.io import RecordPolicy, iter_records
from deita.embedding.embedder import EmbedConfig, EmbedStage
from deita.scoring.lengths import measure_lengths
from deita.selection.deita import deita_filter
from deita.workflow import PRESET_DEFAULTS

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sharegpt_v3_5k.json"
GRID = (0.95, 0.97, 0.98, 0.985, 0.99, 0.993, 0.995, 0.997, 0.999)
SIZE = 1000


def deita(*args: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "deita.cli", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, check=False)
    if result.returncode != 0:
        raise SystemExit(f"deita {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start, result.stdout


def throughput(stdout: str) -> float:
    return float(re.search(r"throughput ([\d,.]+) records/s", stdout).group(1).replace(",", ""))


def selected_ids(path: Path) -> set[str]:
    return {r.raw.get("id") for r in iter_records(path)}


def end_to_end(data: Path, folder: Path) -> Path:
    """The three `deita select` runs; returns the old run's MiniLM embeddings (for the calibration)."""
    common = ["--preset", "offline", "--size", str(SIZE), "--on-error", "skip", "-q"]
    cold_cache = {"DEITA_CACHE": str(folder / "empty-cache")}
    cold_s, _ = deita("select", str(data), "-o", str(folder / "cold.jsonl"), *common, env=cold_cache)
    warm_s, warm = deita("select", str(data), "-o", str(folder / "warm.jsonl"), *common, env=cold_cache)
    old_yaml = folder / "old.yaml"
    old_yaml.write_text("embed: {kind: sentence, max_length: 256}\nfilter: {threshold: 0.9}\n")
    old_s, old = deita("select", str(data), "-o", str(folder / "old.jsonl"), *common, "--config", str(old_yaml))
    new_rate, old_rate = throughput(warm), throughput(old)
    new_ids, old_ids = selected_ids(folder / "warm.jsonl"), selected_ids(folder / "old.jsonl")
    print(f"deita select --preset offline on {data.name}, --size {SIZE}, two cores:")
    print(f"  static embedder, first run (distils the static model): {cold_s:7.1f} s")
    print(f"  static embedder, model cached:                         {warm_s:7.1f} s   (target ≤ 60 s)")
    print(f"  old embedder (MiniLM, 256 tokens, threshold 0.9):      {old_s:7.1f} s")
    print(f"  embedding stage: static {new_rate:,.1f} records/s, MiniLM {old_rate:,.1f} records/s: "
          f"{new_rate / old_rate:.1f}× (target ≥ 5×)")
    print(f"  overlap of the two selections: {len(new_ids & old_ids):,} of {SIZE:,} records "
          f"({len(new_ids & old_ids) / SIZE:.1%})")
    for line in warm.splitlines():
        if "text seen" in line or "truncated" in line or "counted only in part" in line or "skipped" in line:
            print("  static run: " + line)
    for line in old.splitlines():
        if "truncated" in line or "skipped" in line:
            print("  MiniLM run: " + line)
    return folder / "old.jsonl.work" / "embeddings.npy"


def length_scores(raws: list[dict]) -> np.ndarray:
    """The offline preset's ranking: Σ over turns of capped instruction × response length."""
    from deita.data.formats import parse_turns

    scores = []
    for raw in raws:
        values = measure_lengths(parse_turns(raw, "sharegpt")[0]).values
        scores.append(float((values[:, 0] * values[:, 1]).sum()))
    return np.asarray(scores)


def skipped(scores: np.ndarray, embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """Mask of the records the filter skips walking the whole pool."""
    result = deita_filter(scores, embeddings, -1, threshold, 1024, "cpu")
    mask = np.ones(len(scores), dtype=bool)
    mask[result.indices] = False
    return mask


def calibrate(data: Path, minilm: Path | None, planted_count: int) -> None:
    raws = [r.raw for r in iter_records(data, policy=RecordPolicy.skipping(None))]
    planted = plant(raws, planted_count, seed=0)
    rng = random.Random(1)
    pool = list(raws)
    copy_at = []
    for _, _, near in planted:  # copies go anywhere in the pool
        pool.insert(rng.randrange(len(pool) + 1), near)
    position = {id(raw): i for i, raw in enumerate(pool)}
    original_at = [position[id(raws[i])] for i, _, _ in planted]
    copy_at = [position[id(near)] for _, _, near in planted]
    config = EmbedConfig(kind="static")
    start = time.perf_counter()
    worker = EmbedStage(config).load_worker()
    embeddings = worker([config.text(r) for r in iter_records_of(pool)]).values
    seconds = time.perf_counter() - start
    real_rows = np.array(sorted(set(range(len(pool))) - set(copy_at)))
    scores = length_scores(pool)
    print(f"\ncalibration: {len(raws):,} real records + {len(planted)} planted near-copies "
          f"({', '.join(f'{sum(k == kind for _, k, _ in planted)} {kind}' for kind in KINDS)}); static embeddings "
          f"of all {len(pool):,} in {seconds:.1f} s")
    baseline = None
    if minilm is not None and minilm.exists():
        old = np.load(minilm).astype(np.float32)
        old /= np.linalg.norm(old, axis=1, keepdims=True)
        baseline = int(skipped(scores[real_rows], old, 0.9).sum())
        print(f"MiniLM (256 tokens) at 0.9 skips {baseline:,} of the {len(real_rows):,} un-planted records "
              f"(so the target is ≤ {2 * baseline:,})")
    declared = PRESET_DEFAULTS["offline"]["filter"]["threshold"]
    kinds = np.array([k for _, k, _ in planted])
    print(f"{'threshold':>9s} {'planted skipped':>16s} " + " ".join(f"{k:>15s}" for k in KINDS)
          + f" {'real skipped':>13s}")
    for threshold in sorted({*GRID, declared}):
        mask = skipped(scores, embeddings, threshold)
        caught = np.array([mask[o] or mask[c] for o, c in zip(original_at, copy_at, strict=True)])
        real = int(skipped(scores[real_rows], embeddings[real_rows], threshold).sum())
        per_kind = " ".join(f"{caught[kinds == k].mean():>15.1%}" for k in KINDS)
        verdict = ""
        if baseline is not None:
            verdict = "ok" if caught.mean() >= 0.95 and real <= 2 * baseline else "misses a target"
        mark = "  ← the offline preset's threshold" if threshold == declared else ""
        print(f"{threshold:9.3f} {caught.mean():>16.1%} {per_kind} {real:>13,}  {verdict}{mark}")


def iter_records_of(raws: list[dict]):
    """Records (turns parsed) of in-memory raws, through the same reader as files."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool.jsonl"
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in raws) + "\n", encoding="utf-8")
        yield from iter_records(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA.resolve())
    ap.add_argument("--planted", type=int, default=300)
    ap.add_argument("--skip-end-to-end", action="store_true", help="Only calibrate (with --minilm embeddings).")
    ap.add_argument("--minilm", type=Path, help="MiniLM embeddings of the good records (from an earlier run).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        minilm = args.minilm if args.skip_end_to_end else end_to_end(args.data, Path(tmp))
        calibrate(args.data, minilm, args.planted)


if __name__ == "__main__":
    main()
