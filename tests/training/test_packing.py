"""Packing without cross-talk: each conversation's loss in a packed row equals its loss alone (fp32)."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from train_helpers import conversations
from transformers import AutoModelForCausalLM, AutoTokenizer

from deita.data.records import Turn
from deita.training.packing import PACKING_STRATEGY
from deita.training.render import IGNORE, bos_prefix, render_vicuna, tokenize


def pack(dataset: Dataset, max_length: int) -> Dataset:
    """Rows of packed conversations, as SFTTrainer builds them (`seq_lengths` keeps each one's length)."""
    from trl.data_utils import pack_dataset

    return pack_dataset(dataset, max_length, PACKING_STRATEGY)


def collator(pad_token_id: int, packing: bool):
    """The collator SFTTrainer uses: padding-free (one flat row, position ids) when packing."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=packing)


def per_token_loss(model, input_ids, labels, **kwargs) -> torch.Tensor:
    """Cross-entropy of each next-token label (the plain reference: full logits, no fused head)."""
    logits = model(input_ids=input_ids, use_cache=False, **kwargs).logits[0, :-1].float()
    return torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=IGNORE, reduction="none")


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_loss_equals_unpacked_loss(tiny_llama, one_thread, attention):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation=attention, dtype=torch.float32)
    records = conversations(5, seed=3, words=5, turns=2)
    turns = [[Turn(r["conversations"][i]["value"], r["conversations"][i + 1]["value"])
              for i in range(len(r["conversations"]) % 2, len(r["conversations"]), 2)] for r in records]
    examples = [tokenize(tokenizer, render_vicuna(t, bos_prefix(tokenizer), tokenizer.eos_token), 512) for t in turns]
    rows = pack(Dataset.from_dict({"input_ids": [e.input_ids for e in examples],
                                   "labels": [e.labels for e in examples]}), max_length=512)
    assert len(rows) == 1 and sorted(rows[0]["seq_lengths"]) == sorted(len(e.input_ids) for e in examples)
    batch = collator(tokenizer.pad_token_id, packing=True)([rows[0]])
    assert "attention_mask" not in batch and batch["position_ids"].shape == batch["input_ids"].shape
    with torch.no_grad():
        packed = per_token_loss(model, batch["input_ids"], batch["labels"], position_ids=batch["position_ids"])
        offset = 0
        by_length = {}
        for example in examples:
            by_length.setdefault(len(example.input_ids), []).append(example)
        for length in rows[0]["seq_lengths"]:
            example = by_length[length].pop(0)
            ids = batch["input_ids"][:, offset:offset + length]
            assert ids[0].tolist() == example.input_ids
            alone = per_token_loss(model, ids, torch.tensor([example.labels]))
            # the row's loss positions inside this conversation (its last token predicts the next one: no label)
            inside = packed[offset:offset + length - 1]
            trained = torch.tensor(example.labels[1:]) != IGNORE
            assert trained.any()
            assert torch.allclose(inside[trained], alone[trained], atol=1e-4, rtol=0)
            assert abs(inside[trained].mean() - alone[trained].mean()) < 1e-4
            offset += length
        # no conversation is trained to follow the one before it
        starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
        assert all(batch["labels"][0, s] == IGNORE for s in starts)


def test_without_the_position_ids_the_rows_would_cross_talk(tiny_llama, one_thread):
    """The check above has teeth: one causal mask over the whole row changes the later conversations' loss."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation="sdpa", dtype=torch.float32)
    a = tokenize(tokenizer, render_vicuna([Turn("one two", "three four")], "[CLS]", "[SEP]"), 64)
    b = tokenize(tokenizer, render_vicuna([Turn("five six", "seven eight")], "[CLS]", "[SEP]"), 64)
    ids, labels = torch.tensor([a.input_ids + b.input_ids]), torch.tensor([a.labels + b.labels])
    with torch.no_grad():
        crossing = per_token_loss(model, ids, labels)[len(a.input_ids):]
        alone = per_token_loss(model, torch.tensor([b.input_ids]), torch.tensor([b.labels]))
    trained = torch.tensor(b.labels[1:]) != IGNORE
    assert (crossing[trained] - alone[trained]).abs().max() > 1e-3
