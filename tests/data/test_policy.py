"""The one bad-record policy: fail or skip, the rejects file, the kinds, the counts and the hint."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from deita.data import atomic
from deita.data.io import ReadStats, iter_records
from deita.data.policy import (
    API_SWITCH,
    CLI_SWITCH,
    KINDS,
    RecordPolicy,
    problem_kind,
    rejects_path_for,
)
from deita.errors import DeitaError, RecordError
from deita.runtime.options import RunOptions

GOOD = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
BAD_LINES: list[tuple[bytes, str]] = [
    (b"{oops", "parse"),
    (b'{"conversations": [{"from": "human", "value": "caf\xe9"}]}', "encoding"),
    (b"[1, 2]", "schema"),
    (b'{"conversations": []}', "turns"),
    (b'{"conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "q2"}]}', "turns"),
    (b'{"conversations": [{"from": "human", "value": ""}]}', "empty"),
    (b'{"conversations": "text"}', "schema"),
]


def pool(tmp_path: Path) -> Path:
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b"\n".join([json.dumps(GOOD).encode(), *(line for line, _ in BAD_LINES)]) + b"\n")
    return path


def test_skip_writes_each_reject_with_index_location_kind_and_reason(tmp_path: Path) -> None:
    path, rejects = pool(tmp_path), tmp_path / "out.jsonl.rejects.jsonl"
    stats = ReadStats()
    with RecordPolicy.skipping(rejects) as policy:
        kept = list(iter_records(path, policy=policy, stats=stats))
    assert [r.index for r in kept] == [0]
    rows = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [set(row) for row in rows] == [{"index", "location", "kind", "reason", "record"}] * len(BAD_LINES)
    assert [(row["index"], row["location"]) for row in rows] == [(i, f"line {i + 1}") for i in range(1, 8)]
    assert [row["kind"] for row in rows] == [kind for _, kind in BAD_LINES]
    assert policy.count == stats.rejected == len(BAD_LINES)
    assert policy.counts == {"turns": 2, "schema": 2, "parse": 1, "encoding": 1, "empty": 1}
    assert policy.line(of=stats.records) == [
        f"rejected 7 of 8 records (2 schema, 2 turns, 1 parse, 1 encoding, 1 empty) → {rejects}"
    ]


def test_fail_stops_at_the_first_bad_record_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    path, rejects = pool(tmp_path), tmp_path / "r.jsonl"
    policy = RecordPolicy.for_run(RunOptions(), rejects, switch=CLI_SWITCH)
    with pytest.raises(RecordError) as err:
        list(iter_records(path, policy=policy))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}, line 2: invalid JSON")
    assert message.endswith(f"Use --on-error skip to write bad records to {rejects} and continue")
    assert (err.value.path, err.value.location) == (str(path), "line 2")
    assert not rejects.exists() and policy.count == 0 and policy.path is None


def test_on_error_is_read_by_the_factory_only(tmp_path: Path) -> None:
    assert RecordPolicy.for_run(RunOptions(on_error="skip"), tmp_path / "r").skip
    assert not RecordPolicy.for_run(RunOptions(), tmp_path / "r").skip
    with pytest.raises(DeitaError, match=r"unknown on_error 'ignore' \(expected one of fail, skip\)"):
        RecordPolicy.for_run(SimpleNamespace(on_error="ignore"), tmp_path / "r")


def test_hints_name_the_running_interface_and_say_when_it_cannot_skip(tmp_path: Path) -> None:
    rejects = rejects_path_for(tmp_path / "out.jsonl")
    assert RecordPolicy.for_run(RunOptions(), rejects).hint("in.jsonl") == (
        f"Use {API_SWITCH} to write bad records to {rejects} and continue")
    cannot = RecordPolicy.failing(switch=None, who="`deita report`").hint("sel.jsonl")
    assert cannot == "`deita report` stops at bad records (it cannot skip them); `deita validate sel.jsonl` lists every one"
    assert "--" not in cannot and "<output>" not in RecordPolicy.failing().hint("x")


def test_kinds_are_a_closed_set() -> None:
    policy = RecordPolicy.skipping(None)
    with pytest.raises(ValueError, match="unknown reject kind 'typo'"):
        policy.set_aside(0, "line 1", "typo", "?", {})
    assert {"parse", "schema", "turns", "encoding", "tokenizer", "server", "empty"} <= set(KINDS)
    assert problem_kind("the array is not closed (is the file cut off?)") == "parse"
    assert problem_kind("'chosen' is empty") == "empty"


def test_set_aside_writes_under_fail_and_counting_only_writes_nothing(tmp_path: Path) -> None:
    rejects = tmp_path / "e.jsonl.rejects.jsonl"
    with RecordPolicy(False, rejects, keep_failures=True) as policy:
        policy.set_aside(3, "line 4", "model", "the evolution stayed unchanged", {"id": 3})
        rows = policy.rows_file()  # readable while the run goes on (select's report reads it)
        assert rows is not None and json.loads(rows.read_text())["index"] == 3
        assert not rejects.exists()  # moved into place only when the run ends well
    assert json.loads(rejects.read_text())["kind"] == "model" and policy.path == rejects
    with RecordPolicy.skipping(tmp_path / "dry.jsonl", write=False) as dry:
        dry.reject("in.jsonl", 0, "line 1", "invalid JSON: x", "{x")
    assert dry.count == 1 and not (tmp_path / "dry.jsonl").exists() and dry.path is None


def test_a_stale_rejects_file_goes_only_after_a_clean_run(tmp_path: Path) -> None:
    stale = tmp_path / "o.jsonl.rejects.jsonl"
    stale.write_text("old\n")
    with pytest.raises(DeitaError), RecordPolicy.skipping(stale):
        raise DeitaError("a path check failed before any work")
    assert stale.read_text() == "old\n"  # never removed before the run's checks passed
    with RecordPolicy.skipping(stale):
        pass
    assert not stale.exists()


def test_the_rejects_file_appears_only_when_the_run_ends_well(tmp_path: Path) -> None:
    """Rows go to a data/atomic.py temporary file: moved into place at the end, removed on an error or an
    interrupt (an earlier rejects file is left as it was), so a killed skip run leaves no partial file."""
    rejects = tmp_path / "o.jsonl.rejects.jsonl"
    rejects.write_text("earlier run\n")
    for stop in (DeitaError("the disk is full"), KeyboardInterrupt()):
        with pytest.raises(type(stop)), RecordPolicy.skipping(rejects) as policy:
            policy.reject("in.jsonl", 0, "line 1", "invalid JSON: x", "{x")
            temp = policy.rows_file()
            assert temp is not None and temp.exists() and atomic.target_of(temp) == rejects  # registered
            raise stop
        assert not temp.exists() and rejects.read_text() == "earlier run\n"
        assert [p.name for p in tmp_path.iterdir()] == [rejects.name]
    with RecordPolicy.skipping(rejects) as policy:
        policy.reject("in.jsonl", 1, "line 2", "invalid JSON: y", "{y")
    assert json.loads(rejects.read_text())["location"] == "line 2" and policy.rows_file() == rejects
    assert [p.name for p in tmp_path.iterdir()] == [rejects.name]
    # failed LLM items are the run's results: an error that names them keeps them, an interrupt does not
    with pytest.raises(DeitaError), RecordPolicy(False, rejects, keep_failures=True) as policy:
        policy.set_aside(0, "line 1", "server", "no answer", {"id": 0})
        raise DeitaError("every one of the 1 items failed")
    assert json.loads(rejects.read_text())["kind"] == "server"
    with pytest.raises(KeyboardInterrupt), RecordPolicy(False, rejects, keep_failures=True) as policy:
        policy.set_aside(0, "line 1", "model", "empty answer", {"id": 0})
        raise KeyboardInterrupt
    assert json.loads(rejects.read_text())["kind"] == "server"
    assert [p.name for p in tmp_path.iterdir()] == [rejects.name]


def test_no_on_error_branch_outside_the_policy() -> None:
    """The `on_error` setting is read in one place: no comparison or pass-through elsewhere in src/."""
    src = Path(__file__).resolve().parents[2] / "src" / "deita"
    pattern = re.compile(r"on_error\s*(==|!=|\bin\b|\bnot in\b)|on_error=(?!\")")
    found = [f"{path.relative_to(src)}:{number}" for path in src.rglob("*.py") if path.name != "policy.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
