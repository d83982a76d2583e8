"""The vllm backend equals the hf backend on the tiny model (runs only where vLLM and a GPU exist)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vllm")

from deita.data.records import Turn
from deita.scoring.backends.base import ScorerSpec
from deita.scoring.backends.hf import HFBackend
from deita.scoring.prompts import build_prompts
from deita.scoring.scorer import ScoreConfig, expected_scores, load_backend

MAX_LENGTH = 512
TURNS = [
    Turn("What is 2+2?", "4"),
    Turn("Write a poem about the sea. " * 12, "The sea is blue and wide. " * 20),
    Turn("Explain recursion", ""),
    Turn("hi", "hello there, how can I help you today?"),
    Turn("Summarise this text: " + "lorem ipsum dolor sit amet " * 300, "A summary."),  # truncated
]


@pytest.fixture(scope="module")
def vllm_backend(tiny_llama):
    """One engine for the module: each vLLM engine reserves most of the GPU's memory."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a GPU")
    from deita.scoring.backends.vllm import VLLMBackend

    backend = load_backend(ScoreConfig(backend="vllm", model=str(tiny_llama), max_length=MAX_LENGTH))
    assert isinstance(backend, VLLMBackend)
    return backend


@pytest.mark.parametrize("score_type", ["complexity", "quality"])
def test_vllm_scores_equal_hf(tiny_llama, vllm_backend, score_type):
    hf = HFBackend(ScorerSpec(str(tiny_llama), device="cpu", batch_tokens=4096))  # fp32 reference
    prompts = build_prompts(hf.tokenizer, score_type, TURNS, MAX_LENGTH)
    assert prompts[-1].truncated
    got = vllm_backend.digit_logprobs(prompts)
    assert np.isfinite(got).all() and vllm_backend.counters.renormalised == 0
    expected = expected_scores(hf.digit_logprobs(prompts))
    np.testing.assert_allclose(expected_scores(got), expected, atol=0.1)  # vLLM runs in bf16
    assert np.corrcoef(expected_scores(got), expected)[0, 1] > 0.9


def test_vllm_span_nll_equals_hf(tiny_llama, vllm_backend):
    """IFD on vLLM reads its prompt log-probs; the same engine serves digits and IFD (the module's one engine)."""
    from deita.scoring.ifd import IFDRequest, ifd_requests

    hf = HFBackend(ScorerSpec(str(tiny_llama), device="cpu", batch_tokens=4096, digits=False))  # fp32 reference
    requests = [r for r in ifd_requests(hf.tokenizer, TURNS, MAX_LENGTH) if isinstance(r, IFDRequest)]
    assert any(r.instruction_cut for r in requests) and len(requests) == len(TURNS) - 1  # one empty response
    spans = [r.conditioned for r in requests] + [r.plain for r in requests]
    got, expected = vllm_backend.span_nll(spans), hf.span_nll(spans)
    np.testing.assert_allclose(got, expected, rtol=0.05)  # vLLM runs in bf16
    half = len(requests)
    ifd_got, ifd_expected = np.exp(got[:half] - got[half:]), np.exp(expected[:half] - expected[half:])
    assert np.corrcoef(ifd_got, ifd_expected)[0, 1] > 0.9
