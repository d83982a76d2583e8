"""Exact dedup: variants that differ only in whitespace, case and Unicode normal form are one record."""

import json
import unicodedata

from builders import sharegpt, write_jsonl

from deita.dedup.config import DedupConfig
from deita.dedup.normalize import compared_texts, normalize, words
from deita.dedup.run import dedup_file, duplicates_path_for

QUESTION = "Écris un résumé de « Le Petit Prince » en cinq phrases, s'il te plaît."
ANSWER = "Le Petit Prince raconte l'histoire d'un pilote échoué dans le désert et d'un enfant venu d'une étoile."


def variants() -> list[tuple[str, str]]:
    """The same exchange in forms a normaliser must see through."""
    return [
        (QUESTION, ANSWER),
        ("  " + QUESTION.replace(" ", "   ") + "\n\n", ANSWER.replace(" ", "\t ")),  # whitespace
        (QUESTION.upper(), ANSWER.lower()),  # case
        (unicodedata.normalize("NFD", QUESTION), unicodedata.normalize("NFD", ANSWER)),  # decomposed accents
        (QUESTION.replace("cinq", "ｃｉｎｑ"), ANSWER.replace("fi", "ﬁ")),  # fullwidth letters, a ligature (NFKC)
        (QUESTION.replace("s'il", "S'IL").replace("Petit", "PETIT"), "  " + ANSWER.upper()),  # mixed
    ]


def test_normalize_is_nfkc_casefold_whitespace():
    assert normalize("  Straße\u00a0 ＡＢＣ\n\tﬁne  ") == "strasse abc fine"
    assert normalize(unicodedata.normalize("NFD", "é")) == "é"
    assert words("It's “quoted”, e.g. 3.5!") == ["it", "s", "quoted", "e", "g", "3", "5"]
    # roles are part of the compared text: the same words from the other side are a different record
    assert compared_texts([("user", "Hi"), ("assistant", "Yo")])[0] != compared_texts([("assistant", "Hi"), ("user", "Yo")])[0]


def test_whitespace_case_and_unicode_variants_are_removed(tmp_path):
    records = [sharegpt(("human" if i % 2 else "user", q), ("gpt", a), id=f"v{i}") for i, (q, a) in
               enumerate(variants())]
    records.insert(3, sharegpt(("human", QUESTION), ("gpt", "Une autre réponse, entièrement différente."), id="other"))
    data = write_jsonl(tmp_path / "pool.jsonl", records)
    out = tmp_path / "out.jsonl"
    report = dedup_file(data, out, DedupConfig(near=False))
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in kept] == ["v0", "other"]
    assert kept == [records[0], records[3]]  # untouched
    removed = [json.loads(line) for line in duplicates_path_for(out).read_text().splitlines()]
    assert [(r["id"], r["kept_index"], r["kind"], r["similarity"]) for r in removed] == [
        (f"v{i}", 0, "exact", 1.0) for i in range(1, 6)]
    assert [r["index"] for r in removed] == [1, 2, 4, 5, 6]
    assert (report.exact, report.near, report.kept) == (5, 0, 2)


def test_field_instruction_compares_the_first_instruction_only(tmp_path):
    records = [sharegpt(("human", "Name three colours."), ("gpt", "Red, green, blue."), id="a"),
               sharegpt(("human", "name  three COLOURS."), ("gpt", "Cyan, magenta, yellow."), ("human", "More?"),
                        ("gpt", "Black."), id="b")]
    data = write_jsonl(tmp_path / "pool.jsonl", records)
    assert dedup_file(data, tmp_path / "all.jsonl", DedupConfig(near=False)).exact == 0
    assert dedup_file(data, tmp_path / "first.jsonl", DedupConfig(near=False, field="instruction")).exact == 1


def test_keep_longest_keeps_the_longest_of_each_group_in_file_order(tmp_path):
    records = [sharegpt(("human", "Hello there"), ("gpt", "Hi"), id="short"),
               sharegpt(("human", "Unrelated"), ("gpt", "Fine"), id="solo"),
               sharegpt(("human", "hello   THERE "), ("gpt", " hi "), id="long")]
    data = write_jsonl(tmp_path / "pool.jsonl", records)
    out = tmp_path / "out.json"  # the output keeps its own file type
    dedup_file(data, out, DedupConfig(near=False, keep="longest"))
    assert [r["id"] for r in json.loads(out.read_text())] == ["solo", "long"]
    removed = [json.loads(line) for line in duplicates_path_for(out).read_text().splitlines()]
    assert removed == [{"index": 0, "location": "line 1", "id": "short", "kept_index": 2, "kind": "exact",
                        "similarity": 1.0, "estimated_similarity": 1.0}]


def test_alpaca_and_split_chats_compare_every_message(tmp_path):
    split = [sharegpt(("gpt", f"...continued part {i} of the story"), ("human", "go on"), ("gpt", "The end."), id=i)
             for i in range(2)]
    data = write_jsonl(tmp_path / "split.jsonl", split)
    assert dedup_file(data, tmp_path / "s.jsonl", DedupConfig(near=False)).exact == 0  # leading messages differ
    alpaca = [{"instruction": "Add 2 and 3", "input": "", "output": "5"},
              {"instruction": "add 2 and 3 ", "output": "5"},
              {"instruction": "Add 2 and 3", "input": "quickly", "output": "5"}]
    data = write_jsonl(tmp_path / "alpaca.jsonl", alpaca)
    assert dedup_file(data, tmp_path / "a.jsonl", DedupConfig(near=False)).exact == 1
