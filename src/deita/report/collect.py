"""What the report needs from the pool and the selection, gathered in one read of each.

Numbers are exact (one entry per pool record in compact numpy arrays); texts are kept only for the few
records the report shows: the selected ones it lists, the skipped candidates it shows as near-duplicate
evidence, and the first candidates below the cut (a bounded heap over the walk order).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deita.data.io import RecordPolicy, iter_records
from deita.data.records import Record
from deita.errors import DeitaError
from deita.scoring.signals import QUALITY_FIELD, SIGNAL_FIELDS
from deita.selection.ifd import IFD_KEY, ifd_record_scores
from deita.selection.scores import record_score

ADDED_FIELDS = ("complexity_scores", "quality_scores", "instruction_lengths", "response_lengths", "deita",
                *SIGNAL_FIELDS, QUALITY_FIELD)
"""Fields deita adds to records; a record's identity is everything else."""
CANNOT_SKIP = RecordPolicy.failing(switch=None, who="The report")
"""A bad record in the selection or the pool stops the report: its figures would not add up without it."""
BELOW_CUT = 5
MAX_HELD_FOR_CUT = 50_000
"""Past this many examined candidates the report does not look for the records below the cut."""


def record_key(raw: dict) -> bytes:
    """A hash of the record without the fields deita adds: the same record before and after scoring."""
    core = {k: v for k, v in raw.items() if k not in ADDED_FIELDS}
    try:
        import orjson

        data = orjson.dumps(core, option=orjson.OPT_SORT_KEYS)
    except (ImportError, TypeError):  # no orjson, or an int beyond 64 bits
        data = json.dumps(core, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=12).digest()


@dataclass
class Shown:
    """A record the report shows: where it is, its score and its text."""

    index: int
    score: float | None
    record: Record


@dataclass
class PoolFacts:
    """Per pool record (index = position in the pool file): score and shape; plus the texts to show."""

    n: int
    scores: np.ndarray | None  # final score per record (None when the records carry no sort-key fields)
    field_means: dict[str, np.ndarray]  # per score field: mean over the record's turns
    turns: np.ndarray
    instruction_chars: np.ndarray
    response_chars: np.ndarray
    has_system: np.ndarray
    sources: np.ndarray | None  # source id per record, names in `source_names`
    source_names: list[str]
    selected_index: np.ndarray  # pool index of each selected record, in selection order
    kept: dict[int, Record] = field(default_factory=dict)  # texts of the records the report shows
    below_cut: list[Shown] = field(default_factory=list)
    score_values: dict[str, Counter] = field(default_factory=dict)  # per field: counts of rounded turn scores
    nan_scores: dict[str, int] = field(default_factory=dict)


def read_selection(path: Path) -> tuple[list[Record], list[bytes]]:
    records = list(iter_records(path, policy=CANNOT_SKIP))
    return records, [record_key(r.raw) for r in records]


def _field_mean(values: Any) -> float:
    if not isinstance(values, list) or not values:
        return float("nan")
    try:
        return float(sum(values)) / len(values)
    except TypeError:
        return float("nan")


def _record_score(raw: dict, sort_key: tuple[str, ...], max_ifd: float, where: str, aggregate: str = "sum") -> float:
    if sort_key == (IFD_KEY,):
        scores, selectable = ifd_record_scores([raw[IFD_KEY]], max_ifd, [where])
        return float(scores[0]) if selectable[0] else float("nan")
    return record_score([raw[k] for k in sort_key], sort_key, where, aggregate)


def collect_pool(pool_records: Iterable[Record], pool_path: Path, selection_path: Path, selection: list[Record],
                 keys: list[bytes], sort_key: tuple[str, ...], wanted: set[int], n_examined: int,
                 source_field: str | None, max_ifd: float = 1.0, selected_rows: np.ndarray | None = None,
                 aggregate: str = "sum") -> PoolFacts:
    """Go through the pool's records once; match every selected record to its pool index (an error names the
    first missing), or, with `selected_rows`, take those positions as the selection and keep their records.

    A selection ranked by `ifd_scores` scores each record by the mean IFD of its turns below `max_ifd`; a record
    without such a turn has no score (NaN) and is no candidate."""
    where_selected: dict[bytes, list[int]] = {}
    for rank, key in enumerate(keys):
        where_selected.setdefault(key, []).append(rank)
    selected_index = np.full(len(selection), -1, dtype=np.int64)
    if selected_rows is not None:
        selected_index = np.asarray(selected_rows, dtype=np.int64).copy()
        wanted = wanted | set(selected_index.tolist())
    scores: list[float] = []
    signals = tuple(name for name in (*SIGNAL_FIELDS, QUALITY_FIELD) if name not in sort_key)
    means: dict[str, list[float]] = {name: [] for name in (*sort_key, *signals)}
    values: dict[str, Counter] = {name: Counter() for name in sort_key}
    nans: dict[str, int] = dict.fromkeys(sort_key, 0)
    turns, instruction, response, system, sources = [], [], [], [], []
    source_ids: dict[str, int] = {}
    kept: dict[int, Record] = {}
    heap: list[tuple[float, int, Record]] = []  # the best n_examined + BELOW_CUT candidates in walk order
    heap_size = n_examined + BELOW_CUT if n_examined + BELOW_CUT <= MAX_HELD_FOR_CUT else 0
    scored = bool(sort_key)
    for position, record in enumerate(pool_records):
        raw = record.raw
        ranks = where_selected.get(record_key(raw))
        if ranks:
            selected_index[ranks.pop(0)] = position  # equal records match in order
        score = float("nan")
        if scored:
            if all(k in raw for k in sort_key):
                score = _record_score(raw, sort_key, max_ifd, f"{pool_path}, {record.location}", aggregate)
            else:
                scored = False
        scores.append(score)
        for name in sort_key:
            field_values = raw.get(name)
            means[name].append(_field_mean(field_values))
            if isinstance(field_values, list):
                counts = values[name]
                for value in field_values:
                    if value is None:  # a turn without a score (IFD of an unanswered turn)
                        continue
                    if value != value:
                        nans[name] += 1
                    else:
                        counts[value] += 1
        for name in signals:  # the offline signals are shown beside the sort key, where a run stored them
            means[name].append(_field_mean(raw.get(name)))
        turns.append(len(record.turns))
        instruction.append(sum(len(t.instruction) for t in record.turns))
        response.append(sum(len(t.response) for t in record.turns))
        system.append(record.system is not None)
        if source_field is not None:
            name = str(raw.get(source_field, "(none)"))
            sources.append(source_ids.setdefault(name, len(source_ids)))
        if position in wanted:
            kept[position] = record
        if heap_size and scored and not math.isnan(score):
            item = (score, -position, record)
            if len(heap) < heap_size:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
    missing = np.flatnonzero(selected_index < 0)
    if len(missing):
        first = selection[int(missing[0])]
        raise DeitaError(f"{selection_path}, {first.location}: this selected record is not in the pool {pool_path} "
                         f"({len(missing):,} selected records are not); give the pool the selection was made from")
    below = sorted(heap, reverse=True)[n_examined:] if len(heap) > n_examined else []
    return PoolFacts(
        n=len(turns), scores=np.asarray(scores) if scored else None,
        field_means={k: np.asarray(v) for k, v in means.items()}, turns=np.asarray(turns),
        instruction_chars=np.asarray(instruction), response_chars=np.asarray(response),
        has_system=np.asarray(system, dtype=bool),
        sources=np.asarray(sources) if source_field is not None else None, source_names=list(source_ids),
        selected_index=selected_index, kept=kept,
        below_cut=[Shown(-neg, score, record) for score, neg, record in below], score_values=values,
        nan_scores=nans,
    )


def detect_source_field(first: Record, requested: str | None) -> str | None:
    """`requested`, or `source` when the pool's first record has it."""
    if requested:
        return requested
    return "source" if "source" in first.raw else None
