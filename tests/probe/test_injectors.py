"""Each injector makes the bad record its class names, from the pool's own records, and changes nothing else."""

from __future__ import annotations

import re

import numpy as np
import pytest
from builders import chat_pool

from deita.data.formats import convert_record
from deita.probe import injectors
from deita.probe.injectors import CLASSES, REFUSALS
from deita.probe.pool import COPIES, MARK, inject, split_counts


def _messages(n: int = 40, seed: int = 3) -> list[dict]:
    return [convert_record(r, "sharegpt", "messages") for r in chat_pool(n, seed)]


def _answer(record: dict) -> str:
    return record["messages"][injectors.last_answer(record)]["content"]


def _rest(record: dict) -> list[dict]:
    """Every message but the last answer."""
    return record["messages"][:injectors.last_answer(record)]


@pytest.fixture
def pair() -> tuple[dict, dict]:
    records = _messages()
    long = [r for r in records if len(_answer(r).split()) >= injectors.MIN_WORDS]
    return long[0], long[1]


def test_truncated_cuts_the_answer_mid_sentence(pair) -> None:
    record, donor = pair
    bad = injectors.truncated(record, donor, np.random.default_rng(0))
    full, cut = _answer(record), _answer(bad)
    assert full.startswith(cut) and 0.1 * len(full) < len(cut) < 0.6 * len(full)
    assert cut[-1] not in ".!?" and _rest(bad) == _rest(record)


def test_off_topic_puts_another_records_answer_under_this_question(pair) -> None:
    record, donor = pair
    bad = injectors.off_topic(record, donor, np.random.default_rng(0))
    assert _answer(bad) == _answer(donor) != _answer(record) and _rest(bad) == _rest(record)


def test_refusal_answers_nothing(pair) -> None:
    record, donor = pair
    bad = injectors.refusal(record, donor, np.random.default_rng(0))
    assert _answer(bad) in REFUSALS and _rest(bad) == _rest(record)


def test_garbled_keeps_the_words_in_another_order_with_a_span_repeated(pair) -> None:
    record, donor = pair
    bad = injectors.garbled(record, donor, np.random.default_rng(0))
    words, garbled = _answer(record).split(), _answer(bad).split()
    assert len(garbled) == len(words) + 36 and set(garbled) == set(words)
    assert garbled != words and _rest(bad) == _rest(record)
    assert any(garbled[i:i + 12] == garbled[i + 12:i + 24] == garbled[i + 24:i + 36] for i in range(len(garbled)))


def test_copies(pair) -> None:
    record, donor = pair
    assert injectors.exact_copy(record, donor, np.random.default_rng(0)) == record
    near = injectors.near_copy(record, donor, np.random.default_rng(0))
    words, edited = _answer(record).split(), _answer(near).split()
    assert near != record and _rest(near) == _rest(record)
    assert abs(len(edited) - len(words)) <= max(1, len(words) // 60)
    assert len(set(words) & set(edited)) / len(set(words) | set(edited)) > 0.9


def test_other_language(pair) -> None:
    record, donor = pair
    bad = injectors.other_language(record, donor, np.random.default_rng(0))
    assert _answer(bad) in injectors.OTHER_LANGUAGE and _rest(bad) == _rest(record)
    assert not re.search(r"\b(the|and|is)\b", _answer(bad))


def test_split_counts_shares_the_total_evenly() -> None:
    assert split_counts(10, ["a", "b", "c"]) == {"a": 4, "b": 3, "c": 3}
    assert sum(split_counts(981, list(CLASSES)).values()) == 981


def test_inject_mixes_marked_records_in_a_seeded_order_copies_after_their_source() -> None:
    records = _messages(200)
    classes = tuple(CLASSES)
    mixed, counts = inject(records, classes, 0.21, seed=5)
    assert counts == split_counts(42, classes) and len(mixed) == 242
    marked = [r for r in mixed if MARK in r]
    assert sorted(r[MARK] for r in marked) == sorted(name for name, n in counts.items() for _ in range(n))
    originals = [r for r in mixed if MARK not in r]
    assert sorted(originals, key=lambda r: r["id"]) == sorted(records, key=lambda r: r["id"])  # all, unchanged
    for position, record in enumerate(mixed):
        if record.get(MARK) in COPIES:  # dedup keeps the first: the original must come first
            original = next(i for i, r in enumerate(mixed) if MARK not in r and r["id"] == record["id"])
            assert original < position
    again, _ = inject(records, classes, 0.21, seed=5)
    other, _ = inject(records, classes, 0.21, seed=6)
    assert again == mixed and other != mixed


def test_inject_refuses_a_rate_the_pool_cannot_hold() -> None:
    from deita.errors import DeitaError

    with pytest.raises(DeitaError, match="too few .* lower --rate"):
        records = _messages(20)
        for record in records[5:]:
            record["messages"][injectors.last_answer(record)]["content"] = "Too short to cut."
        inject(records, ("truncated",), 0.3, seed=0)  # 6 truncated answers wanted, 5 answers long enough
