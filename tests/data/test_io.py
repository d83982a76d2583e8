"""Streaming reading, bad-record handling and atomic writing, for every format and file type."""

from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import pytest

from deita.data import writers
from deita.data.io import (
    ReadStats,
    RecordPolicy,
    RecordWriter,
    convert_file,
    iter_records,
    rejects_path_for,
    write_records,
)
from deita.data.readers import text as text_reader
from deita.errors import DeitaError, RecordError

SAMPLES = {
    "sharegpt": [
        {"id": "a", "conversations": [{"from": "human", "value": "Grüße? 你好"}, {"from": "gpt", "value": "Hi"}],
         "source": "x", "complexity_scores": [1.5]},
        {"id": "b", "conversations": [{"from": "gpt", "value": "split"}, {"from": "human", "value": "q1"},
                                      {"from": "gpt", "value": "a1"}, {"from": "human", "value": "q2"}],
         "source": "y", "complexity_scores": [2.0, 3.25]},
    ],
    "alpaca": [
        {"instruction": "Add", "input": "1 2", "output": "3", "id": 1, "complexity_scores": [4.5]},
        {"instruction": "Say hi", "input": "", "output": "hi", "id": 2, "complexity_scores": [1.0]},
    ],
    "messages": [
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"},
                      {"role": "assistant", "content": "a"}], "id": "m1", "complexity_scores": [5.0]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
         "id": "m2", "complexity_scores": [0.5]},
    ],
}  # fmt: skip
OUT_NAMES = {"json": "data.json", "jsonl": "data.jsonl", "parquet": "data.parquet", "dataset": "data_ds"}


def write_text(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def jsonl(path: Path, *lines: object) -> Path:
    return write_text(
        path, "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    )


def good(i: int = 0) -> dict:
    return {
        "id": i,
        "conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}],
    }


def view(records: list) -> list:
    return [(r.raw, r.turns, r.system, r.skipped_leading_assistant) for r in records]


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("file_type", list(OUT_NAMES))
@pytest.mark.parametrize("fmt", list(SAMPLES))
def test_round_trip(tmp_path: Path, fmt: str, file_type: str) -> None:
    src = tmp_path / OUT_NAMES[file_type]
    assert write_records(src, SAMPLES[fmt]) == 2
    stats = ReadStats()
    first = list(iter_records(src, stats=stats))
    assert [r.raw for r in first] == SAMPLES[fmt]  # every field, incl. the added list-of-float scores
    assert (stats.format, stats.file_type, stats.records, stats.rejected) == (fmt, file_type, 2, 0)
    assert [r.location for r in first] == (
        ["line 1", "line 2"] if file_type == "jsonl" else ["index 0", "index 1"]
    )
    out = tmp_path / ("again_" + OUT_NAMES[file_type])
    write_records(out, (r.raw for r in first))
    assert view(list(iter_records(out))) == view(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, out.name])  # no temp files left


@pytest.mark.parametrize("file_type", list(OUT_NAMES))
def test_empty_output_and_overwrite(tmp_path: Path, file_type: str) -> None:
    out = tmp_path / OUT_NAMES[file_type]
    write_records(out, SAMPLES["alpaca"])
    assert write_records(out, []) == 0  # replaces the earlier output, a dataset folder included
    assert list(iter_records(out)) == []
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_dataset_with_splits_names_a_split(tmp_path: Path) -> None:
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(SAMPLES["alpaca"])}).save_to_disk(
        str(tmp_path / "dd")
    )
    with pytest.raises(DeitaError, match=r"a dataset with splits \(train\); give one split's folder"):
        list(iter_records(tmp_path / "dd"))
    assert [r.raw for r in iter_records(tmp_path / "dd" / "train")] == SAMPLES["alpaca"]


def test_sample_turns() -> None:
    from deita.data.formats import parse_turns

    turns, _, skipped = parse_turns(SAMPLES["sharegpt"][1], "sharegpt")
    assert [(t.instruction, t.response) for t in turns] == [("q1", "a1"), ("q2", "")] and skipped == 1


def test_json_output_layout(tmp_path: Path) -> None:
    """One compact record per line (orjson's layout; the stdlib fallback writes the same separators)."""
    write_records(tmp_path / "o.json", [{"a": "é"}, {"b": 1}, {"c": float("nan")}])
    assert (tmp_path / "o.json").read_text(encoding="utf-8") == '[\n{"a":"é"},\n{"b":1},\n{"c":NaN}\n]\n'
    write_records(tmp_path / "e.json", [])
    assert json.loads((tmp_path / "e.json").read_text()) == []


def test_json_file_of_objects_per_line_is_read_as_jsonl(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "x.json", good(0), good(1))
    assert [r.location for r in iter_records(path)] == ["line 1", "line 2"]


def test_json_array_across_tiny_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_reader, "_CHUNK", 7)
    raws = [
        {**good(i), "x": "ü" * i, "n": 12345.5, "t": True, "nested": {"k": [1, {"z": None}]}}
        for i in range(30)
    ]
    path = write_text(
        tmp_path / "a.json",
        "\ufeff [ " + " ,\n ".join(json.dumps(r, ensure_ascii=False) for r in raws) + " ]\n",
    )
    assert [r.raw for r in iter_records(path)] == raws
    path = write_text(tmp_path / "n.json", "[" + json.dumps(good(0)) + ", 1234567890123]")
    with RecordPolicy.skipping(tmp_path / "r.jsonl") as policy:
        assert len(list(iter_records(path, policy=policy))) == 1
    assert json.loads((tmp_path / "r.jsonl").read_text())["record"] == 1234567890123  # not cut at a chunk end


def test_jsonl_empty_lines_are_not_records(tmp_path: Path) -> None:
    path = write_text(tmp_path / "x.jsonl", f"\n{json.dumps(good(0))}\n  \n\n{json.dumps(good(1))}")
    records = list(iter_records(path))
    assert [(r.index, r.location) for r in records] == [(0, "line 2"), (1, "line 5")]


def test_format_given_checks_every_record(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "x.jsonl", good(0))
    with pytest.raises(RecordError, match="missing 'instruction'"):
        list(iter_records(path, fmt="alpaca"))


def test_positional_option(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "x.jsonl", SAMPLES["sharegpt"][1])
    (rec,) = iter_records(path, pairing="positional")
    assert [(t.instruction, t.response) for t in rec.turns] == [("split", "q1"), ("a1", "q2")]


# ---------------------------------------------------------------- parquet schemas


def test_parquet_schema_changes_between_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writers, "_BATCH_ROWS", 2)
    raws = [
        {"id": 0, "input": None, "score": 1, "conversations": [{"from": "human", "value": "q"}]},
        {"id": 1, "input": None, "score": 2, "conversations": [{"from": "human", "value": "q"}]},
        {"id": 2, "input": "now text", "score": 2.5, "conversations": [{"from": "human", "value": "q", "lang": "en"}]},
        {"id": 3, "input": "t", "score": 3.0, "complexity_scores": [1.5, 2.0], "conversations": [{"from": "human", "value": "q"}]},
        {"id": 4, "input": None, "score": 4.0, "conversations": [{"from": "human", "value": "q"}]},
    ]  # fmt: skip
    write_records(tmp_path / "p.parquet", raws)
    back = [r.raw for r in iter_records(tmp_path / "p.parquet")]
    # parquet has one schema: fields a record lacked come back as null, ints widened to float
    assert [r["score"] for r in back] == [1.0, 2.0, 2.5, 3.0, 4.0]
    assert [r["input"] for r in back] == [None, None, "now text", "t", None]
    assert back[3]["complexity_scores"] == [1.5, 2.0] and back[0]["complexity_scores"] is None
    assert back[2]["conversations"] == [{"from": "human", "value": "q", "lang": "en"}]
    assert back[0]["conversations"] == [{"from": "human", "value": "q", "lang": None}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet"]


def test_parquet_incompatible_types_fail_and_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writers, "_BATCH_ROWS", 1)
    with pytest.raises(DeitaError, match="parquet needs one type per field"):
        write_records(tmp_path / "p.parquet", [{**good(0), "x": 1}, {**good(1), "x": "text"}])
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- bad records


BAD_LINES = [
    ('{"conversations": [', "invalid JSON: Expecting value at column 20"),
    ("[1, 2]", "not a JSON object: the record is an array"),
    (b'{"conversations": [{"from": "human", "value": "caf\xe9"}]}', "not valid UTF-8: byte 0xe9 at column 51"),
    ({"id": 9}, "missing 'conversations'"),
    ({"conversations": ["hi"]}, "message 1 is a string, expected an object"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}, {"from": "robot", "value": "b"}]},
     "message 3 has unknown role 'robot' (expected human/user, gpt/assistant/chatgpt/bing/bard, system)"),
    ({"conversations": [{"from": "human", "value": 5}]}, "message 1 'value' is a number, expected a string"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "  "}]}, "message 2 (gpt) is empty"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "q"}]}, "messages 1 and 2 are both from the user"),
    ({"conversations": []}, "no turns: the conversation has no user message"),
]  # fmt: skip


def _line(x: object) -> bytes:
    return x if isinstance(x, bytes) else (x if isinstance(x, str) else json.dumps(x)).encode()


@pytest.mark.parametrize(("bad", "problem"), BAD_LINES)
def test_bad_jsonl_record_fails_with_file_line_problem_and_hint(
    tmp_path: Path, bad: object, problem: str
) -> None:
    path = write_text(
        tmp_path / "pool.jsonl", _line(good(0)) + b"\n\n" + _line(bad) + b"\n" + _line(good(2)) + b"\n"
    )
    it = iter_records(path)
    assert next(it).index == 0
    with pytest.raises(RecordError) as e:
        next(it)
    msg = str(e.value)
    assert msg.startswith(f"{path}, line 3: ") and problem in msg
    # the Python reader's hint names how its caller skips, never a made-up path
    assert "Use policy=RecordPolicy.skipping(REJECTS) to set bad records aside and continue" in msg
    assert "<output>" not in msg
    assert e.value.location == "line 3" and e.value.path == str(path)


def test_first_record_of_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match=r"x\.jsonl, line 1: cannot tell the record format"):
        list(iter_records(jsonl(tmp_path / "x.jsonl", {"text": "hi"})))


def test_skip_mode_writes_rejects_and_counts_add_up(tmp_path: Path) -> None:
    lines = [_line(good(0))] + [_line(bad) for bad, _ in BAD_LINES] + [_line(good(99))]
    path = write_text(tmp_path / "pool.jsonl", b"\n".join(lines) + b"\n")
    stats = ReadStats()
    with RecordPolicy.skipping(rejects_path_for(tmp_path / "out.jsonl")) as rejects:
        kept = list(iter_records(path, policy=rejects, stats=stats))
    assert [r.index for r in kept] == [0, len(BAD_LINES) + 1]
    assert stats.records == len(kept) + stats.rejected == len(BAD_LINES) + 2
    assert rejects.count == stats.rejected == len(BAD_LINES) and stats.turns == 2
    rows = [
        json.loads(x) for x in (tmp_path / "out.jsonl.rejects.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert [r["index"] for r in rows] == list(range(1, len(BAD_LINES) + 1))
    assert [r["location"] for r in rows] == [f"line {i}" for i in range(2, len(BAD_LINES) + 2)]
    for row, (bad, problem) in zip(rows, BAD_LINES, strict=True):
        assert problem in row["reason"]
        if isinstance(bad, bytes):  # the raw line, when it did not decode or parse
            assert row["record"] == bad.decode("utf-8", "replace")
        elif isinstance(bad, str):
            assert row["record"] == (bad if bad.startswith("{") else json.loads(bad))
        else:
            assert row["record"] == bad


def test_rejects_file_replaces_stale_file_and_hint_names_it(tmp_path: Path) -> None:
    stale = write_text(tmp_path / "o.jsonl.rejects.jsonl", "old\n")
    with RecordPolicy.skipping(stale) as policy:
        assert list(iter_records(jsonl(tmp_path / "ok.jsonl", good(0)), policy=policy))
    assert not stale.exists()  # a run that rejected nothing leaves no stale rejects behind
    write_text(stale, "old\n")
    with RecordPolicy.skipping(stale) as policy:
        list(iter_records(jsonl(tmp_path / "x.jsonl", {"conversations": []}), policy=policy))
    assert [json.loads(line)["location"] for line in stale.read_text().splitlines()] == ["line 1"]
    with pytest.raises(RecordError, match="write bad records to .*o.jsonl.rejects.jsonl and continue"):
        list(iter_records(jsonl(tmp_path / "x.jsonl", {"conversations": []}), policy=RecordPolicy.failing(stale)))


@pytest.mark.parametrize(
    ("text", "location", "problem"),
    [
        ('[{"id": 1, "conversations": []}]', "index 0", "no turns"),
        ('[\n{"conversations": [{"from": "human", "value": "q"}]},\n{"conversations": [{"from": "robot", "value": "x"}]}]',
         "index 1", "message 1 has unknown role 'robot'"),
        ('[{"conversations": [{"from": "human", "value": "q"}]}, "text"]', "index 1", "not a JSON object: the record is a string"),
        ('[{"conversations": [{"from": "human", "value": "q"}]},\n{"conversations": [}]',
         "index 1", "invalid JSON: Expecting value at file line 2"),
        ('[{"conversations": [{"from": "human", "value": "q"}]} {"x": 1}]', "index 1", "expected ',' or ']'"),
        ('[{"conversations": [{"from": "human", "value": "q"}]}, {"conversations": [{"from": "hu', "index 1", "invalid JSON"),
        ('[{"conversations": [{"from": "human", "value": "q"}]},', "index 1", "the array is not closed"),
        ('[{"conversations": [{"from": "human", "value": "q"}]},\n{"conversations": [{"from": "human", "value": "caf\xe9"}]}]',
         "index 1", "not valid UTF-8: byte 0xe9 at byte 51 of the record (file line 2)"),
    ],
)  # fmt: skip
def test_bad_json_array_record(tmp_path: Path, text: str, location: str, problem: str) -> None:
    data = text.encode("latin-1") if "\xe9" in text else text.encode()
    path = write_text(tmp_path / "pool.json", data)
    with pytest.raises(RecordError) as e:
        list(iter_records(path))
    assert str(e.value).startswith(f"{path}, {location}: ") and problem in str(e.value)


def test_json_array_cut_off_is_one_reject(tmp_path: Path) -> None:
    path = write_text(tmp_path / "cut.json", "[" + json.dumps(good(0)) + ", " + json.dumps(good(1))[:-9])
    stats = ReadStats()
    with RecordPolicy.skipping(tmp_path / "r.jsonl") as rejects:
        assert [r.index for r in iter_records(path, policy=rejects, stats=stats)] == [0]
    assert (stats.records, stats.rejected) == (2, 1)
    assert (
        "the array is not closed (is the file cut off?)"
        in json.loads((tmp_path / "r.jsonl").read_text())["reason"]
    )


def test_file_level_problems(tmp_path: Path) -> None:
    with pytest.raises(DeitaError, match="no such file"):
        iter_records(tmp_path / "missing.jsonl")  # checked at call time, not at the first next()
    with pytest.raises(RecordError, match="not a JSON array of records"):
        list(iter_records(write_text(tmp_path / "s.json", '"just a string"')))
    with pytest.raises(DeitaError, match="unknown file type '.csv'"):
        iter_records(write_text(tmp_path / "x.csv", "a,b"))
    with pytest.raises(DeitaError, match="unknown on_error"):
        RecordPolicy.for_run(SimpleNamespace(on_error="ignore"), None)


# ---------------------------------------------------------------- atomic writing


@pytest.mark.parametrize("file_type", list(OUT_NAMES))
def test_atomic_write_leaves_no_output_on_exception(tmp_path: Path, file_type: str) -> None:
    out = tmp_path / OUT_NAMES[file_type]

    def raws():
        yield from SAMPLES["sharegpt"]
        raise RuntimeError("scorer crashed")

    with pytest.raises(RuntimeError, match="scorer crashed"):
        write_records(out, raws())
    assert list(tmp_path.iterdir()) == []
    write_records(out, SAMPLES["sharegpt"][:1])  # an existing output survives a failed rewrite untouched
    with pytest.raises(RuntimeError), RecordWriter(out) as w:
        w.write(SAMPLES["sharegpt"][1])
        raise RuntimeError("boom")
    assert [r.raw for r in iter_records(out)] == SAMPLES["sharegpt"][:1]
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_rewrite_in_place(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "x.jsonl", good(0), good(1))
    write_records(path, ({**r.raw, "complexity_scores": [2.5]} for r in iter_records(path)))
    assert [r.raw["complexity_scores"] for r in iter_records(path)] == [[2.5], [2.5]]


# ---------------------------------------------------------------- conversion of files


def test_convert_file_round_trip_and_multi_turn_error_names_the_record(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "in.jsonl", *[{**good(i), "source": "s"} for i in range(3)])
    assert convert_file(src, tmp_path / "a.json", "alpaca") == 3
    assert convert_file(tmp_path / "a.json", tmp_path / "back.jsonl", "sharegpt") == 3
    assert [json.dumps(json.loads(line)) for line in (tmp_path / "back.jsonl").read_text().splitlines()] == \
        src.read_text().splitlines()  # the same fields in the same order
    multi = {"conversations": good(0)["conversations"] * 2}
    bad = jsonl(tmp_path / "multi.jsonl", good(0), multi)
    with pytest.raises(RecordError) as e:
        convert_file(bad, tmp_path / "m.json", "alpaca")
    assert str(e.value).startswith(
        f"{bad}, line 2: record has 2 turns; Alpaca holds one instruction/response pair"
    )
    assert not (tmp_path / "m.json").exists()
    with RecordPolicy.skipping(tmp_path / "m.rej") as rejects:
        assert convert_file(bad, tmp_path / "m.json", "alpaca", policy=rejects) == 1
    assert rejects.count == 1


# ---------------------------------------------------------------- streaming


N_BIG = 200_000


def _big_file(path: Path, array: bool) -> Path:
    rec = '{"id": %d, "conversations": [{"from": "human", "value": "question %d"}, {"from": "gpt", "value": "answer"}]}'
    lines = (rec % (i, i) for i in range(N_BIG))
    write_text(path, "[\n" + ",\n".join(lines) + "\n]\n" if array else "\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("array", [False, True], ids=["jsonl", "json-array"])
def test_streaming_memory_is_bounded(tmp_path: Path, array: bool) -> None:
    """Live Python objects stay flat while 200K records stream by (all at once they would be ~2M blocks)."""
    path = _big_file(tmp_path / ("big.json" if array else "big.jsonl"), array)
    it = iter_records(path)
    first = next(it)
    base, grown, n = sys.getallocatedblocks(), 0, 1
    for rec in it:  # noqa: B007 (the last record is checked after the loop)
        n += 1
        if n % 5000 == 0:
            grown = max(grown, sys.getallocatedblocks() - base)
    assert first.index == 0 and rec.index == N_BIG - 1 and n == N_BIG
    assert grown < 20_000, f"{grown} blocks still allocated"


def test_streaming_peak_bytes(tmp_path: Path) -> None:
    """tracemalloc peak while streaming a 25 MB JSON array stays a few chunks' worth (1 MiB each)."""
    path = write_text(
        tmp_path / "a.json",
        "[" + ",".join(json.dumps({**good(i), "pad": "x" * 800}) for i in range(40_000)) + "]",
    )
    tracemalloc.start()
    try:
        assert sum(1 for _ in iter_records(path)) == 40_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20 < path.stat().st_size / 3, f"peak {peak / 2**20:.1f} MiB"
