"""validate_file: every problem of a file, with its location, and notes on odd-but-valid records."""

from __future__ import annotations

import json
from pathlib import Path

from deita.data.validate import validate_file


def conv(*roles: str) -> dict:
    return {"conversations": [{"from": r, "value": f"{r} {i}"} for i, r in enumerate(roles)]}


def test_validate_reports_all_problems_and_notes(tmp_path: Path) -> None:
    records = [
        conv("human", "gpt"),
        conv("gpt", "human", "gpt"),  # split chat
        conv("gpt", "gpt", "human"),  # split chat, unanswered last turn
        conv(),  # no turns
        conv("system", "human", "gpt"),
        conv("human", "human", "gpt"),  # same role twice
        {"conversations": [{"from": "human", "value": " "}]},  # empty message
    ]
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(records))
    report = validate_file(path)
    assert (report.format, report.file_type, report.records, report.turns) == ("sharegpt", "json", 7, 4)
    assert not report.ok
    assert report.problems == [
        f"{path}, index 3: no turns: the conversation has no user message",
        f"{path}, index 5: messages 1 and 2 are both from the user (human, human): roles must alternate user/assistant",
        f"{path}, index 6: message 1 (human) is empty (whitespace-only 'value')",
    ]
    assert report.notes == [
        "2 records start with an assistant message (split chats): those 3 messages are not turns",
        "1 record(s) have a leading system message: kept aside, not a turn",
        '1 record(s) end with a user message without a response: its response is ""',
    ]


def test_validate_clean_file_and_positional(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text("\n".join(json.dumps(conv("gpt", "human", "gpt")) for _ in range(3)) + "\n")
    report = validate_file(path)
    assert report.ok and report.records == 3 and report.turns == 3
    positional = validate_file(path, pairing="positional")
    assert positional.ok and positional.turns == 6 and "positional pairing" in positional.notes[-1]


def test_validate_bad_json_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(conv("human", "gpt")) + "\n{oops\n")
    report = validate_file(path)
    assert report.problems == [
        f"{path}, line 2: invalid JSON: Expecting property name enclosed in double quotes at column 2"
    ]


def test_validate_tally_by_kind(tmp_path: Path) -> None:
    """`deita validate` ends with the problems counted by kind, the most frequent first."""
    import subprocess
    import sys

    lines = [json.dumps(conv("human", "gpt")), "{oops", json.dumps(conv()), json.dumps(conv()),
             json.dumps(conv("human", "human", "gpt")), json.dumps({"conversations": [{"from": "robot", "value": "x"}]})]
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = validate_file(path)
    assert report.kinds == {"no turns": 2, "invalid JSON": 1, "roles do not alternate": 1, "unknown role": 1}
    assert report.tally() == ["2  no turns", "1  invalid JSON", "1  roles do not alternate", "1  unknown role"]
    result = subprocess.run([sys.executable, "-m", "deita.cli", "validate", str(path)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-5:] == [
        "5 problems found; by kind:",
        *report.tally()]
