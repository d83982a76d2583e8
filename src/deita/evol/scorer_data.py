"""Scorer training examples from a RANKED file: the prompt exactly as `deita score` builds it → the score digit.

For every variant of every RANKED row, with its score s (1..6):

    prompt    = scoring.templates.render(type, instruction, response), truncated by scoring.prompts.build_prompts
                to `max_length` tokens exactly as `deita score` truncates it (no chat template)
    input_ids = tokenizer(prompt)["input_ids"] + [digit id of s]      (digit ids: scoring.tokens.score_token_ids)
    labels    = [-100] * len(prompt ids)  + [digit id of s]           (the loss falls on the digit only)

Complexity variants are instructions (response ""); quality variants are responses to the row's
instruction. A sequence is at most `max_length + 1` tokens long: the prompt is cut as scoring cuts it
and the digit follows. A trained model then scores with `deita score --model DIR` unchanged, reading
its digit ids from DIR's tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deita.data.policy import RecordPolicy
from deita.data.records import Turn
from deita.errors import DeitaError
from deita.evol.rows import iter_rows, ranked_problem
from deita.scoring.prompts import build_prompts
from deita.scoring.templates import SCORE_TYPES
from deita.scoring.tokens import score_token_ids

IGNORE_INDEX = -100
"""The label transformers' cross-entropy skips."""


@dataclass(frozen=True)
class ScorerExample:
    input_ids: list[int]
    labels: list[int]
    score: int
    """1..6: the digit the scorer learns to emit after the prompt."""
    truncated: bool
    """The prompt was cut to fit `max_length`, as `deita score` would cut it."""

    def as_dict(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "labels": self.labels}


def ranked_turns(row: dict[str, Any], score_type: str) -> list[tuple[Turn, int]]:
    """(the turn `deita score` would score, its score) for every variant of one RANKED row."""
    if score_type == "complexity":
        turns = [Turn(variant, "") for variant in row["variants"]]
    else:
        turns = [Turn(row["instruction"], variant) for variant in row["variants"]]
    return list(zip(turns, row["scores"], strict=True))


def scorer_examples(rows: Sequence[dict[str, Any]], tokenizer, score_type: str, max_length: int = 2048,
                    token_ids: Sequence[int] | None = None) -> list[ScorerExample]:
    """The training examples of `rows` (RANKED rows, already checked), in row then variant order.

    `token_ids` overrides the digit ids as `deita score --score-token-ids` does.
    """
    if score_type not in SCORE_TYPES:
        raise DeitaError(f"unknown score type '{score_type}' (choose {', '.join(SCORE_TYPES)})")
    digits = score_token_ids(tokenizer, token_ids)
    pairs = [pair for row in rows for pair in ranked_turns(row, score_type)]
    prompts = build_prompts(tokenizer, score_type, [turn for turn, _ in pairs], max_length)
    examples = []
    for prompt, (_, score) in zip(prompts, pairs, strict=True):
        if not 1 <= score <= len(digits):
            raise DeitaError(f"score {score} has no digit token (scores run 1..{len(digits)})")
        digit = digits[score - 1]
        examples.append(ScorerExample(list(prompt.token_ids) + [digit],
                                      [IGNORE_INDEX] * len(prompt.token_ids) + [digit], score, prompt.truncated))
    return examples


def read_ranked(path: str | Path, score_type: str, policy: RecordPolicy | None = None) -> Iterator[dict[str, Any]]:
    """The good rows of a RANKED file; a bad one goes to `policy` (default: the first one stops the read with
    an error naming the file, the line and the problem)."""
    policy = policy or RecordPolicy.failing()
    for index, location, row, problem in iter_rows(path):
        if problem is None:
            problem = ranked_problem(row, score_type)
        if problem is not None:
            policy.reject(path, index, location, problem, row)
            continue
        yield row


def ranked_file_examples(path: str | Path, tokenizer, score_type: str, max_length: int = 2048,
                         token_ids: Sequence[int] | None = None, rows_per_batch: int = 256,
                         policy: RecordPolicy | None = None) -> Iterator[ScorerExample]:
    """`scorer_examples` over a whole RANKED file, tokenized `rows_per_batch` rows at a time; bad rows go to
    `policy`."""
    batch: list[dict[str, Any]] = []
    for row in read_ranked(path, score_type, policy):
        batch.append(row)
        if len(batch) == rows_per_batch:
            yield from scorer_examples(batch, tokenizer, score_type, max_length, token_ids)
            batch = []
    if batch:
        yield from scorer_examples(batch, tokenizer, score_type, max_length, token_ids)
