"""Conversation embeddings: the embedders table, `EmbedConfig` and the embedding stage.

`EMBEDDERS` maps a `--kind` name to its class: causal-LM last-token states (the paper's, on the shared
prefill engine), sentence-transformers, or a static model distilled from the packaged MiniLM (whole
conversations at milliseconds a record). A new embedder is one module (a class like `SentenceEmbedder`:
`summary`, `default_model`, `output_dtype`, `render`, `uses`, `window`, `fingerprint`, and a call that
embeds texts)
plus one line in the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deita.config import Config, option
from deita.data.records import Record
from deita.embedding.causal import CausalEmbedder
from deita.embedding.sentence import SentenceEmbedder, default_sentence_model
from deita.embedding.static import StaticEmbedder
from deita.embedding.templates import render_answers
from deita.runtime.batching import DEFAULT_BATCH_TOKENS
from deita.runtime.devices import DEVICE_HELP, DTYPE_CHOICES
from deita.runtime.shards import file_identity
from deita.runtime.stage import check_text

EMBEDDERS: dict[str, Any] = {
    "causal": CausalEmbedder,
    "sentence": SentenceEmbedder,
    "static": StaticEmbedder,
}
OUTPUT_DTYPES = ("float16", "float32")

__all__ = ["EMBEDDERS", "EmbedConfig", "EmbedStage", "default_sentence_model"]


@dataclass(frozen=True)
class EmbedConfig(Config):
    """Options of `deita embed` and of the `embed:` YAML section."""

    kind: str = option("sentence", "Embedder: " + "; ".join(f"{name}: {embedder.summary}" for name, embedder in
                                                         EMBEDDERS.items()) + ".", choices=EMBEDDERS)
    model: str = option("", "Hub id or directory (default: packaged all-MiniLM-L6-v2 for sentence and static, "
                        "mistralai/Mistral-7B-v0.1 for causal).")
    max_length: int = option(2048, "Tokens kept per conversation; a sentence model keeps at most its own window "
                             "(256 for MiniLM).", min=1)
    static_dims: int = option(256, "static: dimensions kept by PCA of the distilled token vectors.", min=1)
    cache_path: str = option("", "static: folder of distilled models (default: $DEITA_CACHE/static or "
                             "~/.cache/deita/static).")
    only_answer: bool = option(False, "Embed only the assistant messages.")
    dtype: str = option("", "Output dtype: float16 (causal default) or float32 (sentence default).",
                        choices=("", *OUTPUT_DTYPES))
    model_dtype: str = option("auto", "Compute dtype: auto (bf16 on GPU, fp32 on CPU), float32, float16, bfloat16.",
                              choices=DTYPE_CHOICES)
    device: str = option("auto", DEVICE_HELP)
    batch_tokens: int = option(DEFAULT_BATCH_TOKENS, "Token budget of one prefill batch (causal).", min=1)
    batch_size: int = option(64, "Texts per batch (sentence).", min=1)
    compile: bool | None = option(None, "causal: torch.compile the decoder layers (default: on a GPU).")

    def resolved_model(self) -> str:
        return self.model or EMBEDDERS[self.kind].default_model()

    def window(self) -> str:
        """What bounds a conversation's tokens, naming the flag that changes it."""
        return EMBEDDERS[self.kind].window(self)

    def output_dtype(self) -> str:
        return self.dtype or EMBEDDERS[self.kind].output_dtype

    def text(self, record: Record) -> str:
        if self.only_answer:
            return render_answers(record.turns)
        return EMBEDDERS[self.kind].render(record.turns)

    def ignored_options(self) -> dict[str, str]:
        """The options only other embedders read."""
        mine = EMBEDDERS[self.kind].uses
        return {name: "kind" for embedder in EMBEDDERS.values() for name in embedder.uses if name not in mine}


class EmbedStage:
    """Embedding as a runtime stage: one request (a text) per record."""

    name = "embed"

    def __init__(self, config: EmbedConfig) -> None:
        self.config = config

    def fingerprint(self) -> dict[str, Any]:
        config = self.config
        return {"stage": "embed", "kind": config.kind, "model": file_identity(config.resolved_model()),
                "max_length": config.max_length, "only_answer": config.only_answer,
                "dtype": config.output_dtype(), "model_dtype": config.model_dtype,
                **EMBEDDERS[config.kind].fingerprint(config)}

    def requests(self, record: Record) -> list[str]:
        text = self.config.text(record)
        check_text(text, "the conversation")
        return [text]

    def load_worker(self):
        return EMBEDDERS[self.config.kind](self.config)
