"""Scorer training examples: the prompt exactly as `deita score` builds it (truncation included) → the digit."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from deita.data.records import Turn
from deita.errors import DeitaError, RecordError
from deita.evol.scorer_data import IGNORE_INDEX, ranked_file_examples, scorer_examples
from deita.scoring.prompts import build_prompts
from deita.scoring.templates import render
from deita.scoring.tokens import score_token_ids

VARIANTS = ["Name a colour.", "Name a colour and also constraint 1.", "Name a colour and also constraint 1 and 2.",
            "Name three colours, explain each.", "Name three colours with hex codes in a table.",
            "Name three colours with hex codes in a table, sorted by hue, and justify the order."]


def ranked_row(score_type: str, variants=VARIANTS, scores=(1, 2, 3, 4, 5, 6), instruction="Describe the sea."):
    row = {"index": 0, "type": score_type, "instruction": instruction if score_type == "quality" else variants[0],
           "variants": list(variants), "order": [5, 0, 4, 1, 3, 2], "scores": list(scores)}
    return row


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    return AutoTokenizer.from_pretrained(tiny_llama)


@pytest.mark.parametrize("score_type", ["complexity", "quality"])
def test_prompt_ids_then_the_digit_with_loss_on_the_digit_only(tokenizer, score_type):
    scores = (3, 1, 6, 2, 5, 4)
    examples = scorer_examples([ranked_row(score_type, scores=scores)], tokenizer, score_type)
    digits = score_token_ids(tokenizer)
    assert len(examples) == 6
    for variant, score, example in zip(VARIANTS, scores, examples, strict=True):
        prompt = render(score_type, variant) if score_type == "complexity" else \
            render(score_type, "Describe the sea.", variant)
        prompt_ids = tokenizer(prompt)["input_ids"]  # no chat template; the tokenizer's own BOS
        assert prompt_ids[0] == tokenizer.bos_token_id
        assert example.input_ids == prompt_ids + [digits[score - 1]]
        assert example.labels == [IGNORE_INDEX] * len(prompt_ids) + [digits[score - 1]]
        assert example.score == score and not example.truncated
        assert example.as_dict() == {"input_ids": example.input_ids, "labels": example.labels}


def test_the_digit_follows_the_position_deita_score_reads(tokenizer):
    """`deita score` reads the next-token logits after the last prompt token; the digit is that next token."""
    (example,) = scorer_examples([ranked_row("complexity", VARIANTS[:2], (2, 1))], tokenizer, "complexity")[1:]
    appended = tokenizer(render("complexity", VARIANTS[1]) + "1", add_special_tokens=True)["input_ids"]
    assert example.input_ids == appended, "the same ids as the prompt with the digit written after it"


@pytest.mark.parametrize("score_type", ["complexity", "quality"])
def test_long_prompts_are_cut_exactly_as_scoring_cuts_them(tokenizer, score_type):
    long = "a very long instruction about the colours of the sea " * 200
    variants = [long, long + " and also constraint 1"]
    row = ranked_row(score_type, variants, (1, 2), instruction="Describe the sea in detail. " * 100)
    max_length = 128
    examples = scorer_examples([row], tokenizer, score_type, max_length=max_length)
    turns = [Turn(v, "") if score_type == "complexity" else Turn(row["instruction"], v) for v in variants]
    reference = build_prompts(tokenizer, score_type, turns, max_length)
    digits = score_token_ids(tokenizer)
    for example, prompt, score in zip(examples, reference, (1, 2), strict=True):
        assert example.truncated and prompt.truncated
        assert example.input_ids == prompt.token_ids + [digits[score - 1]]
        assert len(example.input_ids) <= max_length + 1
        tail = tokenizer(render(score_type, "x", "y"))["input_ids"][-4:]  # "##Complexity: " / "##Quality: "
        assert example.input_ids[-5:-1] == tail, "the prompt's tail, where the score is read, survives"


def test_digit_override_and_bad_scores(tokenizer):
    examples = scorer_examples([ranked_row("complexity")], tokenizer, "complexity", token_ids=[11, 12, 13, 14, 15, 16])
    assert [e.input_ids[-1] for e in examples] == [11, 12, 13, 14, 15, 16]
    with pytest.raises(DeitaError, match="no digit token"):
        scorer_examples([ranked_row("complexity", scores=(1, 2, 3, 4, 5, 7))], tokenizer, "complexity")


def test_a_ranked_file_streams_examples_and_names_bad_lines(tokenizer, tmp_path):
    path = tmp_path / "ranked.jsonl"
    rows = [ranked_row("complexity"), ranked_row("complexity", VARIANTS[:3], (3, 2, 1))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = list(ranked_file_examples(path, tokenizer, "complexity", rows_per_batch=1))
    assert len(examples) == 9 and [e.score for e in examples[6:]] == [3, 2, 1]
    assert [e.input_ids for e in examples] == [e.input_ids for e in scorer_examples(rows, tokenizer, "complexity")]
    with pytest.raises(RecordError, match=r"ranked.jsonl, line 1: a complexity row, but --type is quality"):
        list(ranked_file_examples(path, tokenizer, "quality"))
    bad = dict(rows[0], scores=[1, 2, 3, 4, 5, 9])
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(RecordError, match=r"line 2: 'scores'\[5\] = 9 is not a whole number from 1 to 6"):
        list(ranked_file_examples(path, tokenizer, "complexity"))
