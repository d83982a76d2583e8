"""What scoring backends answer: log-probs of the six digit tokens after each prompt (the Deita scorers), and,
where a backend can, the mean log-likelihood of a span of each sequence's tokens (IFD)."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from deita.config import Config, option
from deita.errors import DeitaError, quote
from deita.runtime.batching import DEFAULT_BATCH_TOKENS
from deita.scoring.prompts import Prompt
from deita.scoring.tokens import DIGITS


@dataclass(frozen=True)
class ScorerSpec:
    """What every backend is told about the scorer: which model, where, and its digit ids."""

    model: str
    device: str = "auto"
    dtype: str = "auto"
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    max_length: int = 2048
    score_token_ids: tuple[int, ...] | None = None
    digits: bool = True
    """Whether the model answers with a digit (the Deita scorers); False for likelihoods only (IFD), where no
    digit ids are derived, so any causal LM's tokenizer serves."""


@dataclass(frozen=True)
class TokenSpan:
    """A token sequence whose tokens from `start` (≥ 1) to the end are scored, each after all before it."""

    token_ids: list[int]
    start: int


@dataclass(frozen=True)
class TopLogprobOptions(Config):
    """Options of the backends that read the digits from a server's top-k log-probs (vllm, openai)."""

    max_logprobs: int = option(20, "openai/vllm: the server's cap on returned log-probs.", min=1, max=100_000)
    strict: bool = option(False, "openai/vllm: a digit missing from the returned top-k is an error "
                          "(default: renormalise over the digits returned, and count it).")


@dataclass
class BackendCounters:
    """Per-run facts a backend reports: turns whose top-k missed some digits (renormalised over the rest)."""

    renormalised: int = 0


class InvalidAnswer(DeitaError):
    """One server answer whose digit log-probs cannot be used (NaN, ±Infinity, null, text, missing)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class InvalidAnswers(DeitaError):
    """Some answers of a batch are invalid: `problems` maps a prompt's position to why; `rows` holds the
    digit log-probs of the others (NaN rows for the invalid ones). The message names the first."""

    def __init__(self, problems: Mapping[int, str], rows: np.ndarray, url: str) -> None:
        first = min(problems)
        super().__init__(f"{url} gave an invalid answer to prompt {first}: {problems[first]}")
        self.problems, self.rows = dict(problems), rows


class ScoringBackend(Protocol):
    """A backend is built from a `ScorerSpec` and its own options dataclass, and names what of those
    options decides its results (`fingerprint`, part of the cache key)."""

    tokenizer: object
    score_token_ids: list[int]
    counters: BackendCounters

    def digit_logprobs(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """(n, 6) log-probabilities of "1".."6" at the next position; -inf where a backend did not see a digit."""
        ...

    def span_nll(self, spans: Sequence[TokenSpan]) -> np.ndarray:
        """(n,) mean negative log-likelihood of each span's scored tokens (backends with prompt log-probs)."""
        ...

    @staticmethod
    def fingerprint(options: Any) -> dict[str, Any]:
        """The options that change this backend's scores."""
        ...


def finite_number(value: Any) -> float | None:
    """`value` as a float when it is a finite real number (not a bool, not text), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def digits_from_top_logprobs(top: Mapping[Hashable, float], digit_of: Callable[[Hashable], int | None],
                             counters: BackendCounters, where: str, strict: bool = False) -> np.ndarray:
    """The six digit log-probs of one position from a server's top-k (keys: token ids or token strings).

    `digit_of` maps a key to 0..5 (digit 1..6) or None; several keys for one digit keep the largest.
    Only a digit absent from the top-k may be renormalised away: it is -inf and the row is counted in
    `counters.renormalised` (the expected score then renormalises over the digits seen), or, with
    `strict`, an error. A digit that is there with a value that is not a finite number (NaN, ±Infinity,
    null, text) makes the answer invalid (`InvalidAnswer`). No digit at all is an error: there is nothing
    to score, and a made-up default would silently corrupt the data.
    """
    row = np.full(len(DIGITS), -np.inf)
    for key, logprob in top.items():
        index = digit_of(key)
        if index is None:
            continue
        value = finite_number(logprob)
        if value is None:
            raise InvalidAnswer(f"digit {DIGITS[index]}'s log-prob is {quote(logprob, 20)}, not a finite number")
        row[index] = max(row[index], value)
    missing = [digit for digit, value in zip(DIGITS, row, strict=True) if not np.isfinite(value)]
    if len(missing) == len(DIGITS):
        raise DeitaError(f"{where}: none of the digits 1..6 is among the {len(top)} log-probs the backend "
                         "returned; raise --max-logprobs, or make sure the server applies logit_bias")
    if missing:
        if strict:
            raise DeitaError(f"{where}: the digits {', '.join(missing)} are not among the {len(top)} log-probs "
                             "the backend returned; raise --max-logprobs (up to the server's cap), or drop "
                             "--strict to renormalise over the digits returned")
        counters.renormalised += 1
    return row
