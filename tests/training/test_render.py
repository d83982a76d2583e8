"""The training text, its label mask and the saved chat template, against references built by hand."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from deita.data.records import Turn
from deita.embedding.templates import VICUNA_SYSTEM, render_vicuna
from deita.training.render import (
    IGNORE,
    PairRenderer,
    bos_prefix,
    messages_of,
    render_with_template,
    tokenize,
    vicuna_chat_template,
)
from deita.training.render import (
    render_vicuna as render_training,
)

CONVERSATIONS = [
    [Turn("What is 2+2?", "4")],
    [Turn("hi there", "hello, how can I help?"), Turn("tell me a joke", "why did the cat sit on the mat?")],
    [Turn("first question", "first answer"), Turn("unanswered follow-up", "")],
    [Turn("Summarise: " + "lorem ipsum dolor " * 20, "A summary, with punctuation! And [brackets].")],
]


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    return AutoTokenizer.from_pretrained(tiny_llama)


def reference(tokenizer, turns: list[Turn]) -> tuple[list[int], list[int]]:
    """Token ids and labels built piece by piece from the role-aware turns, each piece tokenized on its own:
    the system prompt and each question (with the ASSISTANT: tag) untrained, each answer and its eos trained."""
    ids, labels = [tokenizer.bos_token_id], [IGNORE]
    context = VICUNA_SYSTEM + " "
    for turn in turns:
        if not turn.response:
            break  # a trailing question with no answer is not trained on, nor kept
        context += f"USER: {turn.instruction} ASSISTANT:"
        context_ids = tokenizer(context, add_special_tokens=False).input_ids
        answer_ids = tokenizer(" " + turn.response, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        ids += context_ids + answer_ids
        labels += [IGNORE] * len(context_ids) + answer_ids
        context = ""
    return ids, labels


@pytest.mark.parametrize("turns", CONVERSATIONS)
def test_label_mask_equals_a_reference_built_from_the_turns(tokenizer, turns):
    example = tokenize(tokenizer, render_training(turns, bos_prefix(tokenizer), tokenizer.eos_token), 4096)
    ids, labels = reference(tokenizer, turns)
    assert example.input_ids == ids
    assert example.labels == labels
    trained = [t for t in example.labels if t != IGNORE]
    answers = [t.response for t in turns if t.response]
    assert tokenizer.decode(trained) == tokenizer.decode(
        [i for a in answers for i in tokenizer(" " + a, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]])


def test_vicuna_text_is_the_embedders_with_the_tokenizers_bos_and_eos(tokenizer):
    turns = CONVERSATIONS[1]
    rendered = render_training(turns, "[CLS]", "[SEP]")
    assert rendered.text == ("[CLS]" + VICUNA_SYSTEM + " USER: hi there ASSISTANT: hello, how can I help?[SEP]"
                             "USER: tell me a joke ASSISTANT: why did the cat sit on the mat?[SEP]")
    assert rendered.text == "[CLS]" + render_vicuna(turns).replace("</s>", "[SEP]")
    assert [rendered.text[a:b] for a, b in rendered.trained] == [" hello, how can I help?[SEP]",
                                                                 " why did the cat sit on the mat?[SEP]"]


def test_truncation_keeps_the_start(tokenizer):
    full = tokenize(tokenizer, render_training(CONVERSATIONS[3], "[CLS]", "[SEP]"), 4096)
    cut = tokenize(tokenizer, render_training(CONVERSATIONS[3], "[CLS]", "[SEP]"), 40)
    assert cut.truncated and not full.truncated
    assert cut.input_ids == full.input_ids[:40] and cut.labels == full.labels[:40]


@pytest.mark.parametrize("turns", CONVERSATIONS)
def test_chat_template_renders_exactly_the_training_text(tokenizer, turns):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = vicuna_chat_template(with_bos=True)
    rendered = render_training(turns, bos_prefix(tokenizer), tokenizer.eos_token)
    # the record's own system message and a leading assistant message are left out, as in training
    messages = [{"role": "system", "content": "You are terse."}, {"role": "assistant", "content": "(continued)"},
                *messages_of(turns)]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == rendered.text
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert ids == tokenize(tokenizer, rendered, 4096).input_ids
    # with the generation prompt, an unanswered question renders as the embedder renders it
    prompt = [*messages_of(turns), {"role": "user", "content": "and then?"}]
    answered = [t for t in turns if t.response]
    assert tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) == (
        "[CLS]" + render_vicuna([*answered, Turn("and then?", "")]).replace("</s>", "[SEP]"))


def test_model_template_trains_each_answer_and_its_end_of_turn(tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}{{ eos_token }} "
                               "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}")
    turns = CONVERSATIONS[1]
    rendered = render_with_template(tokenizer, messages_of(turns, system="be brief"))
    assert rendered.text.startswith("<|system|> be brief[SEP] <|user|> hi there[SEP] <|assistant|> ")
    assert [rendered.text[a:b] for a, b in rendered.trained] == ["hello, how can I help?[SEP] ",
                                                                 "why did the cat sit on the mat?[SEP] "]
    example = tokenize(tokenizer, rendered, 4096)
    trained = tokenizer.decode([t for t in example.labels if t != IGNORE])
    assert trained == tokenizer.decode(tokenizer("hello, how can I help?[SEP] why did the cat sit on the mat?[SEP]",
                                                 add_special_tokens=False).input_ids)


def test_dpo_prompt_is_cut_to_the_limit_oldest_turns_first(tokenizer):
    renderer = PairRenderer(tokenizer, "vicuna")
    long_question = "first words " + "filler text " * 200 + "the actual question at the end"
    turns = [Turn("old question " * 20, "old answer " * 20), Turn(long_question, "")]
    text, cut = renderer.fit(turns, None, 128)
    assert cut and renderer.count(text) <= 128
    assert text.startswith(VICUNA_SYSTEM + " USER: ") and text.endswith("the actual question at the end ASSISTANT:")
    assert "old question" not in text
    short = [Turn("old question", "old answer"), Turn("short one", "")]
    text, cut = renderer.fit(short, None, 128)
    assert not cut and text == render_vicuna(short).replace("</s>", "[SEP]")
    assert renderer.completion(short, None, "yes") == " yes[SEP]"
