"""A record with one key twice is a bad record (never a silent last-wins), in JSONL and JSON arrays, through
the orjson fast path's pre-test and the stdlib path alike; text that merely looks like keys is not."""

from __future__ import annotations

import json
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
}
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


def test_text_that_looks_like_keys_is_read_by_the_fast_path(tmp_path: Path) -> None:
    data = LOOKS_LIKE_KEYS.encode()
    assert checks.fast_loads(data) is not checks.SLOW  # escaped quotes break the key pattern
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
