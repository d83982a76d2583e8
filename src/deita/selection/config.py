"""`FilterConfig`: the options of `deita filter` and of the `filter:` YAML section (light: no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from deita.config import SEED_RANGE, Config, option
from deita.errors import ConfigError
from deita.runtime.devices import DEVICE_HELP
from deita.selection.strategies import STRATEGIES

AGGREGATES: dict[str, str] = {"sum": "Σ over turns", "mean": "mean over turns", "max": "max over turns"}
"""How a record's per-turn products fold into its score (`--aggregate` name → what reports say). `sum` (the
paper's) favours records with more turns; `mean` and `max` do not grow with the turn count."""
DEFAULT_SOURCE_FIELD = "source"


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
    aggregate: str = option("sum", "How per-turn complexity × quality fold into a record's score: sum (the paper's; "
                            "grows with the number of turns), mean or max.", choices=AGGREGATES)
    token_budget: int | None = option(None, "Select records holding at most this many tokens (every message, "
                                      "system included, by --budget-tokenizer): the walk skips a record that would "
                                      "overflow it and walks on. With --size -1 only the budget limits.", min=1)
    budget_tokenizer: str | None = option(None, "Tokenizer counting --token-budget: a tokenizer.json or a local "
                                          "folder (default: the scorer's, else the embedder's; `deita filter`: "
                                          "the packaged MiniLM's).")
    max_share: float | None = option(None, "No value of --source-field takes more than this fraction of the "
                                     "selection: each holds at most floor(F × --size) records (needs a --size).",
                                     min=0.0, max=1.0)
    source_field: str | None = option(None, "Record field naming each record's source (any field: a source, a "
                                      "language, a task): --max-share balances its values, records without it "
                                      "forming their own group; select's report breaks the selection down by it "
                                      f"(default: `{DEFAULT_SOURCE_FIELD}`).")
    annotate: bool = option(False, "Add a `deita` field to each selected record: its rank, final score and "
                            "nearest selected neighbour with the similarity.")

    def check(self) -> None:
        """The budget and the balance: what they need, and the strategies that walk a ranking."""
        if self.max_share is not None:
            if self.max_share <= 0:
                raise ConfigError(f"{self.max_share} is out of range (must be above 0 and at most 1)", ["max_share"])
            if self.size == -1:
                raise ConfigError("max_share needs a record count: it caps each group at floor(max_share × size) "
                                  "records, and size is -1", ["max_share", "size"], rule=True, usage=True)
            if self.group_cap() < 1:
                raise ConfigError(f"max_share {self.max_share} × size {self.size} leaves no room for any record of "
                                  "a group; raise one of them", ["max_share", "size"], rule=True)
        if self.budget_tokenizer is not None and self.token_budget is None:
            raise ConfigError("budget_tokenizer counts token_budget, which is not set", ["budget_tokenizer",
                              "token_budget"], rule=True)
        limits = [name for name in ("token_budget", "max_share") if getattr(self, name) is not None]
        if limits and not STRATEGIES[self.strategy].ranks:
            raise ConfigError(f"{limits[0]} needs a strategy that walks a ranking; strategy {self.strategy} does not",
                              [limits[0], "strategy"], rule=True)

    def group_cap(self) -> int:
        """Records allowed per group under --max-share (floor(F × size)); exact for shares like 0.1 × 30."""
        assert self.max_share is not None
        return math.floor(round(self.max_share * self.size, 9))

    def group_field(self) -> str:
        """The field --max-share balances."""
        return self.source_field or DEFAULT_SOURCE_FIELD

    def ignored_options(self) -> dict[str, str]:
        """The options the chosen strategy does not read, and the tokenizer when no budget is set."""
        uses = STRATEGIES[self.strategy].uses
        ignored = {name: "strategy" for name in ("threshold", "sort_key", "block_size", "device", "seed", "max_ifd",
                                                 "aggregate") if name not in uses}
        if self.token_budget is None:
            ignored["budget_tokenizer"] = "token_budget"
        return ignored
