"""Batched embeddings equal one-at-a-time embeddings through the model's ordinary forward pass."""

import numpy as np
import pytest
import torch

from deita.data.records import Record, Turn
from deita.embedding.embedder import EmbedConfig, EmbedStage, default_sentence_model
from deita.embedding.templates import VICUNA_SYSTEM, render_answers, render_vicuna
from deita.runtime.prefill import ModelSpec, load_causal_lm

CONVERSATIONS = [
    [Turn("What is 2+2?", "4")],
    [Turn("Write a poem about the sea. " * 10, "The sea is blue and wide. " * 25), Turn("Shorter?", "Sea.")],
    [Turn("Explain recursion", "")],
    [Turn("hi", "hello there"), Turn("bye", "goodbye " * 40), Turn("again", "ok")],
]


def records():
    return [Record(i, f"index {i}", {}, turns) for i, turns in enumerate(CONVERSATIONS)]


def test_vicuna_rendering_bytes():
    turns = [Turn("u1", "a1"), Turn("u2", "")]
    assert render_vicuna(turns) == VICUNA_SYSTEM + " USER: u1 ASSISTANT: a1</s>USER: u2 ASSISTANT:"
    assert render_answers([Turn("u1", "a1"), Turn("u2", "a2")]) == "a1\na2"


def reference_embedding(model, tokenizer, text: str, max_length: int) -> np.ndarray:
    ids = torch.tensor([tokenizer(text)["input_ids"][:max_length]])
    with torch.no_grad():
        return model(ids, output_hidden_states=True).hidden_states[-1][0, -1].numpy()


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_mistral"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_causal_batched_equals_one_at_a_time(request, fixture, padding_side):
    path = request.getfixturevalue(fixture)
    config = EmbedConfig(kind="causal", model=str(path), device="cpu", max_length=96, dtype="float32",
                         batch_tokens=4096)
    worker = EmbedStage(config).load_worker()
    worker.tokenizer.padding_side = padding_side
    texts = [config.text(r) for r in records()]
    result = worker(texts)
    assert result.counters["truncated"] >= 1  # the long conversations hit max_length: padding is present
    model, tokenizer = load_causal_lm(ModelSpec(str(path), device="cpu"))
    for row, text in zip(result.values, texts, strict=True):
        expected = reference_embedding(model, tokenizer, text, 96)
        cosine = float(row @ expected / np.linalg.norm(row) / np.linalg.norm(expected))
        assert cosine >= 0.9999


def test_only_answer_text(tiny_llama):
    config = EmbedConfig(kind="causal", model=str(tiny_llama), only_answer=True)
    assert config.text(records()[3]) == "hello there\n" + "goodbye " * 40 + "\nok"


def test_sentence_embedder_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    config = EmbedConfig(kind="sentence", device="cpu")
    texts = [config.text(r) for r in records()]
    values = EmbedStage(config).load_worker()(texts).values
    model = SentenceTransformer(default_sentence_model(), device="cpu")
    for row, text in zip(values, texts, strict=True):
        expected = model.encode([text])[0]
        assert float(row @ expected / np.linalg.norm(row) / np.linalg.norm(expected)) >= 0.9999
    assert values.shape == (4, 384) and values.dtype == np.float32
