"""`ScoreConfig`: the options of `deita score` and of the `complexity:` / `quality:` YAML sections.

Options every backend shares sit at the top level; each backend's own options are a nested dataclass
owned by that backend's module (`hf`, `vllm`, `openai` sections in YAML; flat flags on the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deita.config import Config, option
from deita.errors import ConfigError, quote
from deita.runtime.batching import DEFAULT_BATCH_TOKENS
from deita.runtime.devices import DEVICE_HELP, DTYPE_CHOICES
from deita.scoring.backends import BACKENDS
from deita.scoring.backends.base import ScorerSpec
from deita.scoring.templates import SCORE_TYPES

TYPES = (*SCORE_TYPES, "ifd", "signals")
"""The Deita scorers' types, IFD (instruction-following difficulty, any causal LM), and the offline quality
signals (no scorer model: the static embedder, the pool's bigram counts and rules; `scoring/signals.py`)."""


def backend_sections(cls: type) -> type:
    """Give `cls` one options section per backend of `BACKENDS` (named as the backend, typed by its
    `Options`), before `dataclass` turns the class body into fields: the table is the one declaration."""
    for name, backend in BACKENDS.items():
        cls.__annotations__[name] = backend.Options
        setattr(cls, name, option(default_factory=backend.Options))
    return cls


@dataclass(frozen=True)
@backend_sections
class ScoreConfig(Config):
    """Options of `deita score` (the CLI flags, YAML keys and keyword arguments share these names)."""

    type: str = option("complexity", "complexity (instruction only), quality (instruction + response), ifd "
                       "(instruction-following difficulty from any causal LM's likelihoods; needs --model), or "
                       "signals (the offline preset's cheap quality signals and their gate; no scorer model).",
                       choices=TYPES)
    model: str = option("", "Scorer: hub id or local directory (default: hkust-nlp/deita-TYPE-scorer); for ifd any "
                        "causal LM, also a .gguf file or a folder holding one.")
    backend: str = option("hf", "Scoring backend: " + "; ".join(f"{name}: {backend.summary}" for name, backend
                                                                in BACKENDS.items()) + ".", choices=BACKENDS)
    device: str = option("auto", DEVICE_HELP)
    dtype: str = option("auto", "Model dtype: auto (bf16 on GPU, fp32 on CPU), float32, float16, bfloat16.",
                        choices=DTYPE_CHOICES)
    batch_tokens: int = option(DEFAULT_BATCH_TOKENS, "Token budget of one prefill batch (rows × longest prompt).",
                               min=1)
    max_length: int = option(2048, "Scorer context; longer prompts are cut inside the instruction/response text "
                             "(ifd: the instruction from the left first, then the response's end).",
                             min=64)
    score_token_ids: tuple[int, ...] | None = option(None, "Six comma-separated token ids for the digits 1..6 "
                                                      "(default: derived from the tokenizer).")
    bigram_counts: str = option("", "signals: the pool's bigram counts (.npy) from dedup's pass (default: counted "
                                "from the input first).", cli=False)
    # one options section per backend follows, from the BACKENDS table (`backend_sections`)

    def check(self) -> None:
        """Rules across options (ranges and choices are checked from the fields)."""
        if self.batch_tokens < self.max_length:
            raise ConfigError(f"batch_tokens ({self.batch_tokens}) must be at least max_length ({self.max_length})",
                              ["batch_tokens", "max_length"], rule=True)
        if self.type == "ifd" and not self.model:
            raise ConfigError("type ifd needs model: any causal LM (hub id, folder, or .gguf file)",
                              ["type", "model"], rule=True)
        if self.type == "ifd" and self.backend == "openai":
            raise ConfigError("type ifd needs the log-probs of the prompt's own tokens, which an openai server does "
                              "not return; use backend hf or vllm", ["type", "backend"], rule=True)
        check_score_token_ids(self.score_token_ids)

    def ignored_options(self) -> dict[str, str]:
        """The sections of the backends not in use."""
        return {name: "backend" for name in BACKENDS if name != self.backend}

    def resolved_model(self) -> str:
        if self.type == "signals" and not self.model:
            from deita.embedding.sentence import default_sentence_model

            return default_sentence_model()  # the sentence model the static embedder is distilled from
        return self.model or f"hkust-nlp/deita-{self.type}-scorer"

    def scorer_spec(self) -> ScorerSpec:
        return ScorerSpec(self.resolved_model(), self.device, self.dtype, self.batch_tokens, self.max_length,
                          self.score_token_ids, digits=self.type != "ifd")

    def backend_options(self) -> Any:
        """The options section of the backend in use."""
        return getattr(self, self.backend)


def check_score_token_ids(ids: tuple[int, ...] | None) -> None:
    """Six distinct ids within a vocabulary's range, or None (derived from the tokenizer)."""
    if ids is not None and (len(ids) != 6 or len(set(ids)) != 6 or min(ids) < 0 or max(ids) >= 2**31):
        raise ConfigError(f"needs 6 distinct ids from 0 to 2147483647 for the digits 1..6, got {quote(list(ids))}",
                          ["score_token_ids"])
