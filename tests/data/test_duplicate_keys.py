"""A record with one key twice is a bad record (never a silent last-wins), in JSONL and JSON arrays, through
the jiter fast path and the stdlib path alike: keys compare as decoded text (escapes included), at any depth;
text that merely looks like keys is not a duplicate."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deita.data import checks
from deita.data.io import RecordPolicy, iter_records
from deita.errors import RecordError

GOOD = '{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}'
DUPLICATED = {
    "top": '{"conversations": [{"from": "human", "value": "a"}], "conversations": '
           '[{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]}',
    "message": '{"conversations": [{"from": "human", "value": "a", "value": "z"}, {"from": "gpt", "value": "b"}]}',
    "nested": '{"meta": {"k": 1, "k": 2}, "conversations": [{"from": "human", "value": "a"}, '
              '{"from": "gpt", "value": "b"}]}',
    "digits": '{"q1": 1, "q1": 2, "conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}',
    "spaced": '{"conversations" : [{"from" :"human", "value": "a"}, {"from": "gpt", "value": "b"}], "id": 1, '
              '"id" : 2}',
    "second_message": '{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "from": "human", '
                      '"value": "b"}]}',
    "deep": '{"meta": {"a": {"b": [{"c": {"k": 1, "j": 2, "k": 3}}]}}, "conversations": [{"from": "human", '
            '"value": "a"}, {"from": "gpt", "value": "b"}]}',
}
# keys whose text holds escapes, quotes, colons or backslashes: (record, the key the message names)
ESCAPED = {
    "unicode_escape": ('{"conversations": [{"from": "human", "\\u0076alue": "a", "value": "z"}, '
                       '{"from": "gpt", "value": "b"}]}', "value"),
    "escaped_both": ('{"\\u0069d": 1, "i\\u0064": 2, "conversations": [{"from": "human", "value": "a"}]}', "id"),
    "surrogate_pair": ('{"\\ud83d\\ude00": 1, "\U0001f600": 2, "conversations": [{"from": "human", "value": "a"}]}',
                       "\U0001f600"),
    "quote_in_key": ('{"a\\"b": 1, "a\\"b": 2, "conversations": [{"from": "human", "value": "a"}]}', 'a"b'),
    "colon_in_key": ('{"a:b": 1, "a:b": 2, "conversations": [{"from": "human", "value": "a"}]}', "a:b"),
    "backslash_in_key": ('{"a\\\\b": 1, "a\\\\b": 2, "conversations": [{"from": "human", "value": "a"}]}',
                         "a\\b"),
    "solidus_escape": ('{"a/b": 1, "a\\/b": 2, "conversations": [{"from": "human", "value": "a"}]}', "a/b"),
}
# one key text twice in a record, but never twice in one object; and keys that differ once decoded
NOT_DUPLICATED = [
    '{"k": {"k": {"k": 1}}, "conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}',
    '{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}], "meta": {"from": 1}}',
    '{"a\\\\u0062": 1, "ab": 2, "a\\u0062c": 3, "conversations": [{"from": "human", "value": "a"}]}',
    '{"a\\"b": 1, "a\\\\b": 2, "a:b": 3, "a b": 4, "conversations": [{"from": "human", "value": "\\"from\\": x"}]}',
]
LOOKS_LIKE_KEYS = ('{"conversations": [{"from": "human", "value": "say \\"value\\": 1, then \\"from\\": and '
                   'http://x.y: or {\\"a\\": 2}"}, {"from": "gpt", "value": "key: value"}]}')


@pytest.mark.parametrize("case", list(DUPLICATED))
def test_a_duplicate_key_is_a_bad_record_in_jsonl(tmp_path: Path, case: str) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text(GOOD + "\n" + DUPLICATED[case] + "\n" + GOOD + "\n")
    with pytest.raises(RecordError, match=r", line 2: duplicate key '\w+' in one object"):
        list(iter_records(path))
    with RecordPolicy.skipping(tmp_path / "rejects.jsonl") as policy:
        kept = list(iter_records(path, policy=policy))
    assert [r.index for r in kept] == [0, 2]
    row = json.loads((tmp_path / "rejects.jsonl").read_text())
    assert row["location"] == "line 2" and row["reason"].startswith("duplicate key") and row["kind"] == "parse"
    assert row["record"] == DUPLICATED[case]  # the text as it was, both values kept


@pytest.mark.parametrize("case", list(DUPLICATED))
def test_a_duplicate_key_is_a_bad_record_in_a_json_array(tmp_path: Path, case: str) -> None:
    path = tmp_path / "pool.json"
    path.write_text("[\n  " + ",\n  ".join([GOOD, DUPLICATED[case], GOOD]) + "\n]\n")
    with RecordPolicy.skipping(tmp_path / "r.jsonl") as policy:
        kept = list(iter_records(path, policy=policy))
    assert [r.index for r in kept] == [0, 2]


@pytest.mark.parametrize("case", list(ESCAPED))
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_keys_compare_as_decoded_text(tmp_path: Path, case: str, suffix: str) -> None:
    """Escapes, quotes, colons and backslashes in keys: the same decoded key twice is a duplicate, in a JSONL
    line and in a pretty-printed array's element alike."""
    text, key = ESCAPED[case]
    assert checks.fast_loads(text.encode()) is checks.SLOW
    path = tmp_path / f"pool{suffix}"
    if suffix == ".jsonl":
        path.write_text(GOOD + "\n" + text + "\n" + GOOD + "\n", encoding="utf-8")
    else:
        records = [json.loads(GOOD), json.loads(text), json.loads(GOOD)]
        path.write_text(json.dumps(records, indent=1).replace(json.dumps(records[1], indent=1).replace("\n", "\n "),
                                                              text), encoding="utf-8")
        assert path.read_text(encoding="utf-8").count(text) == 1
    with pytest.raises(RecordError, match=f": duplicate key {re.escape(repr(key))} in one object"):
        list(iter_records(path))
    with RecordPolicy.skipping(tmp_path / "rejects.jsonl") as policy:
        kept = list(iter_records(path, policy=policy))
    assert [r.index for r in kept] == [0, 2]
    row = json.loads((tmp_path / "rejects.jsonl").read_text())
    assert row["reason"].startswith(f"duplicate key {key!r}")
    assert row["record"] == text if suffix == ".jsonl" else row["record"].startswith(text)  # an array: its span


@pytest.mark.parametrize("text", NOT_DUPLICATED)
def test_a_key_repeated_in_other_objects_is_not_a_duplicate(tmp_path: Path, text: str) -> None:
    assert checks.fast_loads(text.encode()) == json.loads(text)
    path = tmp_path / "pool.jsonl"
    path.write_text(text + "\n")
    assert [r.raw for r in iter_records(path)] == [json.loads(text)]


def test_the_fast_path_reads_one_value_within_the_nesting_limit() -> None:
    """The array the fast path wraps a record in neither lets two values through as one nor moves the
    nesting limit: a record of ``MAX_NESTING`` levels is read there, one level more goes to the stdlib."""
    assert checks.fast_loads(b'{"a": 1}, {"b": 2}') is checks.SLOW
    assert checks.fast_loads(b'1], [2') is checks.SLOW
    assert checks.fast_loads(b"") is checks.SLOW
    deepest = b'{"a": ' + b"[" * (checks.MAX_NESTING - 1) + b"]" * (checks.MAX_NESTING - 1) + b"}"
    assert checks.fast_loads(deepest) is not checks.SLOW
    assert checks.fast_loads(b'{"a": [' + deepest[6:-1] + b']}') is checks.SLOW


def test_a_jiter_with_another_depth_limit_falls_back_to_counting_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where jiter's own limit is not the one the wrap relies on, more brackets than ``MAX_NESTING`` (however
    shallow) send the record to the stdlib, which measures its depth."""
    wide = b'{"a": [' + b",".join([b"[]"] * checks.MAX_NESTING) + b"]}"
    assert checks._JITER_DEPTH_GUARD  # the installed jiter refuses exactly the records deeper than the limit
    assert checks.fast_loads(wide) == json.loads(wide)
    monkeypatch.setattr(checks, "_JITER_DEPTH_GUARD", False)
    assert checks.fast_loads(wide) is checks.SLOW
    assert checks.fast_loads(GOOD.encode()) == json.loads(GOOD)


def test_nesting_one_level_past_the_limit_is_a_bad_record(tmp_path: Path) -> None:
    def nested(levels: int) -> str:
        return '{"conversations": [{"from": "human", "value": "a"}], "x": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"

    path = tmp_path / "pool.jsonl"
    path.write_text(nested(checks.MAX_NESTING) + "\n" + nested(checks.MAX_NESTING + 1) + "\n")
    with pytest.raises(RecordError, match=f"line 2: nested deeper than {checks.MAX_NESTING} levels"):
        list(iter_records(path))


def test_text_that_looks_like_keys_is_read_by_the_fast_path(tmp_path: Path) -> None:
    data = LOOKS_LIKE_KEYS.encode()
    assert checks.fast_loads(data) is not checks.SLOW
    assert checks.fast_loads(DUPLICATED["message"].encode()) is checks.SLOW
    path = tmp_path / "pool.jsonl"
    path.write_text(LOOKS_LIKE_KEYS + "\n")
    assert [r.raw for r in iter_records(path)] == [json.loads(LOOKS_LIKE_KEYS)]


def test_validate_and_convert_report_the_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text(GOOD + "\n" + DUPLICATED["message"] + "\n")
    cli = [sys.executable, "-m", "deita.cli"]
    validate = subprocess.run([*cli, "validate", str(path)], capture_output=True, text=True)
    assert validate.returncode == 1 and "duplicate key" in validate.stdout + validate.stderr
    out = tmp_path / "out.jsonl"
    convert = subprocess.run([*cli, "convert", str(path), "-o", str(out), "--to", "alpaca", "--on-error", "skip"],
                             capture_output=True, text=True)
    assert convert.returncode == 0, convert.stderr
    assert len(out.read_text().splitlines()) == 1
    assert "duplicate key 'value'" in (tmp_path / "out.jsonl.rejects.jsonl").read_text()
