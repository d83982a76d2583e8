"""Expected digit score from the six digit log-probs, and the scoring stage that runs it over records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deita.config import unknown_name
from deita.data.records import Record, Turn
from deita.errors import DeitaError
from deita.runtime.shards import file_identity
from deita.runtime.stage import WorkResult, check_text
from deita.scoring.backends import BACKENDS
from deita.scoring.backends.base import InvalidAnswers, ScoringBackend
from deita.scoring.config import ScoreConfig
from deita.scoring.ifd import IFD_DEFINITION, IFDWorker
from deita.scoring.prompts import build_prompts
from deita.scoring.templates import COMPLEXITY_TEMPLATE, QUALITY_TEMPLATE

__all__ = ["ScoreConfig", "ScoreStage", "ScoreWorker", "expected_scores", "load_backend"]

DIGIT_VALUES = np.arange(1, 7, dtype=np.float64)


def expected_scores(logprobs: np.ndarray) -> np.ndarray:
    """Σ i·softmax(z)_i over the digits 1..6, per row; digits a backend did not see (-inf) get weight 0.

    A row with no digit at all has no score: that is an error, never a made-up value.
    """
    logprobs = np.asarray(logprobs, dtype=np.float64)
    peak = logprobs.max(axis=1, keepdims=True)
    if not np.all(np.isfinite(peak)):
        bad = int(np.flatnonzero(~np.isfinite(peak[:, 0]))[0])
        raise DeitaError(f"prompt {bad}: the backend returned no finite log-prob for any digit 1..6")
    weights = np.exp(logprobs - peak)
    return (weights @ DIGIT_VALUES) / weights.sum(axis=1)


def backend_class(name: str) -> Any:
    """The backend class of a name in the `BACKENDS` table."""
    if name not in BACKENDS:
        raise DeitaError(unknown_name("backend", name, BACKENDS))
    return BACKENDS[name]


def load_backend(config: ScoreConfig) -> ScoringBackend:
    """Instantiate the configured backend with its own options."""
    return backend_class(config.backend)(config.scorer_spec(), config.backend_options())


class ScoreWorker:
    """Turns → scores with a loaded backend."""

    def __init__(self, config: ScoreConfig) -> None:
        self.config = config
        self.backend = load_backend(config)

    def __call__(self, turns: Sequence[Turn]) -> WorkResult:
        prompts = build_prompts(self.backend.tokenizer, self.config.type, turns, self.config.max_length)
        before = self.backend.counters.renormalised
        problems: dict[int, str] = {}
        try:
            logprobs = self.backend.digit_logprobs(prompts)
        except InvalidAnswers as invalid:
            logprobs, problems = invalid.rows, invalid.problems
        counters = {
            "truncated": sum(p.truncated for p in prompts),
            "renormalised": self.backend.counters.renormalised - before,
        }
        scores = np.full(len(prompts), np.nan)
        good = np.array([i not in problems for i in range(len(prompts))], dtype=bool)
        if good.any():
            scores[good] = expected_scores(np.asarray(logprobs)[good])
        return WorkResult(scores, counters, problems)

    def score(self, turns: Sequence[Turn]) -> list[float]:
        """The score of every turn; an invalid server answer is an error naming the first."""
        result = self(turns)
        if result.problems:
            first = min(result.problems)
            raise DeitaError(f"turn {first}: invalid server answer: {result.problems[first]}")
        return [float(s) for s in result.values]


class ScoreStage:
    """Scoring as a runtime stage: one request per turn (Deita digit scores, or IFD)."""

    def __init__(self, config: ScoreConfig) -> None:
        self.config = config
        self.name = config.type

    def fingerprint(self) -> dict[str, Any]:
        config = self.config
        backend = backend_class(config.backend)
        if config.type == "ifd":
            return {"stage": "score", "type": "ifd", "model": file_identity(config.resolved_model()),
                    "definition": IFD_DEFINITION, "backend": config.backend, "dtype": config.dtype,
                    "max_length": config.max_length, "options": backend.fingerprint(config.backend_options())}
        return {
            "stage": "score", "type": config.type, "model": file_identity(config.resolved_model()),
            "template": COMPLEXITY_TEMPLATE if config.type == "complexity" else QUALITY_TEMPLATE,
            "backend": config.backend, "dtype": config.dtype, "max_length": config.max_length,
            "score_token_ids": config.score_token_ids, "options": backend.fingerprint(config.backend_options()),
        }

    def requests(self, record: Record) -> list[Turn]:
        for number, turn in enumerate(record.turns, 1):
            check_text(turn.instruction, f"turn {number}'s instruction")
            if self.config.type != "complexity":
                check_text(turn.response, f"turn {number}'s response")
        return list(record.turns)

    def load_worker(self) -> ScoreWorker | IFDWorker:
        if self.config.type == "ifd":
            return IFDWorker(load_backend(self.config), self.config.max_length)
        return ScoreWorker(self.config)
