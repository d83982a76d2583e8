"""A conversation as training text, and its tokens with the label mask.

The text is rendered once, as a string with the character spans to train (each answer and its eos); the
tokenizer then runs once over the whole text, and a token is trained when it starts inside such a span.
So the token ids are exactly what `tokenizer.apply_chat_template(messages, tokenize=True)` gives with the
chat template saved next to the model (`vicuna_chat_template`), and the mask follows the roles of the turns.

Vicuna v1.1 is the embedder's rendering (`deita.embedding.templates.vicuna_segments`), with the
tokenizer's own eos after each answer and its BOS in front when it adds one. A trailing question with no
answer is left out: there is nothing to learn from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deita.data.records import Turn
from deita.embedding.templates import VICUNA_SYSTEM, vicuna_segments
from deita.errors import DeitaError

IGNORE = -100
"""Label of a token that is not trained (PyTorch's cross-entropy ignore index)."""


@dataclass(frozen=True)
class Rendered:
    """A conversation's training text and the character spans [start, end) whose tokens are trained."""

    text: str
    trained: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Example:
    """Token ids and labels (IGNORE where not trained) of one conversation, cut at max_length."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


def answered(turns: Sequence[Turn]) -> list[Turn]:
    """The turns to train on: a trailing unanswered question is dropped (the reader allows no other)."""
    return list(turns[:-1]) if turns and not turns[-1].response else list(turns)


def bos_prefix(tokenizer: Any) -> str:
    """The BOS token's text when the tokenizer adds one by default (LLaMA, Mistral), else ""."""
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or tokenizer.bos_token_id is None:
        return ""
    ids = tokenizer("a").input_ids
    return bos if ids and ids[0] == tokenizer.bos_token_id else ""


def eos_token(tokenizer: Any) -> str:
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise DeitaError("the tokenizer has no eos token: the Vicuna rendering ends each answer with it; "
                         "use --template model or a tokenizer with an eos token")
    return eos


def render_vicuna(turns: Sequence[Turn], bos: str, eos: str) -> Rendered:
    """`bos` + the embedder's Vicuna v1.1 text with `eos` after each answer; answers (+ eos) are trained."""
    text, spans = bos, []
    for piece, is_answer in vicuna_segments(answered(turns), eos):
        if is_answer:
            spans.append((len(text), len(text) + len(piece)))
        text += piece
    return Rendered(text, tuple(spans))


def messages_of(turns: Sequence[Turn], system: str | None = None) -> list[dict[str, str]]:
    """Chat messages of the turns to train on (role-aware), with the system message first if given."""
    messages = [{"role": "system", "content": system}] if system else []
    for turn in answered(turns):
        messages.append({"role": "user", "content": turn.instruction})
        if turn.response:
            messages.append({"role": "assistant", "content": turn.response})
    return messages


def render_with_template(tokenizer: Any, messages: list[dict[str, str]]) -> Rendered:
    """The model's chat template; each assistant message's span is where the text rendered up to it (with the
    generation prompt) ends and the text rendered through it ends. Needs a template that renders a
    conversation as a growing prefix, which chat templates of base models do."""
    if not getattr(tokenizer, "chat_template", None):
        raise DeitaError("--template model: the tokenizer has no chat template; use --template vicuna")

    def apply(part: list[dict[str, str]], generation: bool = False) -> str:
        return tokenizer.apply_chat_template(part, tokenize=False, add_generation_prompt=generation)

    text = apply(messages)
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start, through = apply(messages[:k], generation=True), apply(messages[: k + 1])
        if not (through.startswith(start) and text.startswith(through)):
            raise ValueError("the model's chat template does not render this conversation turn by turn (a "
                             "shorter conversation is not a prefix of the longer one); use --template vicuna")
        spans.append((len(start), len(through)))
    return Rendered(text, tuple(spans))


def tokenize(tokenizer: Any, rendered: Rendered, max_length: int) -> Example:
    """Token ids of the whole text (special tokens in it included, none added) and the label mask."""
    encoding = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    labels, span = [], 0
    spans = rendered.trained
    for token, (start, _end) in zip(ids, offsets, strict=True):
        while span < len(spans) and start >= spans[span][1]:
            span += 1
        inside = span < len(spans) and spans[span][0] <= start < spans[span][1]
        labels.append(token if inside else IGNORE)
    truncated = len(ids) > max_length
    return Example(ids[:max_length], labels[:max_length], truncated)


def vicuna_chat_template(with_bos: bool) -> str:
    """A Jinja chat template that renders exactly `render_vicuna`'s text.

    System messages are left out (training always used the Vicuna system prompt), so are assistant
    messages before the first user message (split chats); `add_generation_prompt` ends in "ASSISTANT:".
    """
    system = VICUNA_SYSTEM.replace("'", "\\'")
    return (
        "{%- set ns = namespace(open=false) -%}"
        + ("{{- bos_token -}}" if with_bos else "")
        + "{{- '" + system + " ' -}}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}"
        "{%- set ns.open = true -%}"
        "{{- 'USER: ' + message['content'] + ' ' -}}"
        "{%- elif message['role'] == 'assistant' and ns.open -%}"
        "{{- 'ASSISTANT: ' + message['content'] + eos_token -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
    )


class PairRenderer:
    """DPO texts: the prompt (everything before the answer, without the BOS the tokenizer adds when TRL
    tokenizes it) and each completion (the answer and its end of turn), rendered as SFT renders them."""

    def __init__(self, tokenizer: Any, template: str) -> None:
        self.tokenizer, self.template = tokenizer, template
        self.bos = bos_prefix(tokenizer)
        self.eos = eos_token(tokenizer) if template == "vicuna" else getattr(tokenizer, "eos_token", "")
        if template == "model" and not getattr(tokenizer, "chat_template", None):
            raise DeitaError("--template model: the tokenizer has no chat template; use --template vicuna")

    def _messages(self, turns: Sequence[Turn], system: str | None) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": system}] if system else []
        for turn in turns:
            messages.append({"role": "user", "content": turn.instruction})
            if turn.response:
                messages.append({"role": "assistant", "content": turn.response})
        return messages

    def _apply(self, messages: list[dict[str, str]], generation: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

    def prompt(self, turns: Sequence[Turn], system: str | None) -> str:
        """`turns` end with the unanswered question; the text ends where the answer starts."""
        if self.template == "vicuna":
            return "".join(text for text, _ in vicuna_segments(turns, self.eos))
        text = self._apply(self._messages(turns, system), generation=True)
        return text[len(self.bos):] if self.bos and text.startswith(self.bos) else text

    def completion(self, turns: Sequence[Turn], system: str | None, answer: str) -> str:
        if self.template == "vicuna":
            return " " + answer + self.eos
        messages = self._messages(turns, system)
        prompt = self._apply(messages, generation=True)
        full = self._apply([*messages, {"role": "assistant", "content": answer}], generation=False)
        if not full.startswith(prompt):
            raise ValueError("the model's chat template does not render the answer after the prompt it renders "
                             "for generation; use --template vicuna")
        return full[len(prompt):]

    def count(self, prompt: str) -> int:
        """Tokens of a prompt as TRL tokenizes it (with the tokenizer's BOS)."""
        return len(self.tokenizer(prompt).input_ids)

    def fit(self, turns: Sequence[Turn], system: str | None, limit: int) -> tuple[str, bool]:
        """(prompt text of at most `limit` tokens, whether it was cut): older turns go first, then the start of
        the last question (its end, next to the answer, is kept)."""
        turns = list(turns)
        text = self.prompt(turns, system)
        if self.count(text) <= limit:
            return text, False
        while len(turns) > 1:
            turns = turns[1:]
            text = self.prompt(turns, system)
            if self.count(text) <= limit:
                return text, True
        question = turns[-1].instruction
        starts = [start for start, _ in self.tokenizer(question, add_special_tokens=False,
                                                        return_offsets_mapping=True)["offset_mapping"]]
        overhead = self.count(self.prompt([Turn("", "")], system))
        keep = min(len(starts), limit - overhead)
        while keep > 0:
            text = self.prompt([Turn(question[starts[len(starts) - keep]:], "")], system)
            excess = self.count(text) - limit
            if excess <= 0:
                return text, True
            keep -= excess
        raise DeitaError(f"--max-prompt-length {limit} is too small: the template alone takes {overhead} tokens")
