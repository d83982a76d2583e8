"""The probe's pool: the user's records (as `messages` records, the same turns) with seeded known-bad variants
of some of them mixed in, each marked with the class it belongs to. It lives in the probe's own folder only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deita.data.formats import convert_record
from deita.data.io import ReadStats, RecordPolicy, iter_records, write_records
from deita.errors import DeitaError
from deita.probe.injectors import CLASSES, last_answer

MARK = "deita_probe"
"""The field that names an injected record's class (a pool record never has it)."""
COPIES = ("exact_copy", "near_copy")


@dataclass
class ProbePool:
    """The written pool and what is in it."""

    path: Path
    n_original: int
    """Good records of the user's pool (all of them are in the probe's pool)."""
    n_left_out: int
    """Records of the user's pool that no stage could read (bad records): not in the probe's pool."""
    counts: dict[str, int]
    """Injected records per class."""

    @property
    def size(self) -> int:
        return self.n_original + sum(self.counts.values())


def read_pool(pool_path: Path) -> tuple[list[dict], int]:
    """The pool's good records as `messages` records, and how many bad records were left out."""
    stats = ReadStats()
    records = []
    for record in iter_records(pool_path, policy=RecordPolicy.skipping(None), stats=stats):
        raw = convert_record(record.raw, stats.format or "messages", "messages")
        if MARK in raw:
            raise DeitaError(f"{pool_path}, {record.location}: the record has a {MARK!r} field, which the probe "
                             "uses to mark its injected records")
        records.append(raw)
    return records, stats.rejected


def split_counts(total: int, classes: Sequence[str]) -> dict[str, int]:
    """`total` injected records shared out evenly over the classes, the first classes taking the remainder."""
    share, rest = divmod(total, len(classes))
    return {name: share + (i < rest) for i, name in enumerate(classes)}


def _answer_words(record: dict) -> int:
    position = last_answer(record)
    return 0 if position is None else len(record["messages"][position]["content"].split())


def inject(records: list[dict], classes: Sequence[str], rate: float, seed: int) -> tuple[list[dict], dict[str, int]]:
    """The records with `rate` × len(records) bad variants mixed in, split over `classes`, in a seeded order
    where every copy comes after the record it copies (so dedup, keeping the first, keeps the original)."""
    mixed, counts, _ = inject_traced(records, classes, rate, seed)
    return mixed, counts


def inject_traced(records: list[dict], classes: Sequence[str], rate: float,
                  seed: int) -> tuple[list[dict], dict[str, int], list[int]]:
    """`inject`, and per place of the mixed pool the place of the record its bad variant was made from (-1 for
    the pool's own records)."""
    rng = np.random.default_rng(seed)
    words = np.array([_answer_words(r) for r in records])
    wanted = split_counts(round(rate * len(records)), classes)
    used = np.zeros(len(records), dtype=bool)
    answered = np.flatnonzero(words > 0)
    injected: list[tuple[int, dict]] = []  # (source ordinal, bad record)
    for name, count in wanted.items():
        entry = CLASSES[name]
        eligible = np.flatnonzero((words >= entry.min_words) & ~used)
        if len(eligible) < count or len(answered) < 2:
            raise DeitaError(f"the pool has {len(eligible):,} unused records with an answer of at least "
                             f"{entry.min_words} words, too few for {count:,} {name} records; lower --rate")
        for source in rng.choice(eligible, count, replace=False).tolist():
            used[source] = True
            donor = source
            while donor == source:
                donor = int(rng.choice(answered))
            bad = entry.inject(records[source], records[donor], rng)
            bad[MARK] = name
            injected.append((source, bad))
    order = rng.permutation(len(records) + len(injected))
    position = np.empty_like(order)
    position[order] = np.arange(len(order))  # item → its place in the mixed pool
    for number, (source, bad) in enumerate(injected):
        item = len(records) + number
        if bad[MARK] in COPIES and position[item] < position[source]:
            position[item], position[source] = position[source], position[item]
    mixed: list[dict] = [{}] * len(order)
    origin = [-1] * len(order)
    for item, place in enumerate(position.tolist()):
        mixed[place] = records[item] if item < len(records) else injected[item - len(records)][1]
        if item >= len(records):
            origin[place] = int(position[injected[item - len(records)][0]])
    return mixed, {name: sum(1 for _, bad in injected if bad[MARK] == name) for name in wanted}, origin


def write_probe_pool(records: list[dict], n_left_out: int, path: Path, classes: Sequence[str], rate: float,
                     seed: int) -> ProbePool:
    """Inject into the pool's records and write the mixed pool as JSONL at `path`."""
    mixed, counts = inject(records, classes, rate, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_records(path, mixed)
    return ProbePool(path, len(records), n_left_out, counts)
