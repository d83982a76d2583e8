"""vllm backend: the offline vLLM engine, one `max_tokens=1` step per prompt restricted to the six digits.

Prompts go in as token ids, so truncation and BOS match the hf backend exactly. Sampling allows only
the digit ids (`allowed_token_ids`) and the engine reports log-probs after that mask
(`logprobs_mode="processed_logprobs"`, vLLM ≥ 0.10): the top-6 are then exactly the six digits,
renormalised over themselves, which leaves the expected score unchanged. On an older vLLM without that
mode the log-probs are the raw ones over the whole vocabulary, so up to --max-logprobs are requested and
digits outside them are renormalised away (counted) or, with --strict, an error.

IFD (`span_nll`) reads the engine's prompt log-probs (`prompt_logprobs=0`: the log-prob of each prompt token
itself). vLLM computes those from the raw logits whatever `logprobs_mode` is, so one engine serves both.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from deita.errors import DeitaError
from deita.scoring.backends.base import (
    BackendCounters,
    ScorerSpec,
    TokenSpan,
    TopLogprobOptions,
    digits_from_top_logprobs,
)
from deita.scoring.prompts import Prompt
from deita.scoring.tokens import DIGITS, load_tokenizer, score_token_ids

log = logging.getLogger(__name__)

INSTALL_HINT = "the vllm backend needs the vllm package: pip install -e '.[vllm]'"


def _import_vllm():
    try:
        import vllm
    except ImportError as err:
        raise DeitaError(INSTALL_HINT) from err
    return vllm


def _supports_processed_logprobs() -> bool:
    """Whether this vLLM's engine args take `logprobs_mode` (added in 0.10)."""
    from vllm.engine.arg_utils import EngineArgs

    return "logprobs_mode" in {f.name for f in dataclasses.fields(EngineArgs)}


def _engine_dtype(dtype: str) -> str:
    """bf16 unless the user asked for a dtype."""
    return "bfloat16" if dtype in ("", "auto") else dtype


@dataclass(frozen=True)
class VLLMOptions(TopLogprobOptions):
    """Options of the vllm backend."""


class VLLMBackend:
    """Scores on a local vLLM engine (GPU); one generate call per batch of prompts, vLLM schedules them."""

    summary: ClassVar[str] = "the offline vLLM engine"
    Options: ClassVar[type] = VLLMOptions

    def __init__(self, scorer: ScorerSpec, options: VLLMOptions = VLLMOptions()) -> None:
        vllm = _import_vllm()
        self.scorer, self.options = scorer, options
        self.tokenizer = load_tokenizer(scorer.model)
        self.score_token_ids = score_token_ids(self.tokenizer, scorer.score_token_ids) if scorer.digits else []
        self.counters = BackendCounters()
        processed = _supports_processed_logprobs()
        self.num_logprobs = max(1, min(len(DIGITS), options.max_logprobs) if processed else options.max_logprobs)
        if not processed:
            log.warning("this vLLM has no logprobs_mode (needs ≥ 0.10): reading the digits from the raw "
                        "top-%d; digits outside it are renormalised away", self.num_logprobs)
        self.llm = vllm.LLM(**self._engine_args(processed))
        self.params = vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.num_logprobs,
                                          allowed_token_ids=list(self.score_token_ids), detokenize=False) \
            if scorer.digits else None
        self.span_params = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)

    @staticmethod
    def fingerprint(options: VLLMOptions) -> dict[str, Any]:
        return {"max_logprobs": options.max_logprobs, "strict": options.strict}

    def _engine_args(self, processed: bool) -> dict[str, Any]:
        scorer = self.scorer
        args: dict[str, Any] = {
            "model": scorer.model, "tokenizer": scorer.model,
            "dtype": _engine_dtype(scorer.dtype), "max_model_len": scorer.max_length + 1,  # room for the one generated step
            "enable_prefix_caching": False, "max_logprobs": self.num_logprobs,
        }
        if processed:
            args["logprobs_mode"] = "processed_logprobs"
        return args

    def digit_logprobs(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """(n, 6) digit log-probs in input order; see `digits_from_top_logprobs` for missing digits."""
        if not prompts:
            return np.empty((0, len(DIGITS)))
        if self.params is None:
            raise DeitaError("this backend was loaded for likelihoods only (digits=False)")
        from vllm.inputs import TokensPrompt

        inputs = [TokensPrompt(prompt_token_ids=list(p.token_ids)) for p in prompts]
        outputs = self.llm.generate(inputs, self.params, use_tqdm=False)
        digit_index = {token_id: i for i, token_id in enumerate(self.score_token_ids)}
        rows = [digits_from_top_logprobs(_first_step(output, i), digit_index.get, self.counters,
                                         f"prompt {i}", self.options.strict)
                for i, output in enumerate(outputs)]
        return np.asarray(rows, dtype=np.float64).reshape(len(prompts), len(DIGITS))


    def span_nll(self, spans: Sequence[TokenSpan]) -> np.ndarray:
        """(n,) mean NLL of each span's tokens from the engine's prompt log-probs, in input order."""
        if not spans:
            return np.empty(0, dtype=np.float64)
        from vllm.inputs import TokensPrompt

        inputs = [TokensPrompt(prompt_token_ids=list(s.token_ids)) for s in spans]
        outputs = self.llm.generate(inputs, self.span_params, use_tqdm=False)
        return np.array([_mean_nll(output, span, i) for i, (output, span) in enumerate(zip(outputs, spans, strict=True))])


def _mean_nll(output: Any, span: TokenSpan, index: int) -> float:
    """Mean of -log p(token) over a span, from one RequestOutput's prompt log-probs (entry t: token t)."""
    steps = output.prompt_logprobs
    if steps is None or len(steps) != len(span.token_ids):
        raise DeitaError(f"sequence {index}: vLLM returned no prompt log-probs for its {len(span.token_ids)} tokens")
    total = 0.0
    for position in range(span.start, len(span.token_ids)):
        step, token = steps[position], span.token_ids[position]
        if not step or token not in step:
            raise DeitaError(f"sequence {index}: vLLM returned no log-prob for prompt token {position}")
        total -= float(step[token].logprob)
    return total / (len(span.token_ids) - span.start)


def _first_step(output: Any, index: int) -> dict[int, float]:
    """token id → log-prob at the first generated position of one RequestOutput."""
    steps = output.outputs[0].logprobs if output.outputs else None
    if not steps:
        raise DeitaError(f"prompt {index}: vLLM returned no log-probs for the next token")
    return {int(token_id): float(logprob.logprob) for token_id, logprob in steps[0].items()}
