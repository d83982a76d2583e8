"""Joint ranking: all variants of one seed scored in one call, shown in a seeded random order.

The order is drawn per item from (seed, the item's content), so it does not depend on sharding or
on a rerun, and is saved with the scores. Scores come back by shown position and are mapped to the
variants they belong to. An answer that is not exactly `{"scores": [n whole numbers from 1 to n]}`
is asked for again, up to `tries` times; then the item is rejected with the reason. No score is
ever filled in with a default.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deita.errors import quote
from deita.evol.client import AnswerRejected, ChatClient, Usage, json_schema_format
from deita.evol.config import RankConfig
from deita.evol.prompts import TypePrompts, fill

FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL | re.IGNORECASE)


class RankingFailed(Exception):
    """An item without valid scores; `kind`: "server" (no answer) or "model" (answers came, none valid)."""

    def __init__(self, reason: str, transient: bool = False, kind: str = "model") -> None:
        super().__init__(reason)
        self.reason, self.transient, self.kind = reason, transient, kind


@dataclass(frozen=True)
class Ranking:
    order: list[int]
    """order[k]: the variant shown at position k (labelled [k+1])."""
    scores: list[int]
    """One score per variant, in variant order."""


def item_key(score_type: str, instruction: str, variants: Sequence[str]) -> str:
    """The content of one item to rank, as a short hash (seeds its shown order)."""
    data = json.dumps([score_type, instruction if score_type == "quality" else "", list(variants)])
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def shown_order(seed: int, key: str, count: int) -> list[int]:
    """A permutation of range(count), the same for the same seed and item on every run and machine."""
    order = list(range(count))
    random.Random(f"{seed}:{key}").shuffle(order)
    return order


def scores_by_variant(shown_scores: Sequence[int], order: Sequence[int]) -> list[int]:
    """Scores given by shown position, put back in variant order."""
    scores = [0] * len(order)
    for position, variant in enumerate(order):
        scores[variant] = int(shown_scores[position])
    return scores


def ranking_schema(count: int) -> dict[str, Any]:
    scores = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": count},
              "minItems": count, "maxItems": count}
    return {"type": "object", "properties": {"scores": scores}, "required": ["scores"],
            "additionalProperties": False}


def parse_scores(text: str, count: int) -> list[int]:
    """The shown-order scores of an answer that is exactly `{"scores": [...]}` (a ```json fence around it is
    allowed); ValueError naming the problem otherwise."""
    text = text.strip()
    fenced = FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if not text:
        raise ValueError("empty answer")
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ValueError(f"not JSON ({err}): {text[:80]!r}") from None
    if not isinstance(data, dict) or "scores" not in data:
        raise ValueError(f"no 'scores' in the answer: {text[:80]!r}")
    if set(data) != {"scores"}:
        raise ValueError(f"unexpected keys {sorted(set(data) - {'scores'})} in the answer")
    scores = data["scores"]
    if not isinstance(scores, list) or len(scores) != count:
        raise ValueError(f"'scores' is not a list of {count} numbers: {quote(scores)}")
    for score in scores:
        if isinstance(score, bool) or not isinstance(score, int):
            raise ValueError(f"score {quote(score)} is not a whole number")
        if not 1 <= score <= count:
            raise ValueError(f"score {score} is out of range 1..{count}")
    return scores


def ranking_prompt(prompts: TypePrompts, score_type: str, instruction: str, variants: Sequence[str],
                   order: Sequence[int]) -> str:
    shown = "\n\n".join(fill(prompts.variant, number=str(k + 1), text=variants[v]) for k, v in enumerate(order))
    values = {"count": str(len(variants)), "variants": shown}
    if score_type == "quality":
        values["instruction"] = instruction
    return fill(prompts.rank, **values)


async def rank(client: ChatClient, prompts: TypePrompts, config: RankConfig, score_type: str, instruction: str,
               variants: Sequence[str], usage: Usage) -> Ranking:
    """Scores of every variant from one joint call (retried on bad answers); raises RankingFailed."""
    count = len(variants)
    order = shown_order(config.seed, item_key(score_type, instruction, variants), count)
    messages = prompts.messages(ranking_prompt(prompts, score_type, instruction, variants, order))
    schema = json_schema_format("scores", ranking_schema(count)) if config.structured else None
    problem = ""
    for _ in range(config.tries):
        try:
            answer = await client.chat(messages, temperature=config.temperature, max_tokens=config.max_tokens,
                                       usage=usage, schema=schema)
        except AnswerRejected as err:
            raise RankingFailed(err.reason, err.transient, "server") from None
        try:
            shown_scores = parse_scores(answer.text, count)
        except ValueError as err:
            problem = str(err)
            if answer.finish_reason == "length":
                problem += " (answer cut off at --max-tokens)"
            continue
        return Ranking(order, scores_by_variant(shown_scores, order))
    raise RankingFailed(f"no valid scores after {config.tries} tries ({problem})")
