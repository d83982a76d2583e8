"""Generate examples/sample.jsonl: 120 synthetic ShareGPT conversations written for this project.

Mixed on purpose: short and long answers, multi-turn chats, near-duplicate questions, a chat that starts
with the assistant (as split ShareGPT chats do) and a trailing unanswered question.
Run: python examples/make_sample.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS = ["binary search", "recursion", "hash tables", "photosynthesis", "the French revolution", "compound interest",
          "unit testing", "TCP handshakes", "climate models", "sourdough bread", "black holes", "SQL joins",
          "gradient descent", "the water cycle", "public speaking", "vector databases", "Rust ownership", "haiku"]
ASKS = ["Explain {t} to a beginner.", "What are common mistakes with {t}?", "Give me three facts about {t}.",
        "Write a short story that involves {t}.", "Compare {t} with a related idea and say when each is better.",
        "Design a one-week study plan to learn {t}, with daily goals and a final exercise.", "hi, what is {t}?"]
DETAIL = ["First, {t} starts from a simple idea: break the problem into parts you can check.",
          "A common pitfall is to skip the edge cases; with {t} these are where most errors hide.",
          "In practice, people use {t} together with measurement, so that each change can be verified.",
          "For example, a small exercise with {t} makes the idea concrete in about ten minutes.",
          "Finally, review what you learned about {t} after a day; spaced repetition helps memory."]


def answer(topic: str, rng: random.Random) -> str:
    sentences = [d.format(t=topic) for d in rng.sample(DETAIL, k=rng.randint(1, len(DETAIL)))]
    return " ".join(sentences) if rng.random() < 0.7 else "\n".join(f"{i + 1}. {s}" for i, s in enumerate(sentences))


def conversation(i: int, rng: random.Random) -> dict:
    topic = rng.choice(TOPICS)
    messages = []
    if i % 17 == 5:
        messages.append({"from": "gpt", "value": f"(continued) ... and that is the last part about {topic}."})
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        messages.append({"from": "human", "value": rng.choice(ASKS).format(t=topic)})
        messages.append({"from": "gpt", "value": answer(topic, rng)})
    if i % 23 == 7:
        messages.append({"from": "human", "value": f"One more question about {topic}?"})
    return {"id": f"sample-{i:04d}", "source": "deita-synthetic", "conversations": messages}


def main() -> None:
    rng = random.Random(7)
    path = Path(__file__).with_name("sample.jsonl")
    with path.open("w") as out:
        for i in range(120):
            out.write(json.dumps(conversation(i, rng)) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
