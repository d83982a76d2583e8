"""`FilterConfig`: the options of `deita filter` and of the `filter:` YAML section (light: no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from deita.config import SEED_RANGE, Config, option
from deita.runtime.devices import DEVICE_HELP
from deita.selection.strategies import STRATEGIES


@dataclass(frozen=True)
class FilterConfig(Config):
    """Options of `deita filter` and of the `filter:` YAML section."""

    size: int = option(6000, "Samples to select; -1 walks the whole pool.", min=1, allow=(-1,))
    threshold: float = option(0.9, "Skip a candidate whose cosine similarity to an accepted sample is above this.",
                              min=-1.0, max=1.0)
    sort_key: tuple[str, ...] | None = option(
        None, "Comma-separated per-turn score fields; Σ over turns of their product ranks the pool (default: "
        "complexity_scores,quality_scores, or the length fields and quality gate an offline run wrote).")
    strategy: str = option("deita", "Selection strategy: " + "; ".join(
        f"{name}: {entry.help}" for name, entry in STRATEGIES.items()) + ".", choices=STRATEGIES)
    device: str = option("auto", DEVICE_HELP)
    block_size: int = option(1024, "Candidates compared per matrix product (does not change the result).", min=1,
                             max=2**24)
    seed: int = option(42, "Seed for random and kcenter.", min=SEED_RANGE[0], max=SEED_RANGE[1])
    max_ifd: float = option(1.0, "ifd: leave out turns whose IFD is at or above this (at 1 the instruction does not "
                            "help predict the response); a record with no turn left is not selectable.", min=0.0,
                            max=1e6)
    annotate: bool = option(False, "Add a `deita` field to each selected record: its rank, final score and "
                            "nearest selected neighbour with the similarity.")

    def ignored_options(self) -> dict[str, str]:
        """The options the chosen strategy does not read."""
        uses = STRATEGIES[self.strategy].uses
        return {name: "strategy" for name in ("threshold", "sort_key", "block_size", "device", "seed", "max_ifd")
                if name not in uses}
