"""Batched scoring equals a one-prompt-at-a-time reference through the model's ordinary full-logits path."""

import numpy as np
import pytest
import torch
from builders import example_turns

from deita.data.records import Turn
from deita.errors import DeitaError
from deita.runtime.prefill import ModelSpec, load_causal_lm
from deita.scoring.backends.base import ScorerSpec
from deita.scoring.backends.hf import HFBackend
from deita.scoring.prompts import build_prompts
from deita.scoring.scorer import ScoreConfig, ScoreWorker, expected_scores
from deita.scoring.templates import render
from deita.scoring.tokens import score_token_ids

TURNS = example_turns()


def reference_score(model, tokenizer, prompt: str) -> float:
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        logits = model(ids).logits[0, -1].double()
    probs = torch.softmax(logits[score_token_ids(tokenizer)], dim=0)
    return float((probs * torch.arange(1, 7, dtype=torch.float64)).sum())


@pytest.mark.parametrize("score_type", ["complexity", "quality"])
@pytest.mark.parametrize("batch_tokens", [64, 512, 100_000])
def test_batched_equals_one_at_a_time(tiny_llama, score_type, batch_tokens):
    model, tokenizer = load_causal_lm(ModelSpec(str(tiny_llama), device="cpu"))
    worker = ScoreWorker(ScoreConfig(type=score_type, model=str(tiny_llama), device="cpu", batch_tokens=max(batch_tokens, 2048)))
    worker.backend.engine.batch_tokens = batch_tokens  # small budgets force many padded batches
    scores = worker.score(TURNS)
    expected = [reference_score(model, tokenizer, render(score_type, t.instruction, t.response)) for t in TURNS]
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    assert all(1.0 <= s <= 6.0 for s in scores)
    assert len(set(np.round(scores, 3))) > 1


def test_mistral_architecture_scores(tiny_mistral):
    model, tokenizer = load_causal_lm(ModelSpec(str(tiny_mistral), device="cpu"))
    worker = ScoreWorker(ScoreConfig(type="quality", model=str(tiny_mistral), device="cpu"))
    expected = [reference_score(model, tokenizer, render("quality", t.instruction, t.response)) for t in TURNS]
    np.testing.assert_allclose(worker.score(TURNS), expected, atol=1e-4)


def test_truncation_keeps_the_prompt_tail(tiny_llama):
    backend = HFBackend(ScorerSpec(str(tiny_llama), device="cpu", batch_tokens=4096))
    long_turn = Turn("word " * 3000, "answer " * 3000)
    prompts = build_prompts(backend.tokenizer, "quality", [long_turn, TURNS[0]], max_length=256)
    assert prompts[0].truncated and not prompts[1].truncated
    assert len(prompts[0].token_ids) <= 256
    assert prompts[0].text.endswith(" \n##Quality: ")
    assert "#Response#:\nanswer" in prompts[0].text  # both sides keep a share of the budget
    tail = backend.tokenizer(render("quality", "x", "y"))["input_ids"][-4:]
    assert prompts[0].token_ids[-4:] == tail  # "##Quality:" survives


def test_expected_scores_formula():
    logprobs = np.log(np.array([[0.1, 0.1, 0.1, 0.1, 0.1, 0.5]]))
    assert expected_scores(logprobs)[0] == pytest.approx(0.1 * 15 + 0.5 * 6)
    missing = np.array([[-np.inf, np.log(0.5), -np.inf, np.log(0.5), -np.inf, -np.inf]])
    assert expected_scores(missing)[0] == pytest.approx(3.0)


def test_no_digit_is_an_error_not_a_default():
    with pytest.raises(DeitaError, match="no finite log-prob"):
        expected_scores(np.full((2, 6), -np.inf))


def test_score_token_override_and_validation(tiny_llama):
    _, tokenizer = load_causal_lm(ModelSpec(str(tiny_llama), device="cpu"))
    assert score_token_ids(tokenizer) == [tokenizer.convert_tokens_to_ids(d) for d in "123456"]
    assert score_token_ids(tokenizer, [6, 5, 4, 3, 2, 1]) == [6, 5, 4, 3, 2, 1]
    with pytest.raises(DeitaError, match="6 distinct ids"):
        score_token_ids(tokenizer, [1, 1, 2, 3, 4, 5])


def test_a_huge_message_is_clipped_before_tokenizing(tiny_llama):
    """Memory is bounded by the context, not by the message: a 10 MB message costs a 64K-character call."""
    from deita.scoring.prompts import MAX_CHARS_PER_TOKEN

    _, tokenizer = load_causal_lm(ModelSpec(str(tiny_llama), device="cpu"))
    seen: list[int] = []

    class Spy:
        def __call__(self, texts, **kwargs):
            seen.append(max(len(t) for t in ([texts] if isinstance(texts, str) else texts)))
            return tokenizer(texts, **kwargs)

        def __getattr__(self, name):
            return getattr(tokenizer, name)

    huge = Turn("word " * 2_000_000, "answer " * 1_500_000)
    (prompt,) = build_prompts(Spy(), "quality", [huge], 256)
    assert prompt.truncated and len(prompt.token_ids) <= 256
    assert max(seen) <= 2 * 256 * MAX_CHARS_PER_TOKEN + 500
    assert prompt.token_ids[-4:] == tokenizer(render("quality", "x", "y"))["input_ids"][-4:]  # the tail survives
