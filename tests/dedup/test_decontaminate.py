"""Decontamination: planted eval prompts are all found (verbatim, inside a longer message, lightly edited),
and nothing else is removed."""

import json
import random
import unicodedata

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import sharegpt, write_jsonl

from deita.dedup.config import DecontaminateConfig
from deita.dedup.decontaminate import read_eval_items
from deita.dedup.decontaminate_file import contaminated_path_for, decontaminate_file
from deita.errors import DeitaError

NGRAM = 13


def vocabulary(rng: random.Random, size: int = 2000) -> list[str]:
    return sorted({"".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 8))) for _ in range(size)})


def light_edit(prompt: str, rng: random.Random, vocab: list[str]) -> str:
    """Case, punctuation, spacing and Unicode-form changes throughout, and one word replaced where a run of
    NGRAM words stays intact (an edit every 12 words or closer defeats any 13-gram test: the embedding
    check's job)."""
    words = prompt.split()
    allowed = [p for p in range(len(words)) if p >= NGRAM or p < len(words) - NGRAM]
    words[rng.choice(allowed)] = rng.choice(vocab)
    out = []
    for word in words:
        roll = rng.random()
        if roll < 0.15:
            word = word.upper()
        elif roll < 0.25:
            word = word + rng.choice([",", ";", "...", " -"])
        elif roll < 0.3:
            word = unicodedata.normalize("NFKC", word).translate({c: c + 0xFEE0 for c in range(0x61, 0x7B)})
        out.append(word)
    return "  ".join(out[:5]) + " " + " ".join(out[5:]) + "?"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    rng = random.Random(11)
    vocab = vocabulary(rng)
    folder = tmp_path_factory.mktemp("decontaminate")
    prompts = [" ".join(rng.choices(vocab, k=rng.randint(20, 45))) for _ in range(60)]
    # eval sets in two plain shapes: MT-Bench's question.jsonl (turns) and a JSON array of prompts
    mt_bench = [{"question_id": 100 + n, "category": "writing", "turns": [p, "Now shorten it."]}
                for n, p in enumerate(prompts[:30])]
    write_jsonl(folder / "question.jsonl", mt_bench)
    (folder / "prompts.json").write_text(json.dumps([{"id": f"p{n}", "prompt": p} for n, p in
                                                     enumerate(prompts[30:])]))
    records, expected = [], {}
    for number in range(1500):
        records.append(sharegpt(("human", " ".join(rng.choices(vocab, k=rng.randint(10, 60)))),
                                ("gpt", " ".join(rng.choices(vocab, k=rng.randint(20, 120)))), id=f"r{number}"))
    spots = rng.sample(range(1500), 60)
    for slot, (spot, prompt) in enumerate(zip(spots, prompts, strict=True)):
        kind = ("verbatim", "inside", "edited")[slot % 3]
        if kind == "verbatim":
            text = prompt
        elif kind == "inside":
            text = (" ".join(rng.choices(vocab, k=30)) + ". Here is my question: " + prompt + " Please answer in "
                    + " ".join(rng.choices(vocab, k=25)))
        else:
            text = light_edit(prompt, rng, vocab)
        records[spot]["conversations"][0]["value"] = text
        expected[f"r{spot}"] = (kind, slot)
    pool = write_jsonl(folder / "pool.jsonl", records)
    return folder, pool, prompts, expected


def test_every_planted_prompt_is_found_and_nothing_else(planted):
    folder, pool, prompts, expected = planted
    out = folder / "clean.jsonl"
    config = DecontaminateConfig(against=(str(folder / "question.jsonl"), str(folder / "prompts.json")))
    report = decontaminate_file(pool, out, config)
    removed = [json.loads(line) for line in contaminated_path_for(out).read_text().splitlines()]
    assert {row["id"] for row in removed} == set(expected)
    for row in removed:
        kind, slot = expected[row["id"]]
        assert row["eval"]["prompt"] == prompts[slot], kind
        assert row["check"] == "ngram" and row["message"] == 1 and len(row["ngram"].split()) == NGRAM
        assert f" {row['ngram']} " in f" {prompts[slot]} "
    first = next(row for row in removed if expected[row["id"]][1] < 30)
    assert first["eval"]["file"].endswith("question.jsonl") and first["eval"]["id"] >= 100
    assert first["eval"]["turn"] == 1 and first["eval"]["location"].startswith("line ")
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(kept) == 1440 and not {r["id"] for r in kept} & set(expected)
    assert (report.by_ngram, report.kept, report.prompts) == (60, 1440, 90)  # 60 prompts + 30 "Now shorten it."


def test_field_all_checks_every_message(tmp_path):
    prompt = ("describe in detail how the water cycle moves water between the oceans the atmosphere and the land "
              "and why it matters for farming")
    records = [sharegpt(("human", "hello"), ("gpt", "hi"), ("human", prompt), ("gpt", "ok"), id="second-turn"),
               sharegpt(("human", "what should i ask"), ("gpt", "You could ask: " + prompt), id="in-answer"),
               sharegpt(("human", "something else entirely"), ("gpt", "fine"), id="clean")]
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    evals = write_jsonl(tmp_path / "eval.jsonl", [{"instruction": prompt, "output": "..."}])  # an Alpaca eval set
    first = decontaminate_file(pool, tmp_path / "a.jsonl", DecontaminateConfig(against=(str(evals),)))
    assert first.by_ngram == 0  # the default checks the first instruction only
    every = decontaminate_file(pool, tmp_path / "b.jsonl", DecontaminateConfig(against=(str(evals),), field="all"))
    rows = [json.loads(line) for line in contaminated_path_for(tmp_path / "b.jsonl").read_text().splitlines()]
    assert every.by_ngram == 2
    assert [(r["id"], r["message"], r["role"]) for r in rows] == [("second-turn", 3, "user"),
                                                                  ("in-answer", 2, "assistant")]


def test_short_eval_prompts_match_whole_or_are_left_to_the_embedding_check(tmp_path):
    records = [sharegpt(("human", "Please: list three primary colours and explain how they mix."), ("gpt", "x"),
                        id="whole"),
               sharegpt(("human", "list three primary colours and explain how"), ("gpt", "y"), id="part"),
               sharegpt(("human", "Name a colour."), ("gpt", "Red."), id="tiny")]
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    evals = write_jsonl(tmp_path / "eval.jsonl", [{"question": "List three primary colours and explain how they mix"},
                                                  {"question": "Name a colour"}])
    report = decontaminate_file(pool, tmp_path / "o.jsonl", DecontaminateConfig(against=(str(evals),)))
    rows = [json.loads(line) for line in contaminated_path_for(tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["whole"]  # 10 words: matched whole; 3 words: not by n-grams
    assert report.unchecked_prompts == 1
    assert any("fewer than 8 words" in line for line in report.lines())


def test_eval_files_of_every_kind(tmp_path):
    pq.write_table(pa.table({"question": ["Parquet prompt one", "Parquet prompt two"], "task_id": [7, 8]}),
                   tmp_path / "eval.parquet")
    write_jsonl(tmp_path / "chat.jsonl", [sharegpt(("human", "Chat prompt"), ("gpt", "a"), ("human", "Follow-up"),
                                                   id="c1")])
    items = read_eval_items([tmp_path / "eval.parquet", tmp_path / "chat.jsonl"])
    assert [(i.text, i.id, i.turn, i.location) for i in items] == [
        ("Parquet prompt one", 7, 1, "index 0"), ("Parquet prompt two", 8, 1, "index 1"),
        ("Chat prompt", "c1", 1, "line 1"), ("Follow-up", "c1", 2, "line 1")]
    write_jsonl(tmp_path / "bad.jsonl", [{"question": "fine"}, {"answer": "no prompt here"}])
    with pytest.raises(DeitaError, match=r"bad.jsonl, line 2: not an eval prompt .*prompt, instruction, question"):
        read_eval_items([tmp_path / "bad.jsonl"])


def test_embedding_check_flags_a_paraphrase(tmp_path):
    """The packaged MiniLM (offline): a reworded short prompt no n-gram test can see."""
    records = [sharegpt(("human", "Which city is the capital of France?"), ("gpt", "Paris."), id="paraphrase"),
               sharegpt(("human", "How do I bake sourdough bread at home?"), ("gpt", "Slowly."), id="other")]
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    evals = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": "What is the capital city of France?"}])
    config = DecontaminateConfig(against=(str(evals),), embedding_threshold=0.8)
    report = decontaminate_file(pool, tmp_path / "o.jsonl", config)
    rows = [json.loads(line) for line in contaminated_path_for(tmp_path / "o.jsonl").read_text().splitlines()]
    assert [(r["id"], r["check"]) for r in rows] == [("paraphrase", "embedding")]
    assert rows[0]["similarity"] >= 0.8 and report.by_embedding == 1
