"""How a conversation becomes one text to embed (DEITA.md §3): Vicuna v1.1, as FastChat renders it."""

from __future__ import annotations

from collections.abc import Sequence

from deita.data.records import Turn

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def vicuna_segments(turns: Sequence[Turn], eos: str = "</s>") -> list[tuple[str, bool]]:
    """Vicuna v1.1 as (text, is_answer) pieces, joined without separators.

    Each answer piece is " " + response + eos: what SFT trains on (`deita.training.render`); everything
    else is context. An unanswered last turn ends in "ASSISTANT:" with no answer piece. The record's own
    system message is not used: the Vicuna system prompt always opens the text.
    """
    segments = [(VICUNA_SYSTEM + " ", False)]
    for turn in turns:
        segments.append(("USER: " + turn.instruction + " ASSISTANT:", False))
        if turn.response:
            segments.append((" " + turn.response + eos, True))
    return segments


def render_vicuna(turns: Sequence[Turn]) -> str:
    """system + " " + "USER: u1 ASSISTANT: a1</s>USER: u2 …"; an unanswered last turn ends in "ASSISTANT:"."""
    return "".join(text for text, _ in vicuna_segments(turns))


def render_answers(turns: Sequence[Turn]) -> str:
    """The `--only-answer` text: the assistant messages joined by newlines."""
    return "\n".join(t.response for t in turns)


def render_plain(turns: Sequence[Turn]) -> str:
    """For sentence embedders with short windows: the messages alone, no system prompt."""
    return "\n".join(f"{t.instruction}\n{t.response}" if t.response else t.instruction for t in turns)
