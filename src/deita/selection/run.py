"""`deita filter`: pick records from a scored file and its embeddings, write them in selection order."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deita.data.io import RecordWriter, iter_records
from deita.errors import DeitaError
from deita.runtime.devices import resolve_device
from deita.selection.baselines import STRATEGIES, kcenter_select, length_select, random_select, score_select
from deita.selection.deita import deita_filter
from deita.selection.scores import DEFAULT_SCORE_KEYS, final_scores

NEEDS_EMBEDDINGS = ("deita", "kcenter")
NEEDS_SCORES = ("deita", "score")


@dataclass(frozen=True)
class FilterConfig:
    """Options of `deita filter` (CLI flags, YAML keys and keyword arguments share these names)."""

    size: int = 6000
    """Samples to select; -1 walks the whole pool."""
    threshold: float = 0.9
    """Cosine similarity above which a candidate counts as a near-duplicate of an accepted sample."""
    sort_key: tuple[str, ...] = DEFAULT_SCORE_KEYS
    """Per-turn score fields whose product, summed over turns, ranks the pool."""
    strategy: str = "deita"
    """deita (score-first diversity filter), random, score, length, kcenter."""
    device: str = "auto"
    block_size: int = 1024
    """Candidates compared with the accepted set per matrix product (does not change the result)."""
    seed: int = 42
    """For random and kcenter."""

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise DeitaError(f"unknown strategy '{self.strategy}' (choose {', '.join(STRATEGIES)})")


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

    def stats(self) -> dict:
        return {"n_pool": self.n_pool, "n_selected": self.n_selected, "n_examined": self.n_examined,
                "threshold": self.threshold, "strategy": self.strategy, "seconds": self.seconds,
                "sort_key": list(self.sort_key), "output": str(self.output)}

    def lines(self) -> list[str]:
        return [f"selected {self.n_selected:,} of {self.n_pool:,} records ({self.strategy}, examined "
                f"{self.n_examined:,}, threshold {self.threshold}) in {self.seconds:.3f} s → {self.output}"]


def _read_pool(path: Path, config: FilterConfig, fmt: str | None) -> tuple[int, np.ndarray | None, np.ndarray | None]:
    """Pool size, final scores (if the strategy uses them) and response lengths (for `length`)."""
    lists: list[list] = [[] for _ in config.sort_key]
    locations: list[str] = []
    lengths: list[int] = []
    count = 0
    for record in iter_records(path, fmt=fmt):
        count += 1
        if config.strategy in NEEDS_SCORES:
            for key, column in zip(config.sort_key, lists):
                column.append(record.raw.get(key))
            locations.append(f"{path}, {record.location}")
        elif config.strategy == "length":
            lengths.append(sum(len(t.response) for t in record.turns))
    scores = final_scores(lists, config.sort_key, locations) if config.strategy in NEEDS_SCORES else None
    return count, scores, np.asarray(lengths, dtype=np.float64) if config.strategy == "length" else None


def open_embeddings(path: str | Path, n_pool: int, data_path: Path) -> np.ndarray:
    """Memory-map a 2-D float `.npy` (never a pickle) and check it has one row per record."""
    path = Path(path)
    if path.suffix == ".pkl":
        raise DeitaError(f"{path}: pickled embeddings are not loaded (unsafe); re-run `deita embed` to get a .npy")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DeitaError(f"{path}: not a readable .npy array ({err})") from err
    if array.ndim != 2 or array.dtype.kind != "f":
        raise DeitaError(f"{path}: expected a 2-D float array, got shape {array.shape} and dtype {array.dtype}")
    if array.shape[0] != n_pool:
        raise DeitaError(f"{path} has {array.shape[0]:,} rows but {data_path} has {n_pool:,} records; "
                         "embed the same file you filter")
    return array


def select_indices(config: FilterConfig, n_pool: int, scores: np.ndarray | None, lengths: np.ndarray | None,
                   embeddings: np.ndarray | None) -> tuple[np.ndarray, int, float]:
    """Run the configured strategy; returns (indices in selection order, examined, seconds)."""
    device = str(resolve_device(config.device))
    if config.strategy == "deita":
        result = deita_filter(scores, embeddings, config.size, config.threshold, config.block_size, device)
        return result.indices, result.n_examined, result.seconds
    start = time.perf_counter()
    if config.strategy == "random":
        indices = random_select(n_pool, config.size, config.seed)
    elif config.strategy == "score":
        indices = score_select(scores, config.size)
    elif config.strategy == "length":
        indices = length_select(lengths, config.size)
    else:
        indices = kcenter_select(embeddings, config.size, config.seed, device, config.block_size)
    examined = n_pool if config.strategy == "kcenter" else len(indices)
    return indices, examined, time.perf_counter() - start


def filter_file(input_path: str | Path, output_path: str | Path, config: FilterConfig,
                embeddings_path: str | Path | None = None, fmt: str | None = None,
                stats_path: str | Path | None = None) -> FilterReport:
    """Select records; the output holds them in selection order, each exactly as read."""
    config.validate()
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise DeitaError(f"{input_path}: no such file or directory")
    n_pool, scores, lengths = _read_pool(input_path, config, fmt)
    embeddings = None
    if config.strategy in NEEDS_EMBEDDINGS:
        if embeddings_path is None:
            raise DeitaError(f"--strategy {config.strategy} needs --embeddings EMB.npy (from `deita embed`)")
        embeddings = open_embeddings(embeddings_path, n_pool, input_path)
    indices, examined, seconds = select_indices(config, n_pool, scores, lengths, embeddings)
    position = {int(index): rank for rank, index in enumerate(indices)}
    chosen: list[dict | None] = [None] * len(indices)
    for ordinal, record in enumerate(iter_records(input_path, fmt=fmt)):
        rank = position.get(ordinal)
        if rank is not None:
            chosen[rank] = record.raw
    with RecordWriter(output_path) as writer:
        for raw in chosen:
            writer.write(raw)
    report = FilterReport(n_pool, len(indices), examined, config.threshold, config.strategy, seconds,
                          config.sort_key, output_path)
    if stats_path:
        Path(stats_path).write_text(json.dumps(report.stats(), indent=2) + "\n")
    return report
