"""Scorer prompts as token ids, truncated inside the instruction/response so the prompt's tail survives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deita.data.records import Turn
from deita.errors import DeitaError
from deita.scoring.templates import render

MAX_CHARS_PER_TOKEN = 32
"""Text beyond `max_length × this` characters cannot fit the context: it is cut before tokenizing, so a
10 MB message costs a tokenizer call on 64K characters, not gigabytes of token ids."""


def clip(text: str, max_tokens: int) -> str:
    """`text` cut to the characters that `max_tokens` tokens can possibly cover."""
    limit = max_tokens * MAX_CHARS_PER_TOKEN
    return text if len(text) <= limit else text[:limit]


@dataclass(frozen=True)
class Prompt:
    """One scorer prompt: its text (for text backends), its token ids (for token backends)."""

    text: str
    token_ids: list[int]
    truncated: bool


def build_prompts(tokenizer, score_type: str, turns: Sequence[Turn], max_length: int) -> list[Prompt]:
    """Render and tokenize the prompt of every turn (tokenizer's default special tokens, e.g. LLaMA's BOS).

    All prompts are tokenized in one batched call; only those over `max_length` are shortened. Texts are
    clipped first (`clip`), so memory stays bounded whatever the size of a message.
    """
    clipped = [Turn(clip(t.instruction, max_length), clip(t.response, max_length)) for t in turns]
    texts = [render(score_type, t.instruction, t.response) for t in clipped]
    encoded = tokenizer(texts)["input_ids"] if texts else []
    prompts = []
    for original, turn, text, ids in zip(turns, clipped, texts, encoded, strict=True):
        if len(ids) <= max_length:
            prompts.append(Prompt(text, list(ids), turn != original))
        else:
            prompts.append(_truncate(tokenizer, score_type, turn, max_length, len(ids)))
    return prompts


def _truncate(tokenizer, score_type: str, turn: Turn, max_length: int, full_length: int) -> Prompt:
    """Cut tokens off the end of the instruction (and response, longer first) until the prompt fits."""
    instruction = tokenizer(turn.instruction, add_special_tokens=False)["input_ids"]
    response = tokenizer(turn.response, add_special_tokens=False)["input_ids"] if score_type == "quality" else []
    overhead = max(full_length - len(instruction) - len(response), 0)
    budget = max_length - overhead
    if budget <= 0:
        raise DeitaError(f"--max-length {max_length} is shorter than the scorer prompt's own template")
    for _ in range(8):
        keep_instruction, keep_response = _split_budget(len(instruction), len(response), budget)
        text = render(
            score_type,
            tokenizer.decode(instruction[:keep_instruction]),
            tokenizer.decode(response[:keep_response]),
        )
        ids = tokenizer(text)["input_ids"]
        if len(ids) <= max_length:
            return Prompt(text, list(ids), True)
        budget -= len(ids) - max_length  # re-tokenisation at the cut can add a token or two
    raise DeitaError(f"could not truncate a prompt of {full_length} tokens to --max-length {max_length}")


def _split_budget(n_instruction: int, n_response: int, budget: int) -> tuple[int, int]:
    """Share `budget` tokens: each side keeps up to half, the shorter side's unused half goes to the other."""
    half = budget // 2
    if n_instruction <= half:
        return n_instruction, min(n_response, budget - n_instruction)
    if n_response <= budget - half:
        return min(n_instruction, budget - n_response), n_response
    return half, budget - half
