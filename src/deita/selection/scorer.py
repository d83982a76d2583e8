"""The seed toolkit's scorer API, kept working as a thin layer over the batched core.

    from deita.selection.scorer import Llama_Scorer
    scorer = Llama_Scorer("hkust-nlp/deita-complexity-scorer")
    scorer.infer_complexity("Write a haiku")           # float in [1, 6]
    scorer.infer_quality("Write a haiku", "Leaves…")   # float in [1, 6]
"""

from __future__ import annotations

from deita.data.records import Turn
from deita.scoring.backends.hf import HFOptions
from deita.scoring.prompts import build_prompts
from deita.scoring.scorer import ScoreConfig, expected_scores, load_backend


class Scorer:
    """One scorer model; complexity and quality differ only in the prompt."""

    max_length = 2048

    def __init__(self, model_name_or_path: str, is_vllm: bool = False, device: str = "auto") -> None:
        # One text per call: compilation would only add its warm-up to the first call.
        self.config = ScoreConfig(model=model_name_or_path, backend="vllm" if is_vllm else "hf", device=device,
                                  hf=HFOptions(compile=False))
        self.backend = load_backend(self.config)

    def _score(self, score_type: str, instruction: str, response: str = "") -> float:
        prompts = build_prompts(self.backend.tokenizer, score_type, [Turn(instruction, response)], self.max_length)
        return float(expected_scores(self.backend.digit_logprobs(prompts))[0])

    def infer_complexity(self, input_text: str) -> float:
        return self._score("complexity", input_text)

    def infer_quality(self, input_text: str, resp_text: str) -> float:
        return self._score("quality", input_text, resp_text)


class Llama_Scorer(Scorer):
    """The published LLaMA-based Deita scorers (hkust-nlp/deita-*-scorer)."""


class Mistral_Scorer(Scorer):
    """Mistral-based scorers; the prompt and formula are the same, the digit ids come from the tokenizer."""
