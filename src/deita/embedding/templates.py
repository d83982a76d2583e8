"""How a conversation becomes one text to embed (DEITA.md §3): Vicuna v1.1, as FastChat renders it."""

from __future__ import annotations

from collections.abc import Sequence

from deita.data.records import Turn

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def render_vicuna(turns: Sequence[Turn]) -> str:
    """system + " " + "USER: u1 ASSISTANT: a1</s>USER: u2 …"; an unanswered last turn ends in "ASSISTANT:"."""
    parts = [VICUNA_SYSTEM + " "]
    for turn in turns:
        parts.append("USER: " + turn.instruction + " ")
        parts.append("ASSISTANT: " + turn.response + "</s>" if turn.response else "ASSISTANT:")
    return "".join(parts)


def render_answers(turns: Sequence[Turn]) -> str:
    """The `--only-answer` text: the assistant messages joined by newlines."""
    return "\n".join(t.response for t in turns)


def render_plain(turns: Sequence[Turn]) -> str:
    """For sentence embedders with short windows: the messages alone, no system prompt."""
    return "\n".join(f"{t.instruction}\n{t.response}" if t.response else t.instruction for t in turns)
