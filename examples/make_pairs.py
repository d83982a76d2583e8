"""Generate examples/pairs.jsonl: 40 synthetic preference pairs in UltraFeedback-binarized shape.

Each pair has `prompt_id`, `prompt`, and `chosen` / `rejected` as message lists that repeat the prompt before
the answer, with `score_chosen` / `score_rejected`, as `train_prefs` has them. The chosen answer is on topic
and detailed; the rejected one is off topic or curt. For `deita dpo-data` and `deita train dpo` demos.
Run: python examples/make_pairs.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from make_sample import ASKS, TOPICS, answer

CURT = ["I am not sure.", "Look it up.", "That depends.", "It is complicated; maybe ask someone else."]


def pair(i: int, rng: random.Random) -> dict:
    topic = rng.choice(TOPICS)
    prompt = rng.choice(ASKS).format(t=topic)
    off_topic = rng.choice([t for t in TOPICS if t != topic])
    rejected = answer(off_topic, rng) if rng.random() < 0.5 else rng.choice(CURT)
    return {"prompt_id": f"pair-{i:04d}", "prompt": prompt,
            "chosen": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer(topic, rng)}],
            "rejected": [{"role": "user", "content": prompt}, {"role": "assistant", "content": rejected}],
            "score_chosen": float(rng.randint(7, 10)), "score_rejected": float(rng.randint(1, 5))}


def main() -> None:
    rng = random.Random(11)
    path = Path(__file__).with_name("pairs.jsonl")
    with path.open("w") as out:
        for i in range(40):
            out.write(json.dumps(pair(i, rng)) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
