"""Evolution chains and joint ranking through files: retries, rejects with reasons, order randomisation."""

from __future__ import annotations

import pytest
from builders import sharegpt, write_jsonl
from chat_server import PHRASE, phrases, seed_records, seeds_in
from evol_helpers import read_jsonl, run_evol, run_rank, server_options

from deita.errors import RecordError
from deita.evol.config import RankConfig
from deita.evol.evolve import clean, evolution_problem
from deita.evol.rank import parse_scores, scores_by_variant, shown_order
from deita.evol.run import rank_file
from deita.runtime.options import RunOptions


def test_each_step_evolves_the_previous_variant(chat_server, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_records(2))
    report, rows, rejects = run_evol(chat_server, seeds, tmp_path / "evolved.jsonl")
    assert not rejects and [row["index"] for row in rows] == [0, 1] and [row["id"] for row in rows] == ["s0", "s1"]
    row = rows[0]
    assert row["variants"][0] == "seed-00: write a short note about topic 0"
    assert [phrases(v) for v in row["variants"]] == [0, 1, 2, 3, 4, 5]
    assert row["operations"] == ["add_constraint", "deepen", "concretize", "add_reasoning", "complicate_input"]
    prompts = [p for p in chat_server.options.prompts() if seeds_in(p) == {"seed-00"}]
    for step, prompt in enumerate(prompts):
        assert f"<instruction>\n{row['variants'][step]}\n</instruction>" in prompt
    assert row["usage"]["calls"] == 5 and report.summary.usage.calls == 10
    assert "cost of this run: 10 calls" in report.lines()[-1]


def test_quality_evolves_the_response_to_the_fixed_instruction(chat_server, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [
        sharegpt(("human", "seed-00: explain tides"), ("gpt", "answer-00: the moon."), ("human", "more"), ("gpt", "x")),
        sharegpt(("human", "seed-01: no answer yet")),
    ])
    _, rows, rejects = run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", type="quality", steps=3)
    assert len(rows) == 1 and rows[0]["instruction"] == "seed-00: explain tides"
    assert rows[0]["response"] == "answer-00: the moon." and len(rows[0]["variants"]) == 4
    assert rows[0]["variants"][3] == "answer-00: the moon." + PHRASE + "1" + PHRASE + "2" + PHRASE + "3"
    assert all("<question>\nseed-00: explain tides\n</question>" in p for p in chat_server.options.prompts())
    assert rejects[0]["index"] == 1 and "no response in the first turn" in rejects[0]["reason"]


@pytest.mark.parametrize("fault, reason", [("empty", "empty answer"), ("refuse", "the model refused"),
                                           ("unchanged", "unchanged (same as the previous variant)")])
def test_bad_evolutions_are_retried_then_rejected_with_the_reason(chat_server, tmp_path, fault, reason):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_records(3))
    chat_server.options.fault_when = lambda body: fault if "seed-01" in str(body["messages"]) else None
    report, rows, rejects = run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", tries=3)
    assert [row["index"] for row in rows] == [0, 2]
    assert len(rejects) == 1 and rejects[0]["index"] == 1 and rejects[0]["record"]["id"] == "s1"
    assert rejects[0]["reason"].startswith(f"step 1 (add_constraint): {reason}")
    assert rejects[0]["reason"].endswith("3 tries")
    assert sum(seeds_in(p) == {"seed-01"} for p in chat_server.options.prompts()) == 3
    assert report.summary.rejected == 1 and not report.summary.transient


def test_a_bad_answer_once_is_retried_and_the_chain_goes_on(chat_server, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_records(1))
    chat_server.options.faults[:] = ["ok", "ok", "unchanged", "empty", "ok"]
    _, rows, rejects = run_evol(chat_server, seeds, tmp_path / "evolved.jsonl")
    assert not rejects and [phrases(v) for v in rows[0]["variants"]] == [0, 1, 2, 3, 4, 5]
    assert len(chat_server.options.requests) == 7 and rows[0]["usage"]["calls"] == 7


def test_answer_cleaning_and_checks():
    assert clean("  <instruction>\nDo X and Y\n</instruction> ") == "Do X and Y"
    assert clean("#Rewritten Instruction#: Do X") == "Do X" and clean("Rewritten prompt:\nDo X") == "Do X"
    assert evolution_problem("Do X", "length", ["a"]) == "answer cut off at --max-tokens"
    assert evolution_problem("I\u2019m sorry, I can\u2019t", "stop", ["a"]).startswith("the model refused")
    assert evolution_problem("do  x", "stop", ["Do X", "b"]) == "same as variant 0 (the seed is variant 0)"
    assert evolution_problem("A reply that says I'm sorry later", "stop", ["a"]) is None
    assert evolution_problem("bad \ud800 text", "stop", ["a"]) == "answer is not valid Unicode (a lone surrogate)"


# ---------------------------------------------------------------- ranking


def test_scores_map_back_from_the_shown_order():
    order = [2, 0, 3, 1]  # position k shows variant order[k]
    shown_scores = [30, 10, 40, 20]
    reference = {variant: shown_scores[position] for position, variant in enumerate(order)}
    assert scores_by_variant(shown_scores, order) == [reference[v] for v in range(4)] == [10, 20, 30, 40]
    assert shown_order(42, "item", 6) == shown_order(42, "item", 6)
    assert sorted(shown_order(42, "item", 6)) == list(range(6))
    assert len({tuple(shown_order(42, f"item{i}", 6)) for i in range(20)}) > 10


@pytest.mark.parametrize("text, problem", [
    ('{"scores": [1, 2, 3]}', None), ('```json\n{"scores": [3, 1, 2]}\n```', None),
    ('{"scores": [1, 2]}', "not a list of 3"), ('{"scores": [1, 2, 7]}', "out of range 1..3"),
    ('{"scores": [1, 2.5, 3]}', "not a whole number"), ('{"scores": [1, true, 3]}', "not a whole number"),
    ('Scores: {"scores": [1, 2, 3]}', "not JSON"), ('{"ranks": [1, 2, 3]}', "no 'scores'"), ("", "empty answer"),
    ('{"scores": [1, 2, 3], "why": "x"}', "unexpected keys"),
])
def test_scores_are_parsed_strictly(text, problem):
    if problem is None:
        assert len(parse_scores(text, 3)) == 3
    else:
        with pytest.raises(ValueError, match=problem):
            parse_scores(text, 3)


@pytest.fixture
def evolved(chat_server, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_records(8))
    run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", concurrency=4)
    chat_server.options.reset()
    return tmp_path / "evolved.jsonl"


def test_ranking_shows_a_shuffled_order_and_maps_scores_to_the_right_variants(chat_server, evolved, tmp_path):
    report, rows, rejects = run_rank(chat_server, evolved, tmp_path / "ranked.jsonl", concurrency=4)
    assert not rejects and len(rows) == 8
    for row in rows:
        assert row["scores"] == [1, 2, 3, 4, 5, 6], "the fake server scores by phrases: the true order"
        assert sorted(row["order"]) == list(range(6))
    assert sum(row["order"] != list(range(6)) for row in rows) >= 6, "the shown order is shuffled"
    by_seed = {next(iter(seeds_in(b["messages"][-1]["content"]))): b for b in chat_server.options.requests}
    for row in rows:
        prompt = by_seed[f"seed-{row['index']:02d}"]["messages"][-1]["content"]
        shown = [prompt.index(f"<instruction>\n{row['variants'][v]}\n</instruction>") for v in row["order"]]
        assert shown == sorted(shown), "order[k] is the variant shown at position k"
    assert report.summary.usage.calls == 8
    _, rows_again, _ = run_rank(chat_server, evolved, tmp_path / "ranked2.jsonl", cache=tmp_path / "other")
    assert [r["order"] for r in rows_again] == [r["order"] for r in rows], "the order is seeded by content"
    _, reseeded, _ = run_rank(chat_server, evolved, tmp_path / "ranked3.jsonl", seed=7)
    assert [r["order"] for r in reseeded] != [r["order"] for r in rows]


def test_invalid_scores_are_retried_then_rejected_never_defaulted(chat_server, evolved, tmp_path):
    first_answers = ["malformed", "500"]  # seed-00: one bad answer and one server error, then fine

    def fault(body):
        seed = next(iter(seeds_in(body["messages"][-1]["content"])))
        if seed == "seed-00":
            return first_answers.pop(0) if first_answers else None
        return {"seed-01": "malformed", "seed-03": "out_of_range"}.get(seed)

    chat_server.options.fault_when = fault
    report, rows, rejects = run_rank(chat_server, evolved, tmp_path / "ranked.jsonl", tries=3)
    assert [row["index"] for row in rows] == [0, 2, 4, 5, 6, 7]
    assert all(row["scores"] == [1, 2, 3, 4, 5, 6] for row in rows)
    assert rows[0]["rank_usage"]["calls"] == 2 and rows[0]["rank_usage"]["retries"] == 1
    reasons = {r["index"]: r["reason"] for r in rejects}
    assert set(reasons) == {1, 3}
    assert reasons[1].startswith("no valid scores after 3 tries (not JSON")
    assert reasons[3] == "no valid scores after 3 tries (score 7 is out of range 1..6)"
    assert rejects[0]["record"]["variants"], "the reject keeps the EVOLVED row"
    assert "rejected 2 (0 bad input, 2 model (no usable answer))" in "\n".join(report.lines())
    assert [r["kind"] for r in rejects] == ["model", "model"]


def test_rank_falls_back_to_strict_parsing_when_the_server_refuses_schemas(chat_server, evolved, tmp_path):
    chat_server.options.schema = "reject"
    _, rows, rejects = run_rank(chat_server, evolved, tmp_path / "ranked.jsonl")
    assert not rejects and all(row["scores"] == [1, 2, 3, 4, 5, 6] for row in rows)
    assert sum("response_format" in b for b in chat_server.options.requests) == 1
    assert len(chat_server.options.requests) == 9


def test_bad_evolved_rows_name_the_line(chat_server, tmp_path, evolved):
    lines = evolved.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], "{not json", lines[1].replace('"complexity"', '"quality"'),
                              '{"type": "complexity", "variants": ["only one"]}', lines[2]]) + "\n")
    # through the Python API the hint names the API's switch and the file a skipping run writes
    with pytest.raises(RecordError, match=r'bad.jsonl, line 2: invalid JSON.*Use on_error="skip" to write bad '
                                          r"records to \S*r.jsonl.rejects.jsonl and continue"):
        rank_file(bad, tmp_path / "r.jsonl", RankConfig(**server_options(chat_server)), RunOptions(quiet=True))
    _, rows, rejects = run_rank(chat_server, bad, tmp_path / "r.jsonl")
    assert [row["index"] for row in rows] == [0, 2]
    assert [(r["location"], r["reason"]) for r in rejects] == [
        ("line 2", "invalid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        ("line 3", "a quality row, but --type is complexity"),
        ("line 4", "'variants' must be a list of 2 to 6 texts"),
    ]
    assert read_jsonl(tmp_path / "r.jsonl")[0]["type"] == "complexity"
