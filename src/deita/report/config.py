"""`ReportConfig`: the options of `deita report` and of the `report:` YAML section (light: no plotting)."""

from __future__ import annotations

from dataclasses import dataclass

from deita.config import SEED_RANGE, Config, option


@dataclass(frozen=True)
class ReportConfig(Config):
    """Options of `deita report` (and of the report `deita select` writes)."""

    write: bool = option(True, "select: write the HTML report OUTPUT.report.html.", flag="--report")
    source_field: str | None = option(None, "Record field naming each record's source, for a per-source "
                                      "breakdown (default: `source` when the records have it); in `select`, "
                                      "--max-share balances its values too.")
    examples: int = option(8, "Near-duplicate pairs shown as evidence.", min=0, max=10_000)
    text_chars: int = option(600, "Characters of each record's text shown in examples.", min=50, max=1_000_000)
    seed: int = option(0, "Seed for sampling the examples shown.", min=SEED_RANGE[0], max=SEED_RANGE[1])
