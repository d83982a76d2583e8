"""The openai backend against a real HTTP server backed by the tiny model: same scores as hf, honest gaps."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from builders import example_turns
from openai_server import score_config

from deita.errors import DeitaError
from deita.scoring.backends.base import ScorerSpec
from deita.scoring.backends.openai import OpenAIBackend, OpenAIOptions
from deita.scoring.prompts import build_prompts
from deita.scoring.scorer import ScoreConfig, ScoreWorker, expected_scores

TURNS = example_turns()


def openai_config(tiny_llama, server, type: str = "complexity", **overrides) -> ScoreConfig:
    return score_config(tiny_llama, server.url, type, **{"concurrency": 4, **overrides})


@pytest.fixture(scope="module")
def hf_logprobs(tiny_llama):
    """The hf backend's six digit log-probs per score type: the reference every server result must match."""
    worker = ScoreWorker(ScoreConfig(model=str(tiny_llama), device="cpu"))
    backend = worker.backend
    return {t: backend.digit_logprobs(build_prompts(backend.tokenizer, t, TURNS, 2048))
            for t in ("complexity", "quality")}


@pytest.mark.parametrize("score_type", ["complexity", "quality"])
def test_scores_equal_hf_when_bias_is_honoured(tiny_llama, server, options, hf_logprobs, score_type):
    worker = ScoreWorker(openai_config(tiny_llama, server, type=score_type))
    result = worker(TURNS)
    np.testing.assert_allclose(result.values, expected_scores(hf_logprobs[score_type]), atol=1e-4)
    assert result.counters["renormalised"] == 0
    first = options.requests[0]
    assert first["model"] == "tiny" and first["max_tokens"] == 1 and first["temperature"] == 0
    assert first["logprobs"] == 20 and len(first["logit_bias"]) == 6


def renormalised_reference(hf: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """hf's expected score over only the digits the server returned."""
    return expected_scores(np.where(seen, hf, -np.inf))


@pytest.fixture(scope="module")
def digit_ranks(tiny_llama) -> np.ndarray:
    """(n, 6) how many vocabulary tokens the model ranks above each digit after each complexity prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deita.scoring.tokens import score_token_ids

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    digits = score_token_ids(tokenizer)
    ranks = []
    for prompt in build_prompts(tokenizer, "complexity", TURNS, 2048):
        with torch.no_grad():
            logits = model(torch.tensor([prompt.token_ids])).logits[0, -1]
        ranks.append([int((logits > logits[d]).sum()) for d in digits])
    return np.array(ranks)


@pytest.mark.parametrize("bias", ["honour", "ignore"])
def test_missing_digits_are_renormalised_and_counted(tiny_llama, server, options, hf_logprobs, digit_ranks,
                                                     bias):
    if bias == "honour":  # the bias lifts the digits to the top: a cap of 3 returns the best three
        cap = 3
    else:  # a server reporting unbiased log-probs: a cap that reaches every prompt's best digit, not all
        cap = int(digit_ranks.min(axis=1).max()) + 1
        assert (digit_ranks.max(axis=1) >= cap).all(), "the tiny model ranks digits too evenly for this test"
    options.bias, options.max_logprobs = bias, cap
    worker = ScoreWorker(openai_config(tiny_llama, server, max_logprobs=cap))
    prompts = build_prompts(worker.backend.tokenizer, "complexity", TURNS, 2048)
    logprobs = worker.backend.digit_logprobs(prompts)
    seen = np.isfinite(logprobs)
    assert seen.any(axis=1).all() and not seen.all(axis=1).any()  # every row: some digits, not all
    if bias == "honour":
        assert (seen.sum(axis=1) == 3).all()
    assert worker.backend.counters.renormalised == len(TURNS)
    result = worker(TURNS)
    assert result.counters["renormalised"] == len(TURNS)
    np.testing.assert_allclose(result.values, renormalised_reference(hf_logprobs["complexity"], seen), atol=1e-4)
    assert ((result.values >= 1) & (result.values <= 6)).all()


def test_strict_names_the_prompt_and_missing_digits(tiny_llama, server, options):
    options.max_logprobs = 3
    worker = ScoreWorker(openai_config(tiny_llama, server, max_logprobs=3, strict=True))
    with pytest.raises(DeitaError, match=r"prompt 0: the digits (\d, ){2}\d are not among.*--max-logprobs"):
        worker(TURNS)


def test_no_digit_returned_is_an_error(tiny_llama, server, options, digit_ranks):
    cap = int(digit_ranks[0].min())  # prompt 0's best digit just misses the top-k
    assert cap >= 1, "the tiny model's argmax is a digit; pick another prompt"
    options.bias, options.max_logprobs = "ignore", cap
    worker = ScoreWorker(openai_config(tiny_llama, server, max_logprobs=cap))
    with pytest.raises(DeitaError, match="prompt 0: none of the digits 1..6"):
        worker(TURNS)


def test_rejected_logit_bias_is_dropped_once_and_remembered(tiny_llama, server, options, hf_logprobs):
    everything = 100_000  # the cap's maximum, more than the vocabulary: every digit is returned
    options.bias, options.max_logprobs = "reject", everything
    worker = ScoreWorker(openai_config(tiny_llama, server, max_logprobs=everything))
    np.testing.assert_allclose(worker.score(TURNS), expected_scores(hf_logprobs["complexity"]), atol=1e-4)
    assert not worker.backend.send_bias
    with_bias = [r for r in options.requests if "logit_bias" in r]
    assert 1 <= len(with_bias) <= 4  # at most the requests in flight when the first 400 came back
    options.requests.clear()
    worker.score(TURNS[:2])
    assert options.requests and not any("logit_bias" in r for r in options.requests)


def test_logprobs_over_the_server_cap_is_a_clear_error(tiny_llama, server, options):
    options.max_logprobs = 5
    worker = ScoreWorker(openai_config(tiny_llama, server, max_logprobs=20))
    with pytest.raises(DeitaError, match=r"HTTP 400.*lower --max-logprobs, now 20"):
        worker(TURNS)


def test_unreachable_server_names_the_url_quickly(tiny_llama):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = OpenAIBackend(ScorerSpec(str(tiny_llama)), OpenAIOptions(base_url=f"http://127.0.0.1:{port}/v1",
                                                                       http_tries=3),
                            connect_timeout=1.0, backoff=0.01)
    prompts = build_prompts(backend.tokenizer, "complexity", TURNS, 2048)
    start = time.monotonic()
    with pytest.raises(DeitaError, match=rf"http://127\.0\.0\.1:{port}/v1/completions after 3 tries"):
        backend.digit_logprobs(prompts)
    assert time.monotonic() - start < 5


def test_cli_end_to_end(tiny_llama, server, options, hf_logprobs, tmp_path):
    pytest.importorskip("deita.data.io")
    records = [{"id": i, "conversations": [{"from": "human", "value": t.instruction},  # complexity reads
                                           {"from": "gpt", "value": t.response or "ok"}]}  # no response
               for i, t in enumerate(TURNS)]
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    args = ["score", str(source), "-o", str(target), "--type", "complexity", "--backend", "openai",
            "--base-url", server.url, "--model", str(tiny_llama), "-q"]
    done = subprocess.run([sys.executable, "-c", "from deita.cli import main; main()", *args],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    scored = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["id"] for r in scored] == list(range(len(TURNS)))
    got = [r["complexity_scores"][0] for r in scored]
    np.testing.assert_allclose(got, expected_scores(hf_logprobs["complexity"]), atol=1e-4)


def test_config_default_served_model_is_the_model(tiny_llama, server, options):
    ScoreWorker(openai_config(tiny_llama, server, served_model=None)).score(TURNS[:1])
    assert options.requests[-1]["model"] == str(tiny_llama)
