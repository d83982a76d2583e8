"""The offline quality signals: each signal on turns made to fail it, the gate, and the pool's bigram counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from builders import chat_pool, write_jsonl

from deita.data.records import Turn
from deita.dedup.bigrams import BigramCounts, bigram_buckets
from deita.dedup.config import DedupConfig
from deita.dedup.minhash import word_hashes
from deita.dedup.run import dedup_file
from deita.scoring import signals
from deita.scoring.signals import (
    QUALITY_FIELD,
    SIGNAL_FIELDS,
    content_overlap,
    is_refusal,
    is_truncated,
    quality_gate,
    relevance_ranks,
    repetition,
    signal_fields,
)

ANSWER = ("To reverse a list in Python, call the list's reverse method, which changes the list in place, or use "
          "slicing with a step of minus one, which returns a new reversed list and leaves the original alone.")
QUESTION = "How do I reverse a list in Python without changing the original list?"


def test_refusal_and_truncation_rules() -> None:
    assert is_refusal("I'm sorry, but I cannot help with that.") and is_refusal("As an AI language model, I can't.")
    assert not is_refusal(ANSWER) and not is_refusal("Sorry for the wait! " + ANSWER * 5)  # long: it answers
    assert is_truncated(ANSWER[:120]) and not is_truncated(ANSWER)
    assert not is_truncated("4") and not is_truncated("```python\nprint(1)\n```") and not is_truncated(ANSWER + " :)")


def test_overlap_and_repetition() -> None:
    assert content_overlap(QUESTION, ANSWER) > 0.5
    assert content_overlap(QUESTION, "Preheat the oven, then roast the onions with butter and garlic.") == 0.0
    assert np.isnan(content_overlap("continue", ANSWER))  # too few content words to judge
    words = ANSWER.split()
    assert repetition(words) == 1.0 and repetition(words + words[:12] * 3) < 0.8


def test_relevance_ranks_put_matched_pairs_above_swapped_ones() -> None:
    rng = np.random.default_rng(0)
    questions = rng.normal(size=(40, 16))
    answers = questions + 0.3 * rng.normal(size=(40, 16))
    questions /= np.linalg.norm(questions, axis=1, keepdims=True)
    answers /= np.linalg.norm(answers, axis=1, keepdims=True)
    matched = relevance_ranks(questions, answers)
    swapped = relevance_ranks(questions, np.roll(answers, 1, axis=0))
    assert matched.min() > 0.9 and swapped.mean() < 0.7
    assert relevance_ranks(questions[:1], answers[:1]).tolist() == [1.0]


def test_gate_is_one_for_a_clean_turn_and_sinks_with_each_failed_check() -> None:
    clean = np.array([[1.0, 0.6, 0.95, 0.97, 0, 0, 1]])
    assert quality_gate(clean)[0] == 1.0
    for column, bad in ((0, 0.0), (1, 0.0), (2, 0.3), (3, 0.5), (4, 1), (5, 1), (6, 0)):
        failed = clean.copy()
        failed[0, column] = bad
        assert quality_gate(failed)[0] <= 0.2, SIGNAL_FIELDS[column]
    unjudged = clean.copy()
    unjudged[0, 1] = np.nan
    assert quality_gate(unjudged)[0] == 1.0


def test_a_record_is_as_good_as_its_worst_answer() -> None:
    rows = np.array([[1, 1, 1, 1, 0, 0, 1, 0.9], [1, 1, 1, 1, 1, 0, 1, 0.05], [0, 0, 0, 0, 0, 0, 0, 0]])
    fields = signal_fields(rows)  # the third turn is unanswered: it does not count
    assert fields[QUALITY_FIELD] == [0.05, 0.05, 0.05] and fields["refusal_scores"] == [0.0, 1.0, 0.0]
    assert set(fields) == {*SIGNAL_FIELDS, QUALITY_FIELD}


def test_bigram_buckets_stay_inside_each_text() -> None:
    words = word_hashes(["a b c", "d e"])
    assert len(bigram_buckets(words)) == 3  # ab, bc, de: never c→d


def test_dedup_pass_counts_the_bigrams_of_the_records_it_keeps(tmp_path: Path) -> None:
    records = chat_pool(80, seed=2)
    write_jsonl(tmp_path / "pool.jsonl", records + records[:5])  # five exact copies, removed
    report = dedup_file(tmp_path / "pool.jsonl", tmp_path / "out.jsonl", DedupConfig(), bigrams_path=tmp_path / "b.npy")
    assert report.records == 85 and report.exact == 5
    counts = BigramCounts.load(tmp_path / "b.npy")
    kept = BigramCounts.from_file(tmp_path / "out.jsonl", signals_options())
    assert np.array_equal(counts.table, kept.table)  # as if counted on the deduplicated file: --no-dedup agrees
    answer = records[0]["conversations"][1]["value"]
    shuffled = " ".join(np.random.default_rng(0).permutation(answer.split()))
    seen, garbled = counts.seen_share([answer, shuffled])
    assert seen > 0.9 and garbled < seen - 0.3


def signals_options():
    from deita.runtime.options import RunOptions

    return RunOptions()


def test_signals_on_turns_made_to_fail_them(tmp_path: Path) -> None:
    from deita.embedding.sentence import default_sentence_model

    records = chat_pool(200, seed=4)
    write_jsonl(tmp_path / "pool.jsonl", records)
    BigramCounts.from_file(tmp_path / "pool.jsonl", signals_options()).save(tmp_path / "b.npy")
    worker = signals.SignalWorker(default_sentence_model(), 256, None, tmp_path / "b.npy")
    turns = [Turn(r["conversations"][0]["value"], r["conversations"][1]["value"]) for r in records[:60]]
    good = turns[0]
    german = ("Das hängt von vielen Faktoren ab. Zunächst sollte man die Grundlagen verstehen und dann Schritt "
              "für Schritt vorgehen, damit das Ergebnis zuverlässig bleibt.")
    bad = [Turn(good.instruction, "I'm sorry, but I can't help with that request."),
           Turn(good.instruction, good.response[: len(good.response) // 3].rstrip(". ")),
           Turn(good.instruction, german)]
    rows = worker([*turns, *bad]).values
    columns = {name: column for column, name in enumerate(SIGNAL_FIELDS)}
    assert rows[-3, columns["refusal_scores"]] == 1 and rows[-2, columns["truncation_scores"]] == 1
    assert rows[-1, columns["language_scores"]] == 0
    assert np.median(rows[:60, -1]) > 0.5 and (rows[-3:, -1] < 0.25).all()
    assert json.dumps(signal_fields(rows[:1]))  # plain JSON values


def test_score_type_signals_from_the_cli(tmp_path: Path) -> None:
    """`deita score --type signals`: no model; without dedup's counts it counts the input's bigrams first."""
    import os
    import subprocess
    import sys

    write_jsonl(tmp_path / "pool.jsonl", chat_pool(30, seed=5))
    result = subprocess.run([sys.executable, "-m", "deita.cli", "score", tmp_path / "pool.jsonl", "-o",
                             tmp_path / "out.jsonl", "--type", "signals", "-q"], capture_output=True, text=True,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and all(len(r[QUALITY_FIELD]) == len(r["conversations"]) // 2 for r in rows)
    assert all(set(SIGNAL_FIELDS) <= set(r) for r in rows) and "0 refusals" in result.stdout
