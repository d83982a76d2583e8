"""Bad input in the shapes real files have: each bad record is one reject with file, location and reason,
reading goes on, and counts add up (records == kept + rejected)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deita.data.io import (
    MAX_NESTING,
    ReadStats,
    RecordPolicy,
    RecordWriter,
    UnwritableRecord,
    convert_file,
    input_size,
    iter_records,
    write_records,
)
from deita.data.readers import text as text_reader
from deita.data.validate import validate_file
from deita.errors import RecordError

N = 20
BROKEN = {  # index -> how its text is broken
    3: "extra opener",
    6: "missing comma before",
    9: "missing quote",
    12: "wrong closer",
    16: "cut in half",
    19: "cut in half",  # the last element: then the closing ']' must still be found
}
EMPTY, SAME_ROLE = {4, 14}, {11}  # valid JSON, bad content


def sharegpt(i: int) -> dict:
    """Records shaped like real ShareGPT: role aliases, chats opening with the assistant, a system prompt,
    an unanswered last message, brackets, quotes and backslashes inside the text."""
    kinds = [
        [("human", f'q{i} [a] {{b}} "quoted"'), ("gpt", f"a{i} \\ back ]}}")],
        [("user", f"q{i}"), ("chatgpt", "a"), ("user", "more ["), ("chatgpt", "b {")],
        [("gpt", "…continued from the split chat"), ("human", f"q{i}"), ("gpt", "a")],
        [("system", "be brief"), ("human", f"q{i}"), ("bard", "a"), ("human", "unanswered")],
    ]
    conv = kinds[i % 4]
    if i in EMPTY:
        conv = [("human", f"q{i}"), ("gpt", "")]
    if i in SAME_ROLE:
        conv = [("human", f"q{i}"), ("human", "again"), ("gpt", "a")]
    return {"id": f"r{i}", "conversations": [{"from": r, "value": v} for r, v in conv], "source": "sharegpt"}


def _break(text: str, how: str) -> str:
    if how == "extra opener":
        return text.replace('"value": ', '"value": [', 1)
    if how == "missing quote":  # the string state is inverted for the rest of the line
        return text.replace('"from": "', '"from: "', 1)
    if how == "wrong closer":  # the conversation's ']' (the last one: text values come before it)
        k = text.rfind("]")
        return text[:k] + "}" + text[k + 1 :]
    if how == "cut in half":
        return text[: len(text) // 2]
    return text


def broken_array(path: Path, pretty: bool) -> tuple[Path, dict[int, tuple[int, int]]]:
    """A JSON array of N records, the BROKEN ones damaged; returns the path and each element's file lines."""
    parts, lines, line = ["[\n"], {}, 2
    for i in range(N):
        text = json.dumps(sharegpt(i), indent=2, ensure_ascii=False) if pretty else json.dumps(sharegpt(i))
        if pretty:
            text = "\n".join("  " + x for x in text.splitlines())
        text = _break(text, BROKEN.get(i, ""))
        if i:
            parts.append("\n" if BROKEN.get(i) == "missing comma before" else ",\n")
        lines[i] = (line, line + text.count("\n"))
        line += text.count("\n") + 1
        parts.append(text)
    parts.append("\n]\n")
    path.write_text("".join(parts), encoding="utf-8")
    return path, lines


@pytest.mark.parametrize("chunk", [1 << 20, 97], ids=["one-chunk", "tiny-chunks"])
@pytest.mark.parametrize("pretty", [False, True], ids=["record-per-line", "pretty-printed"])
def test_json_array_resyncs_after_each_broken_element(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pretty: bool, chunk: int
) -> None:
    monkeypatch.setattr(text_reader, "_CHUNK", chunk)
    path, lines = broken_array(tmp_path / "pool.json", pretty)
    stats = ReadStats()
    with RecordPolicy.skipping(tmp_path / "rejects.jsonl") as rejects:
        kept = list(iter_records(path, policy=rejects, stats=stats))
    bad = set(BROKEN) | EMPTY | SAME_ROLE
    assert [r.index for r in kept] == [i for i in range(N) if i not in bad]
    assert [r.raw for r in kept] == [sharegpt(i) for i in range(N) if i not in bad]
    assert [r.location for r in kept] == [f"index {r.index}" for r in kept]
    assert stats.records == N == len(kept) + stats.rejected and rejects.count == stats.rejected == len(bad)
    rows = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in rows] == sorted(bad)
    for row in rows:
        i = row["index"]
        assert row["location"] == f"index {i}"
        if i in BROKEN:
            assert row["reason"].startswith("invalid JSON: ")
            first, last = lines[i]
            line = int(re.search(r"file line (\d+)", row["reason"]).group(1))
            assert first <= line <= last + 1, (i, row["reason"])  # where the parser noticed
            assert "read on from the next record" in row["reason"]
            assert isinstance(row["record"], str) and len(row["record"]) <= 500
        elif i in EMPTY:
            assert "message 2 (gpt) is empty" in row["reason"]
        else:
            assert "messages 1 and 2 are both from the user" in row["reason"]
    missing = next(r for r in rows if r["index"] == 6)["reason"]
    assert "expected ',' or ']' after the record at index 5" in missing


@pytest.mark.parametrize("pretty", [False, True], ids=["record-per-line", "pretty-printed"])
def test_json_array_fail_mode_names_file_index_and_line(tmp_path: Path, pretty: bool) -> None:
    path, lines = broken_array(tmp_path / "pool.json", pretty)
    with pytest.raises(RecordError) as e:
        list(iter_records(path))
    assert str(e.value).startswith(f"{path}, index 3: invalid JSON: ")
    first, last = lines[3]
    assert first <= int(re.search(r"file line (\d+)", e.value.problem).group(1)) <= last + 1
    assert e.value.location == "index 3" and "RecordPolicy.skipping" in str(e.value)


def test_json_array_cut_off_and_trailing_data_are_one_reject_each(tmp_path: Path) -> None:
    good = [json.dumps(sharegpt(i)) for i in range(3)]
    cut = tmp_path / "cut.json"
    cut.write_text(
        "[\n" + ",\n".join(good) + ',\n{"id": "r3", "conversations": [{"from": "hu', encoding="utf-8"
    )
    stats = ReadStats()
    with RecordPolicy.skipping(tmp_path / "r1.jsonl") as rejects:
        assert len(list(iter_records(cut, policy=rejects, stats=stats))) == 3
    (row,) = [json.loads(x) for x in (tmp_path / "r1.jsonl").read_text().splitlines()]
    assert row["location"] == "index 3" and "the array is not closed (is the file cut off?)" in row["reason"]
    assert (stats.records, stats.rejected) == (4, 1)

    trailing = tmp_path / "trailing.json"
    trailing.write_text("[" + ",".join(good) + "]\n[" + good[0] + "]\n", encoding="utf-8")
    stats = ReadStats()
    with RecordPolicy.skipping(tmp_path / "r2.jsonl") as rejects:
        assert len(list(iter_records(trailing, policy=rejects, stats=stats))) == 3
    (row,) = [json.loads(x) for x in (tmp_path / "r2.jsonl").read_text().splitlines()]
    assert row["location"] == "line 2" and "unexpected data after the closing ']'" in row["reason"]
    assert stats.records == 3 + stats.rejected


def test_convert_skip_counts_every_record_of_a_broken_array(tmp_path: Path) -> None:
    path, _ = broken_array(tmp_path / "pool.json", pretty=True)
    stats = ReadStats()
    with RecordPolicy.skipping(tmp_path / "out.jsonl.rejects.jsonl") as rejects:
        written = convert_file(
            path, tmp_path / "out.jsonl", "messages", policy=rejects, stats=stats
        )
    assert written + stats.rejected == stats.records == N
    assert written == N - len(set(BROKEN) | EMPTY | SAME_ROLE)


# ---------------------------------------------------------------- nesting


def deep(levels: int) -> str:
    """A ShareGPT record whose 'meta' field nests objects so that the record is ``levels`` deep."""
    inner = levels - 1
    return (
        '{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "meta": '
        + '{"a": ' * inner
        + "1"
        + "}" * inner
        + "}"
    )


NESTED = [
    ("[" * 100_000, "nested deeper than the JSON parser allows"),
    ('{"a":' * 100_000, "nested deeper than the JSON parser allows"),  # unbalanced as well
    (deep(1000), "nested deeper than"),  # the parser's limit or ours, depending on the stack
    (deep(MAX_NESTING + 1), f"nested deeper than {MAX_NESTING} levels (in field 'meta')"),
]


@pytest.mark.parametrize("array", [False, True], ids=["jsonl", "json-array"])
def test_deep_nesting_is_a_reject_not_a_crash(tmp_path: Path, array: bool) -> None:
    texts = [json.dumps(sharegpt(0))] + [t for t, _ in NESTED] + [deep(MAX_NESTING), json.dumps(sharegpt(1))]
    path = tmp_path / ("deep.json" if array else "deep.jsonl")
    path.write_text("[\n" + ",\n".join(texts) + "\n]\n" if array else "\n".join(texts) + "\n")
    stats = ReadStats()
    with RecordPolicy.skipping(tmp_path / "r.jsonl") as rejects:
        kept = list(iter_records(path, policy=rejects, stats=stats))
    assert [r.index for r in kept] == [0, len(NESTED) + 1, len(NESTED) + 2]  # depth MAX_NESTING is fine
    assert (stats.records, stats.rejected) == (len(texts), len(NESTED))
    rows = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    for n, (row, (_, problem)) in enumerate(zip(rows, NESTED, strict=True), 1):
        assert row["location"] == (f"index {n}" if array else f"line {n + 1}")
        assert problem in row["reason"]
    with pytest.raises(RecordError) as e:
        list(iter_records(path))
    assert str(e.value).startswith(f"{path}, {'index 1' if array else 'line 2'}: nested deeper than")
    # what was kept goes on through every later step: conversion and each writer; parquet readers accept
    # less nesting (PARQUET_MAX_SCHEMA_DEPTH), so there the deepest kept record is one more reject
    for name in ("out.json", "out.jsonl", "out.parquet", "out_ds"):
        stats = ReadStats()
        with RecordPolicy.skipping(tmp_path / "rc.jsonl") as rejects:
            n = convert_file(path, tmp_path / name, "messages", policy=rejects, stats=stats)
        assert stats.records == len(texts) == n + stats.rejected
        back = [r.raw for r in iter_records(tmp_path / name)]
        if name.endswith((".json", ".jsonl")):
            assert len(back) == 3 and back[1]["meta"] == json.loads(deep(MAX_NESTING))["meta"]
        else:
            assert len(back) == 2 and rejects.count == len(NESTED) + 1
            last = json.loads((tmp_path / "rc.jsonl").read_text().splitlines()[-1])
            assert (
                last["index"] == len(NESTED) + 1
                and "nested too deep for parquet (in field 'meta'" in last["reason"]
            )
    report = validate_file(path)
    assert report.records == len(texts) and len(report.problems) == len(NESTED)
    assert all("nested deeper than" in p for p in report.problems)


def test_writers_check_nesting(tmp_path: Path) -> None:
    too_deep = json.loads(deep(MAX_NESTING + 1))
    for name in ("o.jsonl", "o.parquet"):
        with RecordWriter(tmp_path / name) as w:
            assert "nested " in (w.check(too_deep) or "")
            w.write(sharegpt(0))
        assert w.count == 1
    # parquet: an object is one schema level, a list two; the deepest that pyarrow reads back is written
    objects, lists = {"x": 1}, {"x": 1}
    for _ in range(98):
        objects = {"x": objects}
    for _ in range(49):
        lists = {"x": [lists["x"]]}
    for n, (raw, deeper) in enumerate([(objects, {"x": objects}), (lists, {"x": [lists["x"]]})]):
        with RecordWriter(tmp_path / f"d{n}.parquet") as w:
            assert w.check(raw) is None
            w.write(raw)
            with pytest.raises(UnwritableRecord, match="nested too deep for parquet .in field 'x'"):
                w.write(deeper)
        assert pq_rows(tmp_path / f"d{n}.parquet") == [raw]


def pq_rows(path: Path) -> list:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


# ---------------------------------------------------------------- lone surrogates


def test_lone_surrogate_is_a_reject_and_a_validate_problem(tmp_path: Path) -> None:
    lone_value = json.dumps(sharegpt(0)).replace('"q0 ', '"q0 \\ud800 ', 1)
    lone_key = (
        '{"conversations": [{"from": "human", "value": "q", "\\uDC00x": 1}, {"from": "gpt", "value": "a"}]}'
    )
    pair = json.dumps(sharegpt(2)).replace('"a"', '"\\ud83d\\ude00 a"', 1)  # a valid pair: an emoji
    for array in (False, True):
        texts = [lone_value, pair, lone_key, json.dumps(sharegpt(5))]
        path = tmp_path / ("s.json" if array else "s.jsonl")
        path.write_text("[\n" + ",\n".join(texts) + "\n]\n" if array else "\n".join(texts) + "\n")
        stats = ReadStats()
        with RecordPolicy.skipping(tmp_path / "r.jsonl") as rejects:
            kept = list(iter_records(path, policy=rejects, stats=stats))
        assert [r.index for r in kept] == [1, 3] and "😀" in kept[0].raw["conversations"][2]["value"]
        assert (stats.records, stats.rejected) == (4, 2)
        where = ["index 0", "index 2"] if array else ["line 1", "line 3"]
        report = validate_file(path)
        assert report.problems[0].startswith(
            f"{path}, {where[0]}: text is not valid Unicode: lone surrogate \\ud800 in conversations[0].value"
        )
        assert report.problems[1].startswith(
            f"{path}, {where[1]}: text is not valid Unicode: lone surrogate \\udc00 in a key of conversations[0]"
        )
        rows = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
        assert [r["location"] for r in rows] == where
        assert rows[0]["record"].startswith('{"id": "r0"')  # the text as in the file: it stays valid JSON
        with pytest.raises(RecordError, match=r"lone surrogate \\ud800 in conversations\[0\]\.value"):
            list(iter_records(path))


# ---------------------------------------------------------------- integers parquet cannot hold


BIG = [2**64, -(2**63) - 1, 10**5000]


def test_big_ints_are_rejected_for_parquet_only(tmp_path: Path) -> None:
    fine = {**sharegpt(0), "n": 2**63 - 1, "m": -(2**63)}
    rows = [
        fine,
        {**sharegpt(1), "n": 2**64},
        {**sharegpt(2), "meta": {"ids": [1, -(2**63) - 1]}},
        sharegpt(3),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    stats = ReadStats()
    with RecordPolicy.skipping(tmp_path / "out.parquet.rejects.jsonl") as rejects:
        n = convert_file(
            src, tmp_path / "out.parquet", "sharegpt", policy=rejects, stats=stats
        )
    assert n == 2 and stats.rejected == 2 and stats.records == n + stats.rejected
    assert [r.raw["id"] for r in iter_records(tmp_path / "out.parquet")] == ["r0", "r3"]
    back = next(iter_records(tmp_path / "out.parquet")).raw
    assert (back["n"], back["m"]) == (2**63 - 1, -(2**63))
    reasons = [json.loads(x) for x in (tmp_path / "out.parquet.rejects.jsonl").read_text().splitlines()]
    assert [(r["index"], r["location"]) for r in reasons] == [(1, "line 2"), (2, "line 3")]
    assert "integer 18446744073709551616 in n is outside the 64-bit range" in reasons[0]["reason"]
    assert f"integer {-(2**63) - 1} in meta.ids[1]" in reasons[1]["reason"]
    assert reasons[1]["record"]["meta"]["ids"][1] == -(2**63) - 1
    with pytest.raises(RecordError) as e:
        convert_file(src, tmp_path / "fail.parquet", "sharegpt")
    assert str(e.value).startswith(
        f"{src}, line 2: cannot write to parquet: integer 18446744073709551616 in n"
    )
    assert not (tmp_path / "fail.parquet").exists()
    # JSON outputs keep any integer
    assert convert_file(src, tmp_path / "out.jsonl", "sharegpt") == 4
    assert [r.raw for r in iter_records(tmp_path / "out.jsonl")] == rows


@pytest.mark.parametrize("name", ["o.parquet", "o_ds"])
def test_record_writer_check_and_unwritable_record(tmp_path: Path, name: str) -> None:
    with RecordWriter(tmp_path / name) as w:
        w.write(sharegpt(0))
        for big in BIG:
            bad = {**sharegpt(1), "x": {"y": [0, big]}}
            assert "in x.y[1] is outside the 64-bit range" in (w.check(bad) or "")
            with pytest.raises(UnwritableRecord, match=r"x\.y\[1\]") as e:
                w.write(bad)
            assert isinstance(e.value, ValueError)
        assert w.check(sharegpt(2)) is None
        w.write(sharegpt(2))
    assert w.count == 2
    assert [r.raw["id"] for r in iter_records(tmp_path / name)] == ["r0", "r2"]
    assert write_records(tmp_path / "o.jsonl", [{**sharegpt(1), "x": BIG[:2]}]) == 1


def test_integer_too_long_for_python_json_is_a_reject(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(sharegpt(0)) + '\n{"id": ' + "9" * 5000 + "}\n")
    stats = ReadStats()
    with RecordPolicy.skipping(tmp_path / "r.jsonl") as rejects:
        assert len(list(iter_records(path, policy=rejects, stats=stats))) == 1
    assert stats.rejected == 1 and "invalid JSON: Exceeds the limit" in validate_file(path).problems[0]


# ---------------------------------------------------------------- progress by bytes


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_bytes_read_grows_to_the_file_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    monkeypatch.setattr(text_reader, "_CHUNK", 4096)
    path = tmp_path / f"pool{suffix}"
    texts = [json.dumps({**sharegpt(i), "pad": "é" * 300}, ensure_ascii=False) for i in range(200)]
    path.write_text("[\n" + ",\n".join(texts) + "\n]\n" if suffix == ".json" else "\n".join(texts) + "\n")
    total, unit = input_size(path)
    assert (total, unit) == (path.stat().st_size, "bytes")
    stats, seen = ReadStats(), []
    for _ in iter_records(path, policy=RecordPolicy.skipping(None), stats=stats):
        seen.append(stats.bytes_read)
    assert seen == sorted(seen) and 0 < seen[0] < total // 4 and len(set(seen)) > 10
    assert stats.bytes_read == total


@pytest.mark.parametrize("name", ["pool.parquet", "pool_ds"])
def test_input_size_in_rows_for_parquet_and_datasets(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_records(path, [sharegpt(i) for i in (0, 1, 2, 3, 5)])
    assert input_size(path) == (5, "rows")
    stats = ReadStats()
    assert [stats.bytes_read for _ in iter_records(path, policy=RecordPolicy.skipping(None), stats=stats)] == [1, 2, 3, 4, 5]
