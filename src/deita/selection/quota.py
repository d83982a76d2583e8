"""Limits a selection walk applies as it accepts: a token budget and a cap per group (`--max-share`).

Pure and light (numpy only): the walk hands each candidate that passed its own test (diversity, for the Repr
Filter) to `QuotaWalk.admit`, which takes it when it fits the budget and its group still has room, and
otherwise skips it and walks on. A skipped record takes nothing, so it blocks no later candidate. The same
object serves the blocked Repr Filter (`deita.selection.deita`) and the plain rankings (`quota_walk`), and a
caller that computes its columns in one pass (token costs, group ids) passes them here as arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from deita.errors import DeitaError


@dataclass(frozen=True)
class Quota:
    """What limits a selection besides its size: per-record token costs with a budget, and group ids with a
    cap per group. Either pair may be None."""

    costs: np.ndarray | None = None
    """Tokens per record (by pool ordinal), non-negative integers."""
    budget: int | None = None
    """The selected records hold at most this many tokens."""
    groups: np.ndarray | None = None
    """A group id per record (by pool ordinal), 0 ≤ id < number of groups."""
    cap: int | None = None
    """At most this many records per group."""

    def __post_init__(self) -> None:
        if (self.costs is None) != (self.budget is None):
            raise DeitaError("a token budget needs token costs, and token costs need a budget")
        if (self.groups is None) != (self.cap is None):
            raise DeitaError("a cap per group needs group ids, and group ids need a cap")
        if self.budget is not None and self.budget < 1:
            raise DeitaError(f"the token budget must be at least 1, got {self.budget}")
        if self.cap is not None and self.cap < 1:
            raise DeitaError(f"the cap per group must be at least 1, got {self.cap}")
        for name, column in (("token costs", self.costs), ("group ids", self.groups)):
            if column is not None and (column.ndim != 1 or not np.issubdtype(column.dtype, np.integer)
                                       or (len(column) and column.min() < 0)):
                raise DeitaError(f"{name} must be a 1-D array of non-negative integers")

    def check_size(self, n_pool: int) -> None:
        """The columns must cover the pool exactly, one value per record."""
        for name, column in (("token costs", self.costs), ("group ids", self.groups)):
            if column is not None and len(column) != n_pool:
                raise DeitaError(f"{name} for {len(column)} records but the pool has {n_pool}")

    def walk(self, order: np.ndarray) -> QuotaWalk:
        """The state of one walk over `order` (pool ordinals, in walk order)."""
        return QuotaWalk(self, order)


class QuotaWalk:
    """One walk's running totals: tokens taken, records per group, and what was skipped for which limit."""

    def __init__(self, quota: Quota, order: np.ndarray) -> None:
        self.quota = quota
        self.costs = quota.costs.astype(np.int64).tolist() if quota.costs is not None else None
        self.groups = quota.groups.astype(np.int64).tolist() if quota.groups is not None else None
        self.tokens = 0
        self.per_group = [0] * (max(self.groups, default=-1) + 1) if self.groups is not None else []
        self.over_budget = 0
        self.group_full = 0
        self._suffix_min = None
        if quota.costs is not None and len(order):
            # the smallest cost from each walk position on: the walk may stop once nothing left can fit
            self._suffix_min = np.minimum.accumulate(quota.costs[order][::-1])[::-1]
            self._last = int(self._suffix_min[-1])
        self.stop = self._stop()

    def _stop(self) -> int:
        """The first walk position from which no candidate fits the budget left (the order's length if none)."""
        if self._suffix_min is None:
            return 2**62
        left = self.quota.budget - self.tokens
        if left >= self._last:  # the common case, far from the budget: every position can still fit one
            return len(self._suffix_min)
        return int(np.searchsorted(self._suffix_min, left, side="right"))

    def admit(self, index: int) -> bool:
        """Take pool record `index` when it fits; otherwise count why it was skipped."""
        if self.groups is not None and self.per_group[self.groups[index]] >= self.quota.cap:
            self.group_full += 1
            return False
        if self.costs is not None:
            cost = self.costs[index]
            if self.tokens + cost > self.quota.budget:
                self.over_budget += 1
                return False
            self.tokens += cost
            self.stop = self._stop()
        if self.groups is not None:
            self.per_group[self.groups[index]] += 1
        return True


@dataclass(frozen=True)
class QuotaCounts:
    """What the limits did in one walk."""

    tokens: int
    """Tokens of the selected records (0 without a budget)."""
    over_budget: int
    """Candidates skipped because they would overflow the budget."""
    group_full: int
    """Candidates skipped because their group was full."""

    @classmethod
    def of(cls, walk: QuotaWalk) -> QuotaCounts:
        return cls(walk.tokens, walk.over_budget, walk.group_full)


def quota_walk(order: np.ndarray, size: int, quota: Quota, n_pool: int | None = None
               ) -> tuple[np.ndarray, int, QuotaCounts]:
    """Walk a ranking (`order`: pool ordinals, best first) under `quota`: (selected indices in walk order,
    candidates examined, counts). Stops at `size` records (-1: no limit) or when nothing left can fit.
    `n_pool` (default: the ranking's length) is the pool size the columns must match."""
    n_pool = len(order) if n_pool is None else n_pool
    quota.check_size(n_pool)
    walk = quota.walk(order)
    target = len(order) if size == -1 else size
    chosen: list[int] = []
    position = 0
    for position, index in enumerate(order.tolist()):
        if position >= walk.stop:
            break
        if walk.admit(index):
            chosen.append(index)
            if len(chosen) == target:
                position += 1
                break
    else:
        position = len(order)
    return np.asarray(chosen, dtype=np.int64), position, QuotaCounts.of(walk)


class GroupColumn:
    """Group ids of records added one by one, by the value of one field. Records without the field (or with
    null) form one group of their own; a value that is not a string groups by its JSON text and its type, so
    1 and "1" differ (named `1 (int)` and `1`)."""

    MISSING = "(no field)"

    def __init__(self, field: str) -> None:
        self.field = field
        self.ids: list[int] = []
        self._keys: dict[str | None, int] = {}

    def add(self, raw: dict) -> None:
        value = raw.get(self.field)
        if value is None or isinstance(value, str):
            key = value
        else:
            key = f"{json.dumps(value, sort_keys=True, ensure_ascii=False)} ({type(value).__name__})"
        self.ids.append(self._keys.setdefault(key, len(self._keys)))

    @classmethod
    def restored(cls, field: str, ids: np.ndarray, keys: list[str | None]) -> GroupColumn:
        """A column saved as its ids and `keys()` (the one-pass select's columns), read back."""
        column = cls(field)
        column.ids = np.asarray(ids, dtype=np.int64).tolist()
        column._keys = {key: i for i, key in enumerate(keys)}
        return column

    def keys(self) -> list[str | None]:
        """Each group's key (the field's value; None for records without it), by id."""
        return list(self._keys)

    def names(self) -> list[str]:
        """Each group's name, by id."""
        return [self.MISSING if key is None else key for key in self._keys]

    def array(self) -> np.ndarray:
        return np.asarray(self.ids, dtype=np.int64)

    def count_selected(self, indices: np.ndarray) -> dict[str, int]:
        """Selected records per group name, largest first (groups with none left out)."""
        counts = np.bincount(self.array()[indices], minlength=len(self._keys)) if len(indices) else []
        names = self.names()
        return {names[i]: int(counts[i]) for i in np.argsort(-np.asarray(counts), kind="stable") if counts[i]}
