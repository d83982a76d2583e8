"""Selection strategies, in one table: `STRATEGIES` maps a `--strategy` name to what the strategy reads and
the function that selects. A new strategy is one module (a function `select(pool, config)`) plus one line here.

Light on purpose: `FilterConfig` takes its choices from this table, and `--help` must not import torch, so
each entry's function imports its module when it runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from deita.selection.config import FilterConfig
    from deita.selection.deita import SelectionResult
    from deita.selection.quota import Quota


@dataclass(frozen=True)
class SelectionPool:
    """What a strategy may read of the pool: its size and, as the strategy's entry asks, columns by ordinal."""

    size: int
    scores: np.ndarray | None = None
    """Final scores (Σ over turns of the sort key's product)."""
    lengths: np.ndarray | None = None
    """Response characters per record."""
    embeddings: np.ndarray | None = None
    """One row per record (may be memory-mapped)."""
    selectable: np.ndarray | None = None
    """A boolean mask: the records a strategy may pick (None: all)."""
    quota: Quota | None = None
    """A token budget and a cap per group the walk applies (None: only the size limits)."""


@dataclass(frozen=True)
class Strategy:
    """A strategy's entry: its function ("module:name", imported on use), what it reads, and which
    `FilterConfig` options it uses beyond `size` (the others are pointless with it)."""

    function: str
    help: str
    scores: bool = False
    lengths: bool = False
    embeddings: bool = False
    ifd: bool = False
    """Ranks by the records' IFD (`ifd_scores`, mean of the turns below --max-ifd) instead of final scores."""
    uses: tuple[str, ...] = ()
    ranks: bool = True
    """Walks a ranking, so a token budget and a cap per group can skip records and walk on."""

    def select(self, pool: SelectionPool, config: FilterConfig) -> SelectionResult:
        module, _, name = self.function.partition(":")
        select: Callable[[SelectionPool, Any], SelectionResult] = getattr(importlib.import_module(module), name)
        return select(pool, config)


def _timed(indices_of: Callable[[SelectionPool, Any], np.ndarray], examined_all: bool = False):
    """A strategy from a function that returns a ranking's first `size` indices (-1: the whole ranking): adds
    the examined count and the time, and walks the whole ranking under the pool's quota when it has one."""

    def select(pool: SelectionPool, config: Any) -> SelectionResult:
        from deita.selection.deita import SelectionResult

        start = time.perf_counter()
        if pool.quota is None:
            indices = indices_of(pool, config)
            return SelectionResult(indices, pool.size if examined_all else len(indices), time.perf_counter() - start)
        from deita.selection.quota import quota_walk

        indices, examined, counts = quota_walk(indices_of(pool, dataclasses.replace(config, size=-1, max_share=None)),
                                               config.size, pool.quota, pool.size)
        return SelectionResult(indices, examined, time.perf_counter() - start, quota=counts)

    return select


def _device(config: Any) -> str:
    from deita.runtime.devices import resolve_device

    return str(resolve_device(config.device))


def deita(pool: SelectionPool, config: Any) -> SelectionResult:
    from deita.selection.deita import deita_filter

    return deita_filter(pool.scores, pool.embeddings, config.size, config.threshold, config.block_size,
                        _device(config), selectable=pool.selectable, quota=pool.quota)


def _random(pool: SelectionPool, config: Any) -> np.ndarray:
    from deita.selection.baselines import random_select

    return random_select(pool.size, config.size, config.seed)


def _score(pool: SelectionPool, config: Any) -> np.ndarray:
    from deita.selection.baselines import score_select

    return score_select(pool.scores, config.size)


def _length(pool: SelectionPool, config: Any) -> np.ndarray:
    from deita.selection.baselines import length_select

    return length_select(pool.lengths, config.size)


def _kcenter(pool: SelectionPool, config: Any) -> np.ndarray:
    from deita.selection.baselines import kcenter_select

    return kcenter_select(pool.embeddings, config.size, config.seed, _device(config), config.block_size)


random = _timed(_random)
score = _timed(_score)
length = _timed(_length)
kcenter = _timed(_kcenter, examined_all=True)

STRATEGIES: dict[str, Strategy] = {
    "deita": Strategy("deita.selection.strategies:deita", "score-first diversity filter (the paper)", scores=True,
                      embeddings=True, uses=("threshold", "sort_key", "block_size", "device", "aggregate")),
    "random": Strategy("deita.selection.strategies:random", "a seeded uniform sample", uses=("seed",)),
    "score": Strategy("deita.selection.strategies:score", "top scores, no diversity", scores=True,
                      uses=("sort_key", "aggregate")),
    "length": Strategy("deita.selection.strategies:length", "longest responses", lengths=True),
    "kcenter": Strategy("deita.selection.strategies:kcenter", "k-center greedy on the embeddings",
                        embeddings=True, uses=("seed", "block_size", "device"), ranks=False),
    "ifd": Strategy("deita.selection.strategies:deita", "mean IFD of the turns below --max-ifd, highest first, "
                    "with the same diversity filter (needs ifd_scores: `deita score --type ifd`, or select's "
                    "--ifd-model)", ifd=True,
                    embeddings=True, uses=("threshold", "block_size", "device", "max_ifd")),
}
