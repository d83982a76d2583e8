"""Final per-sample scores (DEITA.md §4.1): Σ over turns of the product of the per-turn score lists."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from deita.errors import DeitaError, quote
from deita.selection.config import AGGREGATES

DEFAULT_SCORE_KEYS: tuple[str, ...] = ("complexity_scores", "quality_scores")
LENGTH_SCORE_KEYS = ("instruction_lengths", "response_lengths")


def resolve_sort_key(sort_key: tuple[str, ...] | None, first: dict | None) -> tuple[str, ...]:
    """`sort_key` when given, or the score fields the records carry: Deita scores, else length scores (times
    the offline signals' gate where an offline run stored it)."""
    from deita.scoring.signals import QUALITY_FIELD

    if sort_key:
        return sort_key
    if first is not None and all(key in first for key in LENGTH_SCORE_KEYS) \
            and not any(key in first for key in DEFAULT_SCORE_KEYS):
        return (*LENGTH_SCORE_KEYS, QUALITY_FIELD) if QUALITY_FIELD in first else LENGTH_SCORE_KEYS
    return DEFAULT_SCORE_KEYS


def final_scores(
    per_key_lists: Sequence[Sequence[Sequence[float] | None]],
    keys: Sequence[str] = DEFAULT_SCORE_KEYS,
    locations: Sequence[str] | None = None,
    aggregate: str = "sum",
) -> np.ndarray:
    """Combine per-turn scores into one float64 score per record: per turn the product of the keys' values,
    folded over the turns by `aggregate` (`AGGREGATES`: sum, mean or max).

    `per_key_lists[k][i]` is record i's per-turn list for `keys[k]`. `locations[i]` (default "record i")
    names the record in errors, e.g. a file and line given by the data layer. The values are checked in
    bulk where they are plain finite numbers, record by record (to name the problem) otherwise; either way
    the products and the sums over turns run in one vectorised pass, in the order `record_score` uses, so
    both give the same floats.
    """
    _check_aggregate(aggregate)
    n_records = _check_shapes(per_key_lists, keys, locations)
    checked = _plain_columns(per_key_lists)
    if checked is None:  # something to refuse, or values of other types: record by record, naming the problem
        columns: list[list[np.ndarray]] = [[] for _ in keys]
        lengths = []
        for i in range(n_records):
            where = locations[i] if locations is not None else f"record {i}"
            turns = [_turn_scores(lists[i], key, where)
                     for key, lists in zip(keys, per_key_lists, strict=True)]
            _check_turn_counts(turns, keys, where)
            for column, values in zip(columns, turns, strict=True):
                column.append(values)
            lengths.append(len(turns[0]))
        checked = ([np.concatenate(c) if c else np.zeros(0) for c in columns], np.asarray(lengths, dtype=np.int64))
    flat, lengths = checked
    return final_scores_flat(flat, lengths, aggregate)


def final_scores_flat(flat: Sequence[np.ndarray], lengths: np.ndarray, aggregate: str = "sum") -> np.ndarray:
    """`final_scores` of values already checked: one finite float64 array per key (every record's turns in
    order) and the turns per record, equal for all keys, folded by `aggregate`; the same floats `final_scores`
    gives."""
    _check_aggregate(aggregate)
    if not len(lengths):
        return np.zeros(0, dtype=np.float64)
    products = np.array(flat[0], dtype=np.float64)
    for more in flat[1:]:
        products *= more
    if aggregate == "max":
        return np.maximum.reduceat(products, np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
    totals = _sums_in_order(products, np.asarray(lengths, dtype=np.int64))
    return totals / lengths if aggregate == "mean" else totals


def _check_aggregate(aggregate: str) -> None:
    if aggregate not in AGGREGATES:
        raise DeitaError(f"unknown aggregate {quote(aggregate)} (valid: {', '.join(AGGREGATES)})")


def _sums_in_order(products: np.ndarray, lengths: np.ndarray, columns: int = 32) -> np.ndarray:
    """Per record, the sum of its run of `products`, added turn by turn in order as `record_score` adds
    (numpy's own sums group the terms differently): vectorised over records for the first `columns`
    turns, in plain Python for the rare longer records."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    totals = np.zeros(len(lengths), dtype=np.float64)
    for turn in range(min(int(lengths.max(initial=0)), columns)):
        has = lengths > turn
        totals[has] += products[starts[has] + turn]
    for i in np.flatnonzero(lengths > columns):
        total = 0.0
        for product in products[starts[i] : starts[i] + lengths[i]].tolist():
            total += product
        totals[i] = total
    return totals


def _plain_columns(per_key_lists: Sequence[Sequence[Sequence[float] | None]]
                   ) -> tuple[list[np.ndarray], np.ndarray] | None:
    """Every key's per-turn values flattened (one float64 array each) and the turns per record, when every
    list is a non-empty list of finite plain floats or ints and the keys agree on each record's turn
    count: the common case, checked in bulk. None otherwise."""
    first = per_key_lists[0]
    if not all(type(values) is list and values for values in first):
        return None
    lengths = np.fromiter(map(len, first), dtype=np.int64, count=len(first))
    flat = []
    for key_lists in per_key_lists:
        if key_lists is not first and (
            not all(type(values) is list for values in key_lists)
            or not np.array_equal(np.fromiter(map(len, key_lists), dtype=np.int64, count=len(key_lists)), lengths)
        ):
            return None
        values = [v for values in key_lists for v in values]
        if not set(map(type, values)) <= {float, int}:
            return None
        column = np.array(values, dtype=np.float64)
        if not np.isfinite(column).all():
            return None
        flat.append(column)
    return flat, lengths


def record_score(per_key: Sequence[Sequence[float] | None], keys: Sequence[str], where: str,
                 aggregate: str = "sum") -> float:
    """One record's final score from its per-turn lists (one per key), folded by `aggregate` (summed turn by
    turn in order, the mean of that sum, or the max); errors name `where`. Plain Python: a record has a
    handful of turns, and this runs once per record."""
    _check_aggregate(aggregate)
    turns = [_turn_scores(values, key, where) for key, values in zip(keys, per_key, strict=True)]
    _check_turn_counts(turns, keys, where)
    total = 0.0
    products = []
    for values in zip(*turns, strict=True):
        product = 1.0
        for value in values:
            product *= value
        total += product
        products.append(product)
    if aggregate == "max":
        return max(products)
    return total / len(products) if aggregate == "mean" else total


def _check_shapes(per_key_lists: Sequence[Sequence[Sequence[float] | None]], keys: Sequence[str],
                  locations: Sequence[str] | None) -> int:
    """Return the record count after checking keys, lists and locations line up."""
    if not keys:
        raise DeitaError("at least one score key is needed")
    if len(per_key_lists) != len(keys):
        raise DeitaError(f"{len(keys)} score keys but {len(per_key_lists)} lists of scores")
    n_records = len(per_key_lists[0])
    for key, lists in zip(keys, per_key_lists, strict=True):
        if len(lists) != n_records:
            raise DeitaError(f"'{key}' has {len(lists)} records but '{keys[0]}' has {n_records}")
    if locations is not None and len(locations) != n_records:
        raise DeitaError(f"{len(locations)} locations for {n_records} records")
    return n_records


def _turn_scores(values: Sequence[float] | None, key: str, where: str) -> list[float]:
    """One record's list for one key as float64, refusing missing, empty, non-numeric or non-finite."""
    if values is None:
        raise DeitaError(f"{where}: missing '{key}'; score the data first")
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        raise DeitaError(f"{where}: '{key}' must be a list of per-turn scores, got {type(values).__name__}")
    if len(values) == 0:
        raise DeitaError(f"{where}: '{key}' is empty")
    for turn, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise DeitaError(f"{where}: '{key}' turn {turn} is {quote(value)}, not a number")
        if not math.isfinite(value):
            raise DeitaError(f"{where}: '{key}' turn {turn} is {value}; scores must be finite")
    return [float(value) for value in values]


def _check_turn_counts(turns: list[list[float]], keys: Sequence[str], where: str) -> None:
    """All keys of one record must score the same number of turns."""
    for key, values in zip(keys[1:], turns[1:], strict=True):
        if len(values) != len(turns[0]):
            raise DeitaError(f"{where}: '{key}' has {len(values)} turns but '{keys[0]}' has {len(turns[0])}")
