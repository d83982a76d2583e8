"""transformers backend: the shared prefill engine with a six-row LM head (digits) or a mean-NLL span head (IFD)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from deita.config import Config, option
from deita.errors import DeitaError
from deita.scoring.backends.base import BackendCounters, ScorerSpec, TokenSpan
from deita.scoring.prompts import Prompt
from deita.scoring.tokens import score_token_ids


@dataclass(frozen=True)
class HFOptions(Config):
    """Options of the hf backend."""

    compile: bool | None = option(None, "hf: torch.compile the decoder layers (default: on a GPU).")


class HFBackend:
    """Scores on a local transformers model: bf16 on GPU, fp32 on CPU, batches by token budget."""

    summary: ClassVar[str] = "transformers on this machine"
    Options: ClassVar[type] = HFOptions

    def __init__(self, scorer: ScorerSpec, options: HFOptions = HFOptions()) -> None:
        from deita.runtime.prefill import (  # torch: on use
            ModelSpec,
            PrefillEngine,
            load_causal_lm,
            mean_nll_head,
            token_logprob_head,
        )

        self.model, self.tokenizer = load_causal_lm(ModelSpec(scorer.model, scorer.device, scorer.dtype))
        self.engine = PrefillEngine(self.model, batch_tokens=scorer.batch_tokens, compile=options.compile)
        self.score_token_ids = score_token_ids(self.tokenizer, scorer.score_token_ids) if scorer.digits else []
        self.head = token_logprob_head(self.model, self.score_token_ids) if scorer.digits else None
        self.nll_head = mean_nll_head(self.model)
        self.counters = BackendCounters()

    @staticmethod
    def fingerprint(options: HFOptions) -> dict[str, Any]:
        return {}  # compiled and eager agree to 1e-6 in fp32 (tests/runtime/test_prefill.py)

    def digit_logprobs(self, prompts: Sequence[Prompt]) -> np.ndarray:
        if self.head is None:
            raise DeitaError("this backend was loaded for likelihoods only (digits=False)")
        return self.engine.run([p.token_ids for p in prompts], self.head)

    def span_nll(self, spans: Sequence[TokenSpan]) -> np.ndarray:
        """Mean NLL of each span, from the same length-sorted token-budget batches as the digit scores."""
        if not spans:
            return np.empty(0, dtype=np.float32)
        return self.engine.run_spans([s.token_ids for s in spans], [s.start for s in spans], self.nll_head)
