"""`FilterConfig`: the options of `deita filter` and of the `filter:` YAML section (light: no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from deita.config import option
from deita.runtime.devices import DEVICE_HELP

STRATEGIES: tuple[str, ...] = ("deita", "random", "score", "length", "kcenter", "ifd")


@dataclass(frozen=True)
class FilterConfig:
    """Options of `deita filter` and of the `filter:` YAML section."""

    size: int = option(6000, "Samples to select; -1 walks the whole pool.", min=1, allow=(-1,))
    threshold: float = option(0.9, "Skip a candidate whose cosine similarity to an accepted sample is above this.",
                              min=-1.0, max=1.0)
    sort_key: tuple[str, ...] | None = option(
        None, "Comma-separated per-turn score fields; Σ over turns of their product ranks the pool (default: "
        "complexity_scores,quality_scores, or the length fields an offline run wrote).")
    strategy: str = option("deita", "deita (score-first diversity filter), random, score, length, kcenter, or ifd "
                           "(mean IFD of the turns below --max-ifd, highest first, with the same diversity filter; "
                           "needs ifd_scores from `deita score --type ifd`).", choices=STRATEGIES)
    device: str = option("auto", DEVICE_HELP)
    block_size: int = option(1024, "Candidates compared per matrix product (does not change the result).", min=1)
    seed: int = option(42, "Seed for random and kcenter.", min=0)
    max_ifd: float = option(1.0, "ifd: leave out turns whose IFD is at or above this (at 1 the instruction does not "
                            "help predict the response); a record with no turn left is not selectable.", min=0.0)
    annotate: bool = option(False, "Add a `deita` field to each selected record: its rank, final score and "
                            "nearest selected neighbour with the similarity.")
