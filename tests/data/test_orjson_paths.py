"""The orjson read and write paths keep what the stdlib path kept: fields, key order, Unicode, exact ints
and floats (big ints included), and hand what orjson cannot say exactly to the stdlib."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from deita.data import formats
from deita.data.io import READS, ReadStats, iter_records, records_at, write_records
from deita.data.readers import text as text_reader
from deita.data.records import Turn
from deita.data.validate import validate_file

FLOATS = [0.1, 1e-05, 1e16, 1e22, 5e-324, 1.7976931348623157e308, -0.0, 2.5e-300, 123456789.123456789,
          0.30000000000000004, 3.4521, -7.25e-7]
BIG_INTS = [2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, -(10**40)]


def records() -> list[dict]:
    rng = random.Random(3)
    out = []
    for i in range(40):
        record = {"zeta": i, "id": f"r{i}", "conversations": [
            {"from": "human", "value": f"Grüße 你好 😀 \u2028 tab\t quote\" backslash\\ {i}"},
            {"from": "gpt", "value": "[{]} \\u0041 " + "x" * rng.randint(0, 50)}],
            "alpha": {"b": 1, "a": [None, True, False]}, "scores": rng.sample(FLOATS, 3)}
        if i % 7 == 3:
            record["big"] = {"ints": BIG_INTS}
        if i % 5 == 1:
            record["digits_in_text"] = "12345678901234567890123 is a long number in a string"
        out.append(record)
    return out


def same(a: object, b: object) -> bool:
    """Equal with exact types and float signs (0.0 == -0.0 and 1 == 1.0 would hide a change)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return type(b) is float and (a == b and math.copysign(1, a) == math.copysign(1, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("layout", ["jsonl", "array-one-per-line", "array-pretty", "array-pretty-4"])
def test_round_trip_keeps_order_unicode_and_exact_numbers(tmp_path: Path, layout: str) -> None:
    raws = records()
    if layout == "jsonl":
        path = tmp_path / "in.jsonl"
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in raws) + "\n", encoding="utf-8")
    elif layout == "array-one-per-line":
        path = tmp_path / "in.json"
        path.write_text("[\n" + ",\n".join(json.dumps(r) for r in raws) + "\n]\n", encoding="utf-8")
    else:
        path = tmp_path / "in.json"
        path.write_text(json.dumps(raws, indent=1 if layout == "array-pretty" else 4, ensure_ascii=False),
                        encoding="utf-8")
    read = [r.raw for r in iter_records(path)]
    assert all(same(a, b) for a, b in zip(raws, read, strict=True)) and len(read) == len(raws)
    for out in (tmp_path / "out.jsonl", tmp_path / "out.json"):
        assert write_records(out, read) == len(raws)
        back = json.loads("[" + ",".join(out.read_text().rstrip("\n").split("\n")) + "]") if out.suffix == ".jsonl" \
            else json.loads(out.read_text())
        assert all(same(a, b) for a, b in zip(raws, back, strict=True))  # the stdlib reads our output back exactly


def test_pretty_and_one_per_line_arrays_are_read_by_orjson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stdlib decoder is not needed for well-laid-out arrays (what makes them fast), even across chunks."""
    monkeypatch.setattr(text_reader, "_CHUNK", 300)

    def refuse(self: object) -> None:
        raise AssertionError("stdlib decoder used")

    monkeypatch.setattr(text_reader.TextBuffer, "decode", refuse)
    plain = [r for r in records() if "big" not in r and "digits_in_text" not in r]
    for text in (json.dumps(plain, indent=1), "[\n" + ",\n".join(map(json.dumps, plain)) + "\n]\n"):
        path = tmp_path / "a.json"
        path.write_text(text)
        assert [r.raw for r in iter_records(path)] == plain


def test_what_orjson_cannot_say_goes_to_the_stdlib(tmp_path: Path) -> None:
    conv = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    rest = f'"conversations": {json.dumps(conv)}}}'
    lines = [
        '{"n": 18446744073709551616, ' + rest,  # orjson: a float
        '{"n": -9223372036854775809, ' + rest,  # orjson: a float
        '{"n": NaN, "m": Infinity, ' + rest,  # orjson refuses
        '{"n": 1e400, ' + rest,  # orjson refuses, the stdlib reads inf
    ]
    for path, text in ((tmp_path / "x.jsonl", "\n".join(lines) + "\n"),
                       (tmp_path / "x.json", "[\n" + ",\n".join(lines) + "\n]\n")):
        path.write_text(text)
        got = [r.raw["n"] for r in iter_records(path)]
        assert got[:2] == [2**64, -(2**63) - 1] and all(type(v) is int for v in got[:2])
        assert math.isnan(got[2]) and got[3] == math.inf
        out = tmp_path / ("o" + path.suffix)
        write_records(out, [r.raw for r in iter_records(path)])
        assert "NaN" in out.read_text() and "Infinity" in out.read_text()  # not null
        assert [r.raw["n"] for r in iter_records(out)][:2] == [2**64, -(2**63) - 1]


def test_lone_surrogate_written_as_its_escape(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    write_records(out, [{"a": "x\ud800y", "b": "é"}])
    assert out.read_text(encoding="utf-8") == '{"a":"x\\ud800y","b":"é"}\n'


def test_common_turns_equal_the_full_rules() -> None:
    """The one-pass turn parser agrees with the full per-message checks on every record it accepts, and
    leaves every other record to them (same turns, same problem sentence)."""
    rng = random.Random(0)
    roles = ["human", "gpt", "user", "chatgpt", "bard", "system", "Human ", "GPT", "robot", 7, None]
    texts = ["q", "a longer answer", "", "  ", None, 3]
    for _ in range(3000):
        fmt = rng.choice(["sharegpt", "messages"])
        role_key, text_key = ("from", "value") if fmt == "sharegpt" else ("role", "content")
        msgs = []
        for _ in range(rng.randint(0, 6)):
            if rng.random() < 0.03:
                msgs.append("not a message")
                continue
            role = rng.choice(roles[:3] if rng.random() < 0.6 else roles)
            if fmt == "messages" and role in ("human", "gpt"):
                role = {"human": "user", "gpt": "assistant"}[role]
            message = {role_key: role, text_key: rng.choice(texts[:2] if rng.random() < 0.8 else texts)}
            if rng.random() < 0.05:
                del message[rng.choice([role_key, text_key])]
            msgs.append(message)
        raw = {"messages" if fmt == "messages" else "conversations": msgs}

        fast = _outcome(formats.parse_turns, raw, fmt)
        full = _outcome(_full_rules, raw, fmt)
        assert fast == full, (raw, fast, full)


def _outcome(parse, raw: dict, fmt: str) -> object:
    try:
        return parse(raw, fmt)
    except ValueError as err:
        return str(err)


def _full_rules(raw: dict, fmt: str) -> tuple[list[Turn], str | None, int]:
    turns, system, skipped = formats.pair_by_role(formats.checked_messages(raw, fmt))
    if not turns:
        raise ValueError("no turns: the conversation has no user message")
    return turns, system, skipped


def test_read_counter_and_fetch_by_span(tmp_path: Path) -> None:
    raws = records()
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n\n".join(json.dumps(r, ensure_ascii=False) for r in raws).encode() + b"\n")
    key = str(path.resolve())
    before = READS[key]
    stats, spans = ReadStats(), []
    for _ in iter_records(path, stats=stats):
        spans.append((stats.record_start, stats.bytes_read))
    assert READS[key] == before + 1
    picked = [7, 0, 39, 3]
    assert all(same(raws[i], got) for i, got in zip(picked, records_at(path, [spans[i] for i in picked]), strict=True))
    assert READS[key] == before + 1  # fetching a few records is not a read of the file


def test_count_reads_env_reports_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records()) + "\n")
    result = subprocess.run([sys.executable, "-m", "deita.cli", "validate", str(path)], capture_output=True,
                            text=True, env={**os.environ, "DEITA_COUNT_READS": "1"}, check=True)
    assert f"deita reads: 1 {path.resolve()}" in result.stderr.splitlines()


def test_validate_on_orjson_path_keeps_problems(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    path.write_text(json.dumps(good) + "\n{oops\n" + json.dumps({"conversations": []}) + "\n")
    report = validate_file(path)
    assert report.records == 3 and len(report.problems) == 2
    assert report.kinds == {"invalid JSON": 1, "no turns": 1}
