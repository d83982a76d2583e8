"""IFD through the batched prefill engine equals a plain one-sample-at-a-time PyTorch reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deita.data.records import Turn
from deita.errors import DeitaError
from deita.runtime.prefill import ModelSpec, PrefillEngine, load_causal_lm, mean_nll_head
from deita.scoring.config import ScoreConfig
from deita.scoring.ifd import IFDWorker, ifd_requests
from deita.scoring.scorer import ScoreStage, load_backend
from deita.testing import random_causal_lm

MAX_LENGTH = 96
TURNS = [
    Turn("What is 2+2?", "4"),
    Turn("hi", "hello there, how can I help you today?"),
    Turn("Explain recursion", ""),  # empty response: null
    Turn("Write a poem about the sea. " * 12, "The sea is blue and wide. " * 4),  # instruction cut from the left
    Turn("Summarise: " + "lorem ipsum dolor " * 20, "word " * 120),  # instruction dropped, response cut
    Turn("Name three colours.", "Red, green and blue."),
    Turn("", "An answer to nothing in particular."),  # empty instruction: only the BOS before the response
]


def reference_ifd(model, tokenizer, turn: Turn, max_length: int) -> float | None:
    """The definition, spelled out: full logits of one sequence at a time, float32, an explicit loop."""
    response = tokenizer(turn.response, add_special_tokens=False)["input_ids"]
    if not response:
        return None
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    specials = bos  # the test tokenizers add at most a BOS in front
    body = tokenizer(turn.instruction, add_special_tokens=False)["input_ids"]
    assert tokenizer(turn.instruction)["input_ids"] == specials + body
    while len(specials) + len(body) + len(response) > max_length and body:
        body = body[1:]  # the instruction loses tokens from the left first
    while len(specials) + len(response) > max_length or len(bos) + len(response) > max_length:
        response = response[:-1]  # then the response from the right
    prefix = specials + body
    skip = 0 if prefix and bos else 1  # no token before the response: score tokens 2..n in both terms
    if len(response) <= skip:
        return None
    conditioned = mean_nll(model, prefix + response, len(prefix) + skip)
    plain = mean_nll(model, bos + response, len(bos) + skip)
    return math.exp(conditioned) / math.exp(plain)


def mean_nll(model, ids: list[int], start: int) -> float:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    total = 0.0
    for position in range(start, len(ids)):
        total -= torch.log_softmax(logits[position - 1], dim=-1)[ids[position]].item()
    return total / (len(ids) - start)


def assert_matches_reference(scores: list[float | None], expected: list[float | None]) -> None:
    assert [s is None for s in scores] == [e is None for e in expected]
    got = [s for s in scores if s is not None]
    want = [e for e in expected if e is not None]
    np.testing.assert_allclose(got, want, rtol=1e-3)


@pytest.mark.parametrize("batch_tokens", [96, 100_000])
def test_ifd_equals_one_at_a_time_reference(tiny_llama, batch_tokens):
    model, tokenizer = load_causal_lm(ModelSpec(str(tiny_llama), device="cpu", dtype="float32"))
    config = ScoreConfig(type="ifd", model=str(tiny_llama), device="cpu", max_length=MAX_LENGTH,
                         batch_tokens=max(batch_tokens, MAX_LENGTH))
    worker = ScoreStage(config).load_worker()
    assert isinstance(worker, IFDWorker)
    worker.backend.engine.batch_tokens = batch_tokens  # a small budget: many padded batches of mixed lengths
    scores = worker.score(TURNS)
    expected = [reference_ifd(model, tokenizer, t, MAX_LENGTH) for t in TURNS]
    assert_matches_reference(scores, expected)
    assert scores[2] is None
    assert len({round(s, 4) for s in scores if s is not None}) > 3  # real, varied values


def test_truncation_counts_and_lengths(tiny_llama):
    _, tokenizer = load_causal_lm(ModelSpec(str(tiny_llama), device="cpu"))
    requests = ifd_requests(tokenizer, TURNS, MAX_LENGTH)
    cut = [i for i, r in enumerate(requests) if getattr(r, "instruction_cut", False)]
    assert cut == [3, 4]
    assert not requests[3].response_cut and requests[4].response_cut
    for r in requests:
        if hasattr(r, "conditioned"):
            assert len(r.conditioned.token_ids) <= MAX_LENGTH and len(r.plain.token_ids) <= MAX_LENGTH
            assert r.conditioned.token_ids[r.conditioned.start:] == r.plain.token_ids[r.plain.start:]
    # the kept instruction tokens are the ones nearest the response
    body = tokenizer(TURNS[3].instruction, add_special_tokens=False)["input_ids"]
    kept = requests[3].conditioned.token_ids[1 : requests[3].conditioned.start]
    assert kept == body[len(body) - len(kept):] and requests[3].conditioned.token_ids[0] == tokenizer.bos_token_id
    result = IFDWorker(load_backend(ScoreConfig(type="ifd", model=str(tiny_llama), device="cpu",
                                                max_length=MAX_LENGTH)), MAX_LENGTH)(TURNS)
    assert result.counters == {"truncated": 2, "responses_cut": 1, "empty_responses": 1, "too_short": 0}
    assert np.isnan(result.values[2]) and np.isfinite(np.delete(result.values, 2)).all()


@pytest.fixture(scope="module")
def no_bos_llama(tmp_path_factory):
    """The tiny LLaMA with a tokenizer that has no BOS token at all (like GPT-2 style tokenizers without one)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    model, tokenizer = random_causal_lm("tiny-llama", seed=1)
    backend = tokenizer.backend_tokenizer
    backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B", special_tokens=[])
    plain = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="[SEP]", pad_token="[PAD]",
                                    unk_token="[UNK]", model_max_length=4096)
    directory = tmp_path_factory.mktemp("no-bos")
    model.save_pretrained(directory)
    plain.save_pretrained(directory)
    return directory


def test_without_bos_both_terms_skip_the_first_response_token(no_bos_llama):
    model, tokenizer = load_causal_lm(ModelSpec(str(no_bos_llama), device="cpu"))
    assert tokenizer.bos_token_id is None and tokenizer("hi")["input_ids"] == tokenizer("hi", add_special_tokens=False)["input_ids"]
    turns = [*TURNS, Turn("Say one word.", "yes")]
    assert len(tokenizer("yes", add_special_tokens=False)["input_ids"]) == 1
    worker = ScoreStage(ScoreConfig(type="ifd", model=str(no_bos_llama), device="cpu", max_length=MAX_LENGTH)).load_worker()
    scores = worker.score(turns)
    assert_matches_reference(scores, [reference_ifd(model, tokenizer, t, MAX_LENGTH) for t in turns])
    assert scores[0] is None and scores[-1] is None  # "4" and "yes": one token, no token before it
    assert worker(turns).counters["too_short"] == 2


def test_span_head_equals_full_logits_in_small_chunks():
    """Chunked logits (here 7 positions at a time) give the same mean NLL as the full-logits forward pass."""
    model, _ = random_causal_lm("tiny-llama", seed=2)
    rng = np.random.default_rng(0)
    sequences = [rng.integers(5, 30000, size=int(n)).tolist() for n in rng.integers(2, 50, size=25)]
    starts = [int(rng.integers(1, len(s))) for s in sequences]
    head = mean_nll_head(model, chunk_bytes=7 * 4 * model.config.vocab_size)
    got = PrefillEngine(model, batch_tokens=128).run_spans(sequences, starts, head)
    expected = [mean_nll(model, s, start) for s, start in zip(sequences, starts, strict=True)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_span_start_must_leave_a_token():
    model, _ = random_causal_lm("tiny-llama")
    with pytest.raises(DeitaError, match="sequence 1: span start 3 leaves no predicted token in 3 tokens"):
        PrefillEngine(model).run_spans([[5, 6, 7], [5, 6, 7]], [1, 3], mean_nll_head(model))


def test_config_rules():
    with pytest.raises(DeitaError, match="type ifd needs model"):
        ScoreConfig(type="ifd").check()
    with pytest.raises(DeitaError, match="use backend hf or vllm"):
        ScoreConfig(type="ifd", model="m", backend="openai").check()


def test_gguf_locations(tmp_path):
    from deita.runtime.models import pretrained_location

    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "m.Q4.gguf").write_bytes(b"")
    assert pretrained_location(str(tmp_path / "one")) == (str(tmp_path / "one"), {"gguf_file": "m.Q4.gguf"})
    assert pretrained_location(str(tmp_path / "one" / "m.Q4.gguf")) == (str(tmp_path / "one"), {"gguf_file": "m.Q4.gguf"})
    (tmp_path / "one" / "other.gguf").write_bytes(b"")
    with pytest.raises(DeitaError, match="holds 2 .gguf files .*; pass the one to load"):
        pretrained_location(str(tmp_path / "one"))
    assert pretrained_location("org/model") == ("org/model", {})


def test_tokenizer_of_other_lm_needs_no_digit_tokens(tiny_llama):
    """IFD loads any causal LM: no digit ids are derived (a Deita scorer's tokenizer needs single digit tokens)."""
    backend = load_backend(ScoreConfig(type="ifd", model=str(tiny_llama), device="cpu"))
    assert backend.score_token_ids == []
    with pytest.raises(DeitaError, match="likelihoods only"):
        backend.digit_logprobs([])
