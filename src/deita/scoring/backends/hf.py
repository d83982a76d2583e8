"""transformers backend: the shared prefill engine with a six-row LM head."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deita.runtime.prefill import ModelSpec, PrefillEngine, load_causal_lm, token_logprob_head
from deita.scoring.backends.base import BackendCounters
from deita.scoring.prompts import Prompt
from deita.scoring.tokens import score_token_ids


class HFBackend:
    """Scores on a local transformers model: bf16 on GPU, fp32 on CPU, batches by token budget."""

    def __init__(self, spec: ModelSpec, batch_tokens: int, token_ids: Sequence[int] | None = None,
                 compile: bool | None = None) -> None:
        self.model, self.tokenizer = load_causal_lm(spec)
        self.score_token_ids = score_token_ids(self.tokenizer, token_ids)
        self.engine = PrefillEngine(self.model, batch_tokens=batch_tokens, compile=compile)
        self.head = token_logprob_head(self.model, self.score_token_ids)
        self.counters = BackendCounters()

    def digit_logprobs(self, prompts: Sequence[Prompt]) -> np.ndarray:
        return self.engine.run([p.token_ids for p in prompts], self.head)
