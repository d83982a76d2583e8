"""Test data builders shared by the test folders: records, JSONL files, varied turns."""

from __future__ import annotations

import json
from pathlib import Path

from deita.data.records import Turn


def example_turns():
    """Varied turns for scoring tests: short, long (truncation), unanswered, multi-sentence."""
    return [
        Turn("What is 2+2?", "4"),
        Turn("Write a poem about the sea. " * 12, "The sea is blue and wide. " * 20),
        Turn("Explain recursion", ""),
        Turn("hi", "hello there, how can I help you today?"),
        Turn("Summarise this text: " + "lorem ipsum dolor sit amet " * 30, "A summary."),
    ]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Write records as JSON Lines (test data)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def sharegpt(*messages: tuple[str, str], **fields) -> dict:
    """A ShareGPT record from (role, text) pairs plus extra fields (test data)."""
    return {**fields, "conversations": [{"from": role, "value": text} for role, text in messages]}


def scored_pool(output: Path, target: Path | None = None) -> Path:
    """The scored pool a `deita select` run stands on (its kept records with their score fields, as the staged
    path wrote them to OUTPUT.work/scored.jsonl), rebuilt from the run's columns and pool into `target`
    (default: beside the output), for `deita filter` and `deita report` by hand."""
    from deita.data.io import RecordWriter
    from deita.serve.selection import FinishedRun

    run = FinishedRun(output)
    target = target or output.with_name(output.name + ".scored.jsonl")
    with RecordWriter(target, "jsonl") as writer:
        for record in run.scored_records():
            writer.write(record.raw)
    return target


TOPICS = {
    "python": "list dictionary function loop class module exception generator decorator iterator string tuple",
    "cooking": "onion garlic butter oven pan sauce flour salt pepper dough simmer roast",
    "astronomy": "star planet galaxy orbit telescope comet nebula gravity moon eclipse light spectrum",
    "finance": "budget savings interest loan stock bond inflation tax income expense credit portfolio",
    "gardening": "soil seed compost tomato root water sunlight pruning mulch fertilizer leaf pest",
    "history": "empire treaty revolution king war trade colony republic battle dynasty reform archive",
}
QUESTIONS = ("How do I use {a} and {b} together in {t}?", "Explain the difference between {a} and {b} in {t}.",
             "What is the best way to handle {a} when working with {b}?", "Why does {a} matter for {b} in {t}?")
SENTENCES = ("The {a} is usually the first thing to check, because it shapes how the {b} behaves.",
             "In {t}, a good {a} makes the {b} easier to understand and to change later.",
             "Start with a small {a}, then add the {b} step by step and compare the results.",
             "Many people forget that the {a} and the {b} depend on each other in {t}.",
             "If the {b} looks wrong, look again at the {a} before you change anything else.",
             "A simple rule of thumb is to keep the {a} separate from the {b} whenever you can.",
             "Experienced practitioners of {t} tend to treat every {a} as a small experiment of its own.",
             "Once that works, measure how often your {b} changes, since it tells you what to keep.",
             "Writing down each {a} you tried saves time when you come back to this problem next month.",
             "Beginners often overlook how strongly {b} affects everything downstream of it.")


def chat_pool(n: int, seed: int = 0) -> list[dict]:
    """`n` ShareGPT records of varied but coherent questions and answers on six topics (each answer talks about
    its own question's words), some with a second turn: a small pool on which answer quality can be told."""
    import random

    rng = random.Random(seed)
    records = []
    for i in range(n):
        topic = rng.choice(list(TOPICS))
        words = TOPICS[topic].split()
        messages = []
        for _ in range(1 + (rng.random() < 0.2)):
            a, b = rng.sample(words, 2)
            messages.append(("human", rng.choice(QUESTIONS).format(a=a, b=b, t=topic)))
            answer = [sentence.format(a=rng.choice((a, b)), b=rng.choice(words), t=topic)
                      for sentence in rng.sample(SENTENCES, rng.randint(3, 6))]
            messages.append(("gpt", " ".join(answer)))
        records.append(sharegpt(*messages, id=f"c{i}"))
    return records


def run_main(capsys, *args) -> tuple[int, str, str]:
    """`deita ARGS` in this process through the installed entry point (quicker than a subprocess):
    (exit code, stdout, stderr)."""
    from deita.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
