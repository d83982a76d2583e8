"""`deita probe`: how well does a selection keep known-bad records out?

The probe mixes seeded bad variants of the pool's own records into it (`probe.pool`), runs the selection the
config describes on that mixed pool through `deita select` itself, and the `random` strategy beside it, and
reports per class the class's share of the selection over its share of the pool: about 1 for random, 0 for a
selector that never keeps the class. Everything it writes, the injected records included, stays in its folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deita.config import SEED_RANGE
from deita.data.io import iter_records
from deita.data.paths import check_paths, check_writable
from deita.errors import ConfigError, DeitaError
from deita.probe.injectors import CLASSES
from deita.probe.pool import MARK, ProbePool, read_pool, write_probe_pool
from deita.select_config import SelectConfig

ALL = "all"
"""The row of every injected class together."""
DEFAULT_SHARE = 0.2
"""The selection's size, as a share of the probe's pool, where neither --size nor the config gives one."""


def share_ratio(selected: int, n_selected: int, in_pool: int, n_pool: int) -> float | None:
    """(selected / n_selected) / (in_pool / n_pool): a class's share of the selection over its share of the pool
    (random ≈ 1, a selector that never keeps the class 0); None where the class or the selection is empty."""
    if not in_pool or not n_selected or not n_pool:
        return None
    return (selected / n_selected) / (in_pool / n_pool)


def count_classes(path: Path) -> tuple[int, Counter]:
    """(records, injected records per class) of a selection the probe made."""
    counts: Counter = Counter()
    total = 0
    for record in iter_records(path):
        total += 1
        if MARK in record.raw:
            counts[record.raw[MARK]] += 1
    return total, counts


def ratios(pool: ProbePool, n_selected: int, counts: Counter) -> dict[str, float | None]:
    """Per class, and for all classes together, its share ratio."""
    out = {name: share_ratio(counts[name], n_selected, n, pool.size) for name, n in pool.counts.items()}
    out[ALL] = share_ratio(sum(counts[name] for name in pool.counts), n_selected, sum(pool.counts.values()),
                           pool.size)
    return out


@dataclass
class ProbeRun:
    """One seed's probe: the pool it built, and what the selector and random kept of each class."""

    seed: int
    pool: ProbePool
    size: int
    selected: int
    selected_counts: Counter
    random_selected: int
    random_counts: Counter
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "pool_records": self.pool.size, "original_records": self.pool.n_original,
                "left_out_bad_records": self.pool.n_left_out, "size": self.size,
                "pool_counts": dict(self.pool.counts),
                "selected": self.selected, "selected_counts": {n: self.selected_counts[n] for n in self.pool.counts},
                "random_selected": self.random_selected,
                "random_counts": {n: self.random_counts[n] for n in self.pool.counts},
                "ratios": ratios(self.pool, self.selected, self.selected_counts),
                "random_ratios": ratios(self.pool, self.random_selected, self.random_counts),
                "select_seconds": round(self.seconds, 3)}


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean, min and max of the seeds' ratios (None when no seed has one)."""
    known = [v for v in values if v is not None]
    if not known:
        return {"mean": None, "min": None, "max": None}
    return {"mean": sum(known) / len(known), "min": min(known), "max": max(known)}


def summarize(runs: list[dict[str, Any]], classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per class (and all together): pool count per seed's mean, and the spread of both ratios over seeds."""
    summary = {}
    for name in [*classes, ALL]:
        summary[name] = {"selector": spread([run["ratios"][name] for run in runs]),
                         "random": spread([run["random_ratios"][name] for run in runs])}
    return summary


@dataclass(frozen=True)
class ProbeSettings:
    """What to inject and how large a selection to make."""

    rate: float = 0.2
    seeds: tuple[int, ...] = (0,)
    classes: tuple[str, ...] = tuple(name for name, entry in CLASSES.items() if entry.default)
    size: int | None = None
    """Records to select; None: the config's filter size if it wrote one, else DEFAULT_SHARE of the pool."""

    def check(self) -> None:
        if not math.isfinite(self.rate):
            raise DeitaError(f"--rate: {self.rate} is not a finite number")
        if not 0 < self.rate < 1:
            raise DeitaError(f"--rate: {self.rate} is out of range (must be above 0 and below 1)")
        if self.size is not None and not 1 <= self.size < 2**63:
            raise DeitaError(f"--size: {self.size} is out of range (must be between 1 and {2**63 - 1})")
        for seed in self.seeds:
            if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
                raise ConfigError(f"{seed} is out of range (must be between {SEED_RANGE[0]} and {SEED_RANGE[1]})",
                                  ["--seed"], usage=True)
        unknown = [name for name in self.classes if name not in CLASSES]
        if unknown or not self.classes:
            raise DeitaError(f"unknown probe class {unknown[0] if unknown else '(none given)'!r} (expected some of "
                             f"{', '.join(CLASSES)})")
        if not self.seeds:
            raise DeitaError("--seeds needs at least one seed")


def probe_folder(output: Path) -> Path:
    """The probe's own folder, beside its JSON: the mixed pools, the selections, the caches."""
    return output.with_name(output.name + ".work")


def _select_config(config: SelectConfig, size: int, cache: Path, strategy: str | None = None) -> SelectConfig:
    filter_config = dataclasses.replace(config.filter, size=size)
    if strategy is not None:
        filter_config = dataclasses.replace(filter_config, strategy=strategy)
    return dataclasses.replace(config, filter=filter_config, report=dataclasses.replace(config.report, write=False),
                               run=dataclasses.replace(config.run, cache_dir=str(cache), quiet=True))


def probe_one(records: list[dict], n_left_out: int, folder: Path, config: SelectConfig, settings: ProbeSettings,
              seed: int, size_written: int | None) -> ProbeRun:
    """Build seed `seed`'s pool, select from it with `config` and with random, and count what each kept."""
    from deita.workflow import run_select

    seed_folder = folder / f"seed-{seed}"
    pool = write_probe_pool(records, n_left_out, seed_folder / "pool.jsonl", settings.classes, settings.rate, seed)
    size = settings.size or size_written or max(1, round(DEFAULT_SHARE * pool.size))
    if size >= pool.size:
        raise DeitaError(f"the selection size ({size:,}) is not below the probe's pool ({pool.size:,} records), so "
                         "every record would be kept; give --size")
    start = time.perf_counter()
    run_select(pool.path, seed_folder / "selected.jsonl", _select_config(config, size, folder / "cache"))
    seconds = time.perf_counter() - start
    run_select(pool.path, seed_folder / "random.jsonl", _select_config(config, size, folder / "cache", "random"))
    selected, counts = count_classes(seed_folder / "selected.jsonl")
    random_selected, random_counts = count_classes(seed_folder / "random.jsonl")
    return ProbeRun(seed, pool, size, selected, counts, random_selected, random_counts, seconds)


def run_probe(pool_path: str | Path, output: str | Path, config: SelectConfig, settings: ProbeSettings,
              size_written: int | None = None) -> dict[str, Any]:
    """Probe `config`'s selection on `pool_path` once per seed; write and return the probe JSON."""
    settings.check()
    pool_path, output = Path(pool_path), Path(output)
    folder = probe_folder(output)
    if not pool_path.exists():
        raise DeitaError(f"{pool_path}: no such file or directory")
    check_paths({"pool": pool_path}, {"--output": output, "probe folder": folder})
    check_writable("--output", output)
    records, n_left_out = read_pool(pool_path)
    runs = [probe_one(records, n_left_out, folder, config, settings, seed, size_written).to_json()
            for seed in settings.seeds]
    result = {"pool": str(pool_path), "rate": settings.rate, "seeds": list(settings.seeds),
              "classes": list(settings.classes), "selector": selector_of(config), "runs": runs,
              "summary": summarize(runs, settings.classes)}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    return result


def selector_of(config: SelectConfig) -> dict[str, Any]:
    """What was probed, in words a reader recognises."""
    selector = {"preset": config.preset, "strategy": config.filter.strategy, "sort_key": list(config.sort_key()),
                "threshold": config.filter.threshold, "embed_kind": config.embed.kind}
    if config.ifd is not None:
        selector.update(ifd_model=config.ifd.model, max_ifd=config.filter.max_ifd)
    return selector


def _cell(spread_of: dict[str, float | None], several: bool) -> str:
    if spread_of["mean"] is None:
        return "–"
    text = f"{spread_of['mean']:.2f}"
    return text + (f" ({spread_of['min']:.2f}–{spread_of['max']:.2f})" if several else "")


def table_lines(result: dict[str, Any]) -> list[str]:
    """The stdout table: per class, its records in the pool and both ratios (mean and, over seeds, range)."""
    several = len(result["runs"]) > 1
    selector = result["selector"]
    name = f"{selector['preset']}/{selector['strategy']}"
    width = max(len(n) for n in [*result["classes"], ALL, "class"])
    columns = 26 if several else 10
    lines = [f"{'class':<{width}}  {'in pool':>8}  {name:>{columns}}  {'random':>{columns}}"]
    for cls in [*result["classes"], ALL]:
        counts = [sum(run["pool_counts"].values()) if cls == ALL else run["pool_counts"][cls]
                  for run in result["runs"]]
        row = result["summary"][cls]
        lines.append(f"{cls:<{width}}  {round(sum(counts) / len(counts)):>8,}  "
                     f"{_cell(row['selector'], several):>{columns}}  {_cell(row['random'], several):>{columns}}")
    first = result["runs"][0]
    lines.append(f"ratio = the class's share of the selection / its share of the pool (random ≈ 1, perfect 0); "
                 f"{first['size']:,} selected of {first['pool_records']:,} records "
                 f"({first['original_records']:,} of the pool + {sum(first['pool_counts'].values()):,} injected), "
                 f"seeds {', '.join(map(str, result['seeds']))}")
    if first["left_out_bad_records"]:
        lines.append(f"{first['left_out_bad_records']:,} bad records of the pool were left out of the probe")
    return lines
