"""Known-bad variants of a pool's own records, one small injector per class, in one table (`CLASSES`).

Each injector takes the record it starts from (`messages` format), a second record of the pool (the donor:
its question or its answer is what some classes borrow) and a seeded generator, and returns the bad record.
Every class but the copies changes only the last assistant message, so what is bad is that one answer.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MIN_WORDS = 40
"""Words the changed answer needs for truncating and garbling to be unmistakable."""

REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "As an AI language model, I cannot provide an answer to this question.",
    "I apologize, but I am unable to assist with this. Is there anything else I can help you with?",
    "Sorry, I cannot comply with that. Please let me know if you have any other questions.",
    "As an AI developed to be helpful and harmless, I'm not able to do this. Please consult a professional.",
    "Thank you for your question! Unfortunately I do not have enough information to answer it.",
)
"""Refusals and boilerplate that answer nothing (the wordings assistant chats are full of)."""

OTHER_LANGUAGE = (
    "Das hängt von vielen Faktoren ab. Zunächst sollte man die Grundlagen verstehen und dann Schritt für Schritt "
    "vorgehen, damit das Ergebnis zuverlässig bleibt und sich später leicht erweitern lässt.",
    "Il faut d'abord comprendre le contexte général. Ensuite, on peut examiner chaque élément séparément et "
    "choisir la solution la plus simple, celle qui reste la plus facile à maintenir.",
    "Depende de varios factores. Primero conviene revisar los requisitos y después elegir la opción más sencilla "
    "que cumpla con todos ellos, sin añadir complejidad innecesaria.",
    "这取决于很多因素。首先需要了解基本情况，然后一步一步地进行，这样结果才可靠，以后也容易扩展。",
    "Это зависит от многих факторов. Сначала нужно понять основы, а затем действовать шаг за шагом, чтобы "
    "результат оставался надёжным и его было легко расширить.",
)
"""Answers in a language other than the pool's (mostly English) questions."""


def last_answer(record: dict) -> int | None:
    """Position of the last assistant message with text in a `messages` record, or None."""
    for position in range(len(record["messages"]) - 1, -1, -1):
        message = record["messages"][position]
        if message["role"] == "assistant" and message["content"].strip():
            return position
    return None


def first_question(record: dict) -> str:
    return next(m["content"] for m in record["messages"] if m["role"] == "user")


def _with_answer(record: dict, text: str) -> dict:
    changed = copy.deepcopy(record)
    changed["messages"][last_answer(changed)]["content"] = text
    return changed


def _answer(record: dict) -> str:
    return record["messages"][last_answer(record)]["content"]


def truncated(record: dict, donor: dict, rng: np.random.Generator) -> dict:
    """The answer cut at 15-50 % of its words, mid-sentence (no closing punctuation)."""
    words = _answer(record).split(" ")
    cut = max(3, int(len(words) * rng.uniform(0.15, 0.5)))
    text = " ".join(words[:cut]).rstrip(" .!?\n")
    return _with_answer(record, text)


def off_topic(record: dict, donor: dict, rng: np.random.Generator) -> dict:
    """A fluent answer to another record's question: the donor's answer under this record's question."""
    return _with_answer(record, _answer(donor))


def refusal(record: dict, donor: dict, rng: np.random.Generator) -> dict:
    """A refusal or boilerplate instead of the answer."""
    return _with_answer(record, REFUSALS[int(rng.integers(len(REFUSALS)))])


def garbled(record: dict, donor: dict, rng: np.random.Generator) -> dict:
    """Words shuffled inside windows of 6, and a span of 12 words inserted three more times."""
    words = re.split(r"\s+", _answer(record).strip())
    shuffled: list[str] = []
    for start in range(0, len(words), 6):
        window = words[start:start + 6]
        shuffled += [window[i] for i in rng.permutation(len(window))]
    span_start = int(rng.integers(max(1, len(shuffled) - 12)))
    span = shuffled[span_start:span_start + 12]
    at = int(rng.integers(len(shuffled) + 1))
    return _with_answer(record, " ".join(shuffled[:at] + span * 3 + shuffled[at:]))


def exact_copy(record: dict, donor: dict, rng: np.random.Generator) -> dict:
    """The record itself, again."""
    return copy.deepcopy(record)


def near_copy(record: dict, donor: dict, rng: np.random.Generator) -> dict:
    """The record with one small word edit (a word dropped, doubled or two swapped) per 60 words of its
    answer, and the answer's whitespace changed."""
    words = re.split(r"\s+", _answer(record).strip())
    for _ in range(max(1, len(words) // 60)):
        at = int(rng.integers(max(1, len(words) - 1)))
        edit = int(rng.integers(3))
        if edit == 0 and len(words) > 2:
            del words[at]
        elif edit == 1:
            words.insert(at, words[at])
        else:
            words[at:at + 2] = words[at:at + 2][::-1]
    return _with_answer(record, "  ".join(words) + "\n")


def other_language(record: dict, donor: dict, rng: np.random.Generator) -> dict:
    """An answer in another language than the question's."""
    return _with_answer(record, OTHER_LANGUAGE[int(rng.integers(len(OTHER_LANGUAGE)))])


@dataclass(frozen=True)
class BadClass:
    """A class of known-bad records: its injector, what it is, and whether the probe injects it by default."""

    inject: Callable[[dict, dict, np.random.Generator], dict]
    help: str
    min_words: int = 1
    """Words the source's last answer needs (truncated and garbled need enough to cut or shuffle)."""
    default: bool = True


CLASSES: dict[str, BadClass] = {
    "truncated": BadClass(truncated, "the answer cut off mid-sentence", MIN_WORDS),
    "off_topic": BadClass(off_topic, "an answer to another record's question"),
    "refusal": BadClass(refusal, "a refusal or boilerplate instead of an answer"),
    "garbled": BadClass(garbled, "words out of order, a span repeated", MIN_WORDS),
    "exact_copy": BadClass(exact_copy, "an exact copy of another record"),
    "near_copy": BadClass(near_copy, "a copy with a few words edited"),
    "other_language": BadClass(other_language, "an answer in another language than the question", default=False),
}
"""Class name → injector; `--classes` picks from these (default: every class marked default)."""
DEFAULT_CLASSES = tuple(name for name, entry in CLASSES.items() if entry.default)
