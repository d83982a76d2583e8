"""The `causal` embedder (the paper's): a causal LM's last-layer state at the last real token of the
conversation's Vicuna rendering, on the shared prefill engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from deita.embedding.templates import render_vicuna
from deita.runtime.stage import WorkResult
from deita.scoring.prompts import clip

if TYPE_CHECKING:
    from deita.embedding.embedder import EmbedConfig


class CausalEmbedder:
    """Last layer's hidden state at the last real token of the (truncated) Vicuna rendering."""

    summary: ClassVar[str] = "an LLM's last-token state (the paper's)"
    output_dtype: ClassVar[str] = "float16"
    render = staticmethod(render_vicuna)
    uses: ClassVar[tuple[str, ...]] = ("batch_tokens", "compile", "model_dtype")

    @staticmethod
    def default_model() -> str:
        return "mistralai/Mistral-7B-v0.1"

    def __init__(self, config: EmbedConfig) -> None:
        from deita.runtime.prefill import (  # torch: on use
            ModelSpec,
            PrefillEngine,
            identity_head,
            load_causal_lm,
        )

        self.config = config
        self.head = identity_head
        self.model, self.tokenizer = load_causal_lm(ModelSpec(config.resolved_model(), config.device, config.model_dtype))
        self.engine = PrefillEngine(self.model, batch_tokens=max(config.batch_tokens, config.max_length),
                                    compile=config.compile)

    @staticmethod
    def window(config: EmbedConfig) -> str:
        return f"the first --max-length {config.max_length} tokens"

    @staticmethod
    def fingerprint(config: EmbedConfig) -> dict[str, Any]:
        return {}

    def __call__(self, texts: Sequence[str]) -> WorkResult:
        full = self.tokenizer([clip(text, self.config.max_length) for text in texts])["input_ids"]
        truncated = sum(len(ids) > self.config.max_length for ids in full)
        sequences = [ids[: self.config.max_length] for ids in full]
        values = self.engine.run(sequences, self.head)
        return WorkResult(values.astype(self.config.output_dtype()), {"truncated": truncated,
                                                                      "tokens": sum(map(len, sequences))})
