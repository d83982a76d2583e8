"""`ScoreConfig`: the options of `deita score` and of the `complexity:` / `quality:` YAML sections.

Options every backend shares sit at the top level; each backend's own options are a nested dataclass
owned by that backend's module (`hf`, `vllm`, `openai` sections in YAML; flat flags on the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass

from deita.config import option
from deita.errors import DeitaError
from deita.runtime.batching import DEFAULT_BATCH_TOKENS
from deita.runtime.devices import DEVICE_HELP, DTYPE_CHOICES
from deita.scoring.backends.base import ScorerSpec
from deita.scoring.backends.hf import HFOptions
from deita.scoring.backends.openai import OpenAIOptions
from deita.scoring.backends.vllm import VLLMOptions
from deita.scoring.templates import SCORE_TYPES

BACKENDS = ("hf", "vllm", "openai")
TYPES = (*SCORE_TYPES, "ifd")
"""The Deita scorers' types, and IFD (instruction-following difficulty, any causal LM)."""


@dataclass(frozen=True)
class ScoreConfig:
    """Options of `deita score` (the CLI flags, YAML keys and keyword arguments share these names)."""

    type: str = option("complexity", "complexity (instruction only), quality (instruction + response), or ifd "
                       "(instruction-following difficulty from any causal LM's likelihoods; needs --model).",
                       choices=TYPES)
    model: str = option("", "Scorer: hub id or local directory (default: hkust-nlp/deita-TYPE-scorer); for ifd any "
                        "causal LM, also a .gguf file or a folder holding one.")
    backend: str = option("hf", "hf (transformers), vllm (offline engine) or openai (any OpenAI-compatible "
                          "completions server).", choices=BACKENDS)
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
    hf: HFOptions = option(default_factory=HFOptions)
    vllm: VLLMOptions = option(default_factory=VLLMOptions)
    openai: OpenAIOptions = option(default_factory=OpenAIOptions)

    def check(self) -> None:
        """Rules across options (ranges and choices are checked from the fields)."""
        if self.batch_tokens < self.max_length:
            raise DeitaError(f"batch_tokens ({self.batch_tokens}) must be at least max_length ({self.max_length})")
        if self.type == "ifd" and not self.model:
            raise DeitaError("--type ifd needs --model: any causal LM (hub id, folder, or .gguf file)")
        if self.type == "ifd" and self.backend == "openai":
            raise DeitaError("--type ifd needs the log-probs of the prompt's own tokens, which the openai backend does "
                             "not read; use --backend hf or vllm")
        ids = self.score_token_ids
        if ids is not None and (len(ids) != 6 or len(set(ids)) != 6 or min(ids) < 0):
            raise DeitaError(f"score_token_ids needs 6 distinct non-negative ids for the digits 1..6, got {list(ids)}")

    def resolved_model(self) -> str:
        return self.model or f"hkust-nlp/deita-{self.type}-scorer"

    def scorer_spec(self) -> ScorerSpec:
        return ScorerSpec(self.resolved_model(), self.device, self.dtype, self.batch_tokens, self.max_length,
                          self.score_token_ids, digits=self.type != "ifd")

    def backend_options(self) -> HFOptions | VLLMOptions | OpenAIOptions:
        return getattr(self, self.backend)
