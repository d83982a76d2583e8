"""`FilterConfig`: the options of `deita filter` and of the `filter:` YAML section (light: no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from deita.config import option
from deita.runtime.devices import DEVICE_HELP

STRATEGIES: tuple[str, ...] = ("deita", "random", "score", "length", "kcenter")


@dataclass(frozen=True)
class FilterConfig:
    """Options of `deita filter` and of the `filter:` YAML section."""

    size: int = option(6000, "Samples to select; -1 walks the whole pool.", min=1, allow=(-1,))
    threshold: float = option(0.9, "Skip a candidate whose cosine similarity to an accepted sample is above this.",
                              min=-1.0, max=1.0)
    sort_key: tuple[str, ...] | None = option(
        None, "Comma-separated per-turn score fields; Σ over turns of their product ranks the pool (default: "
        "complexity_scores,quality_scores, or the length fields an offline run wrote).")
    strategy: str = option("deita", "deita (score-first diversity filter), random, score, length or kcenter.",
                           choices=STRATEGIES)
    device: str = option("auto", DEVICE_HELP)
    block_size: int = option(1024, "Candidates compared per matrix product (does not change the result).", min=1)
    seed: int = option(42, "Seed for random and kcenter.", min=0)
    annotate: bool = option(False, "Add a `deita` field to each selected record: its rank, final score and "
                            "nearest selected neighbour with the similarity.")
