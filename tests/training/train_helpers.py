"""Generated training data for the training tests (imported by them; conftest.py holds the fixtures)."""

from __future__ import annotations

import random

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "looked", "at", "the", "blue", "sky", "while", "small", "birds", "sang", "over", "green", "hills", "near", "an", "old", "river", "bank", "where", "children", "played", "games", "all", "day", "long"]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def conversations(n: int, seed: int = 0, words: int = 6, turns: int = 1) -> list[dict]:
    """ShareGPT records with role aliases; every third opens with a leading assistant message (split chat)."""
    from builders import sharegpt

    rng = random.Random(seed)
    records = []
    for i in range(n):
        messages = [("gpt", "(continued) " + sentence(rng, 3))] if i % 3 == 2 else []
        for t in range(turns):
            messages += [("human" if (i + t) % 2 else "user", sentence(rng, words)),
                         ("gpt", sentence(rng, words + 2))]
        records.append(sharegpt(*messages, id=f"c{i}"))
    return records
