"""Expected digit score from the six digit log-probs, and the scoring stage that runs it over records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deita.data.records import Record, Turn
from deita.errors import DeitaError
from deita.runtime.batching import DEFAULT_BATCH_TOKENS
from deita.runtime.prefill import ModelSpec
from deita.runtime.shards import file_identity
from deita.runtime.stage import WorkResult
from deita.scoring.backends.base import ScoringBackend
from deita.scoring.prompts import build_prompts
from deita.scoring.templates import COMPLEXITY_TEMPLATE, QUALITY_TEMPLATE, SCORE_TYPES

DIGIT_VALUES = np.arange(1, 7, dtype=np.float64)
BACKENDS = ("hf", "vllm", "openai")


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


@dataclass(frozen=True)
class ScoreConfig:
    """Options of `deita score` (the CLI flags, YAML keys and keyword arguments share these names)."""

    type: str = "complexity"
    """complexity (instruction only) or quality (instruction + response)."""
    model: str = ""
    """Scorer: hub id or local directory (defaults to hkust-nlp/deita-<type>-scorer)."""
    backend: str = "hf"
    """hf (transformers), vllm (offline engine) or openai (any OpenAI-compatible completions server)."""
    device: str = "auto"
    dtype: str = "auto"
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    """Token budget of one prefill batch (rows × longest prompt)."""
    max_length: int = 2048
    """Scorer context; longer prompts are cut inside the instruction/response text."""
    compile: bool | None = None
    """hf backend: torch.compile the decoder layers; default on a GPU (+25 % on an H100, ~25 s warm-up)."""
    score_token_ids: tuple[int, ...] | None = None
    """Override the token ids of the digits 1..6."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """openai backend: server address."""
    served_model: str | None = None
    """openai backend: model name on the server (defaults to --model)."""
    concurrency: int = 16
    """openai backend: requests in flight."""
    max_logprobs: int = 20
    """openai/vllm backends: the server's cap on returned log-probs."""
    strict: bool = False
    """openai backend: a digit missing from the returned top-k is an error instead of a renormalised score."""

    def resolved_model(self) -> str:
        return self.model or f"hkust-nlp/deita-{self.type}-scorer"

    def validate(self) -> None:
        if self.type not in SCORE_TYPES:
            raise DeitaError(f"unknown score type '{self.type}' (choose {', '.join(SCORE_TYPES)})")
        if self.backend not in BACKENDS:
            raise DeitaError(f"unknown backend '{self.backend}' (choose {', '.join(BACKENDS)})")
        if self.max_length < 64:
            raise DeitaError(f"--max-length {self.max_length} cannot hold the scorer prompt; use at least 64")
        if self.batch_tokens < self.max_length:
            raise DeitaError(f"--batch-tokens ({self.batch_tokens}) must be at least --max-length ({self.max_length})")


def load_backend(config: ScoreConfig) -> ScoringBackend:
    """Instantiate the configured backend (heavy imports happen only for the backend in use)."""
    spec = ModelSpec(config.resolved_model(), config.device, config.dtype)
    if config.backend == "hf":
        from deita.scoring.backends.hf import HFBackend

        return HFBackend(spec, config.batch_tokens, config.score_token_ids, compile=config.compile)
    if config.backend == "vllm":
        from deita.scoring.backends.vllm import VLLMBackend

        return VLLMBackend(config)
    from deita.scoring.backends.openai import OpenAIBackend

    return OpenAIBackend(config)


class ScoreWorker:
    """Turns → scores with a loaded backend."""

    def __init__(self, config: ScoreConfig) -> None:
        self.config = config
        self.backend = load_backend(config)

    def __call__(self, turns: Sequence[Turn]) -> WorkResult:
        prompts = build_prompts(self.backend.tokenizer, self.config.type, turns, self.config.max_length)
        before = self.backend.counters.renormalised
        logprobs = self.backend.digit_logprobs(prompts)
        counters = {
            "truncated": sum(p.truncated for p in prompts),
            "renormalised": self.backend.counters.renormalised - before,
        }
        return WorkResult(expected_scores(logprobs).astype(np.float64), counters)

    def score(self, turns: Sequence[Turn]) -> list[float]:
        return [float(s) for s in self(turns).values]


class ScoreStage:
    """Scoring as a runtime stage: one request per turn."""

    def __init__(self, config: ScoreConfig) -> None:
        config.validate()
        self.config = config
        self.name = config.type

    def fingerprint(self) -> dict[str, Any]:
        config = self.config
        return {
            "stage": "score", "type": config.type, "model": file_identity(config.resolved_model()),
            "template": COMPLEXITY_TEMPLATE if config.type == "complexity" else QUALITY_TEMPLATE,
            "backend": config.backend, "dtype": config.dtype, "max_length": config.max_length,
            "score_token_ids": config.score_token_ids, "strict": config.strict,
        }

    def requests(self, record: Record) -> list[Turn]:
        return list(record.turns)

    def load_worker(self) -> ScoreWorker:
        return ScoreWorker(self.config)
