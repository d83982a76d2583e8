"""Selection: final scores, the blocked exact Repr Filter, and baseline strategies."""

from deita.selection.baselines import (
    STRATEGIES,
    kcenter_select,
    length_select,
    random_select,
    score_select,
)
from deita.selection.deita import SelectionResult, deita_filter
from deita.selection.scores import DEFAULT_SCORE_KEYS, final_scores

__all__ = [
    "DEFAULT_SCORE_KEYS",
    "STRATEGIES",
    "SelectionResult",
    "deita_filter",
    "final_scores",
    "kcenter_select",
    "length_select",
    "random_select",
    "score_select",
]
