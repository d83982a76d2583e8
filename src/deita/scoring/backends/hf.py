"""transformers backend: the shared prefill engine with a six-row LM head."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from deita.config import Config, option
from deita.scoring.backends.base import BackendCounters, ScorerSpec
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
            token_logprob_head,
        )

        self.model, self.tokenizer = load_causal_lm(ModelSpec(scorer.model, scorer.device, scorer.dtype))
        self.score_token_ids = score_token_ids(self.tokenizer, scorer.score_token_ids)
        self.engine = PrefillEngine(self.model, batch_tokens=scorer.batch_tokens, compile=options.compile)
        self.head = token_logprob_head(self.model, self.score_token_ids)
        self.counters = BackendCounters()

    @staticmethod
    def fingerprint(options: HFOptions) -> dict[str, Any]:
        return {}  # compiled and eager agree to 1e-6 in fp32 (tests/runtime/test_prefill.py)

    def digit_logprobs(self, prompts: Sequence[Prompt]) -> np.ndarray:
        return self.engine.run([p.token_ids for p in prompts], self.head)
