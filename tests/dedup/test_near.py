"""Near dedup against brute force: exact Jaccard of every pair of 2K generated chats with known edit rates."""

import json
import random
from collections import Counter, defaultdict
from itertools import combinations

import numpy as np
import pytest
from builders import sharegpt, write_jsonl

from deita.data.formats import role_messages
from deita.dedup.config import DedupConfig
from deita.dedup.minhash import lsh_params, ngram_hashes, signatures, word_hashes
from deita.dedup.normalize import compared_texts, words
from deita.dedup.run import dedup_file, duplicates_path_for

THRESHOLD, NGRAM = 0.8, 5
EDIT_RATES = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06, 0.1, 0.2, 0.4)


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return sorted({"".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(size)})


def chat(rng: random.Random, vocab: list[str], number: int) -> dict:
    messages = []
    for _ in range(rng.randint(1, 3)):
        messages += [("human", " ".join(rng.choices(vocab, k=rng.randint(15, 60)))),
                     ("gpt", " ".join(rng.choices(vocab, k=rng.randint(30, 120))))]
    return sharegpt(*messages, id=f"c{number}")


def edited(record: dict, rate: float, rng: random.Random, vocab: list[str], number: int) -> dict:
    """Each word substituted, deleted or followed by an inserted word with probability `rate`; punctuation and
    case changes on top, which the comparison ignores."""
    messages = []
    for message in record["conversations"]:
        out = []
        for word in message["value"].split():
            roll = rng.random()
            if roll < rate / 3:
                out.append(rng.choice(vocab))
            elif roll < 2 * rate / 3:
                continue
            elif roll < rate:
                out += [word, rng.choice(vocab)]
            else:
                out.append(word.upper() if rng.random() < 0.02 else word)
        messages.append((message["from"], " ".join(out) + rng.choice(["", ".", "!"])))
    return sharegpt(*messages, id=f"c{number}")


def shingles(record: dict) -> set[tuple[str, ...]]:
    """The reference definition, in plain Python: each message's role then its words, one sequence per record;
    runs of NGRAM words (a shorter record is one shingle)."""
    sequence = [w for role, text in role_messages(record, "sharegpt") for w in (role, *words(text))]
    if len(sequence) < NGRAM:
        return {tuple(sequence)}
    return {tuple(sequence[i:i + NGRAM]) for i in range(len(sequence) - NGRAM + 1)}


def exact_jaccard(sets: list[set]) -> dict[tuple[int, int], float]:
    """Jaccard of every pair of records that shares a shingle (all other pairs have Jaccard 0)."""
    postings = defaultdict(list)
    for number, shingle_set in enumerate(sets):
        for shingle in shingle_set:
            postings[shingle].append(number)
    shared = Counter(pair for owners in postings.values() for pair in combinations(owners, 2))
    return {(a, b): n / (len(sets[a]) + len(sets[b]) - n) for (a, b), n in shared.items()}


@pytest.fixture(scope="module")
def pool():
    rng = random.Random(7)
    vocab = vocabulary(rng)
    records = [chat(rng, vocab, n) for n in range(600)]
    while len(records) < 2000:
        source = records[rng.randrange(len(records))]
        records.append(edited(source, rng.choice(EDIT_RATES), rng, vocab, len(records)))
    rng.shuffle(records)
    return records, exact_jaccard([shingles(r) for r in records])


def test_shingle_hashes_match_the_reference_shingles(pool):
    records, _ = pool
    texts = [compared_texts(role_messages(r, "sharegpt"))[1] for r in records[:300]]
    grams = ngram_hashes(word_hashes(texts), NGRAM)
    for number, record in enumerate(records[:300]):
        hashes = grams.hashes[grams.offsets[number]:grams.offsets[number + 1]]
        assert len(set(hashes.tolist())) == len(shingles(record))


def test_signature_estimates_follow_the_exact_jaccard(pool):
    records, jaccard = pool
    texts = [compared_texts(role_messages(r, "sharegpt"))[1] for r in records]
    grams = ngram_hashes(word_hashes(texts), NGRAM)
    sigs = signatures(grams.hashes, grams.offsets, 128)
    assert sigs.shape == (2000, 128) and sigs.dtype == np.uint32
    pairs = [pair for pair, value in jaccard.items() if value >= 0.3]
    errors = np.array([(sigs[a] == sigs[b]).mean() - jaccard[a, b] for a, b in pairs])
    assert len(pairs) > 500
    assert abs(errors.mean()) < 0.01 and np.abs(errors).mean() < 0.04  # unbiased, spread of a few hundredths


def test_recall_and_false_positives_against_brute_force(pool, tmp_path):
    records, jaccard = pool
    data = write_jsonl(tmp_path / "pool.jsonl", records)
    out = tmp_path / "out.jsonl"
    report = dedup_file(data, out, DedupConfig(threshold=THRESHOLD, ngram=NGRAM))
    kept = {r["id"] for r in map(json.loads, out.read_text().splitlines())}
    removed = [json.loads(line) for line in duplicates_path_for(out).read_text().splitlines()]
    assert len(kept) + len(removed) == 2000 == report.records
    is_kept = [r["id"] in kept for r in records]
    # recall: of the pairs at least 0.05 above the threshold, those of which the output still holds both
    strong = [pair for pair, value in jaccard.items() if value >= THRESHOLD + 0.05]
    missed = [pair for pair in strong if is_kept[pair[0]] and is_kept[pair[1]]]
    assert len(strong) > 500
    assert 1 - len(missed) / len(strong) >= 0.95, (len(missed), len(strong))
    # false positives: removed records whose true Jaccard with the record kept in their place is below it
    true = [jaccard.get((min(r["index"], r["kept_index"]), max(r["index"], r["kept_index"])), 0.0) for r in removed]
    false_positives = sum(value < THRESHOLD for value in true)
    assert len(removed) > 300
    assert false_positives / len(removed) <= 0.01, (false_positives, len(removed))
    assert all(is_kept[r["kept_index"]] for r in removed)  # a removed record always names a kept one
    assert all(r["similarity"] >= THRESHOLD for r in removed)


def test_a_removed_record_never_removes_another(tmp_path):
    """A ~ B and B ~ C but A ≁ C: B goes (a duplicate of A), C stays, because B is no longer in the pool."""
    rng = random.Random(3)
    text = rng.choices(vocabulary(rng), k=240)
    records = [sharegpt(("human", " ".join(text[shift:shift + 200])), id=name)
               for name, shift in (("a", 0), ("b", 20), ("c", 40))]  # one text, read through a sliding window
    jac = exact_jaccard([shingles(r) for r in records])
    assert jac[0, 1] > 0.8 and jac[1, 2] > 0.8 and jac[0, 2] < 0.7
    out = tmp_path / "out.jsonl"
    dedup_file(write_jsonl(tmp_path / "p.jsonl", records), out, DedupConfig(threshold=0.75))
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "c"]


def test_bands_favour_recall_near_the_threshold():
    bands, rows = lsh_params(0.8, 128)
    assert bands * rows <= 128
    assert 1 - (1 - 0.85**rows) ** bands >= 0.95  # a pair at threshold + 0.05 becomes a candidate


def test_the_helper_process_gives_the_same_hashes(pool, tmp_path):
    """Two cores: a spawned helper hashes while the main process reads; the result must not depend on it."""
    from deita.data.io import ReadStats, iter_records
    from deita.dedup.hashing import hash_pool

    records, _ = pool
    data = write_jsonl(tmp_path / "pool.jsonl", records[:600])
    results = []
    for helper in (False, True):
        stats = ReadStats()
        results.append(hash_pool(iter_records(data, stats=stats), stats, DedupConfig(), helper=helper,
                                 batch_size=64))
    alone, helped = results
    assert np.array_equal(alone.signatures, helped.signatures) and np.array_equal(alone.keys, helped.keys)
