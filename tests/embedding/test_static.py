"""The static embedder: distilled once and cached, deterministic, and it reads the whole conversation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from builders import write_jsonl

from deita.data.records import Record, Turn
from deita.embedding import static
from deita.embedding.embedder import EmbedConfig, EmbedStage, default_sentence_model
from deita.embedding.run import embed_file
from deita.runtime.options import RunOptions

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 1-layer BERT with the packaged MiniLM's tokenizer, saved as a local model folder."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(Path(default_sentence_model()) / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """One cache of distilled models for the tests that only use it."""
    return tmp_path_factory.mktemp("static-models")


def config(model: Path, cache: Path, **kw) -> EmbedConfig:
    return EmbedConfig(kind="static", model=str(model), cache_path=str(cache), static_dims=16, **kw)


def test_distilled_once_then_read_from_the_cache(tiny_bert: Path, tmp_path: Path, monkeypatch) -> None:
    first, path, distilled = static.load_or_distill(tiny_bert, 16, tmp_path)
    assert distilled and path.exists() and first.shape == (30522, 16) and first.dtype == np.float32
    calls = []
    monkeypatch.setattr(static, "distill", lambda *a, **k: calls.append(a))
    again, same_path, distilled = static.load_or_distill(tiny_bert, 16, tmp_path)
    assert not distilled and same_path == path and not calls and np.array_equal(first, again)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left
    assert static.model_content_key(tiny_bert, 8) != static.model_content_key(tiny_bert, 16)


def test_deterministic_and_whole_conversation(tiny_bert: Path, models: Path) -> None:
    opening = " ".join(f"word{i}" for i in range(400))  # well over 256 tokens
    chats = [[Turn(opening, "and then the answer was yes")], [Turn(opening, "but in the end it was no, never")]]
    cfg = config(tiny_bert, models)
    texts = [cfg.text(Record(i, f"index {i}", {}, turns)) for i, turns in enumerate(chats)]
    worker = EmbedStage(cfg).load_worker()
    first = worker(texts).values
    assert np.array_equal(first, EmbedStage(cfg).load_worker()(texts).values)  # a fresh load: same bytes
    assert not np.allclose(first[0], first[1], atol=1e-5)  # they differ only after token 256, and that counts
    short = EmbedStage(config(tiny_bert, models, max_length=256)).load_worker()(texts)
    assert np.allclose(short.values[0], short.values[1]) and short.counters["truncated"] == 2


def test_embed_file_with_static_kind(tiny_bert: Path, models: Path, tmp_path: Path) -> None:
    rows = [{"id": i, "conversations": [{"from": "human", "value": f"question {i} " * (i + 1)},
                                        {"from": "gpt", "value": "answer " * 50 * (i + 1)}]} for i in range(6)]
    src = write_jsonl(tmp_path / "pool.jsonl", rows)
    cfg = config(tiny_bert, models, max_length=64)
    report = embed_file(src, tmp_path / "emb.npy", cfg, RunOptions(quiet=True, shard_size=4))
    values = np.load(tmp_path / "emb.npy")
    assert values.shape == (6, 16) and values.dtype == np.float32
    assert np.allclose(np.linalg.norm(values, axis=1), 1, atol=1e-5)
    lines = report.lines()
    assert any("to the first --max-length 64 tokens" in line for line in lines)
    assert any(line.startswith("text seen: ") for line in lines)


def test_sentence_max_length_lowers_the_window() -> None:
    cfg = EmbedConfig(kind="sentence", device="cpu", max_length=16)
    worker = EmbedStage(cfg).load_worker()
    assert worker.model.max_seq_length == 16
    result = worker(["one two three " * 20, "short"])
    assert result.counters["truncated"] == 1 and "--max-length" in cfg.window()
