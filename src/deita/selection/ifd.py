"""Record scores for IFD selection (Cherry LLM, Superfiltering): the mean IFD of a record's turns below a cap.

An IFD at or above 1 means the instruction does not help the model predict the response (or hurts it): such a
turn is left out, as the papers do, and so is a turn without an IFD (null: an empty response). A record with
no turn left cannot be selected. Higher IFD ranks first: the instruction is hard to follow yet still helps.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from deita.errors import DeitaError, quote

IFD_KEY = "ifd_scores"


def ifd_record_scores(per_record: Sequence[object], max_ifd: float,
                      locations: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, selectable): per record, the mean of its turns' IFD below `max_ifd` (0 where none is), and
    whether it has such a turn. `per_record[i]` is record i's `ifd_scores`; `locations[i]` names it in errors."""
    scores = np.zeros(len(per_record), dtype=np.float64)
    selectable = np.zeros(len(per_record), dtype=bool)
    for i, values in enumerate(per_record):
        where = locations[i] if locations is not None else f"record {i}"
        kept = [v for v in _turn_values(values, where) if v is not None and v < max_ifd]
        if kept:
            scores[i], selectable[i] = math.fsum(kept) / len(kept), True
    return scores, selectable


def _turn_values(values: object, where: str) -> list[float | None]:
    """One record's per-turn IFD values, refusing what no `deita score --type ifd` writes."""
    if values is None:
        raise DeitaError(f"{where}: missing '{IFD_KEY}'; score the data first with deita score --type ifd --model M")
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Sequence):
        raise DeitaError(f"{where}: '{IFD_KEY}' must be a list of per-turn values, got {type(values).__name__}")
    if not values:
        raise DeitaError(f"{where}: '{IFD_KEY}' is empty")
    checked: list[float | None] = []
    for turn, value in enumerate(values):
        if value is None:
            checked.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise DeitaError(f"{where}: '{IFD_KEY}' turn {turn} is {quote(value)}, not a number or null")
        if not math.isfinite(value) or value <= 0:
            raise DeitaError(f"{where}: '{IFD_KEY}' turn {turn} is {value}; an IFD is a positive finite ratio")
        checked.append(float(value))
    return checked
