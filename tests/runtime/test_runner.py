"""One stage over one file: a single read, results paired with their own records, resume by content,
damaged cache shards recomputed, bad records to the rejects writer, streamed `.npy` output."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil

import numpy as np
import pytest
from builders import sharegpt, write_jsonl

from deita.data.io import RecordPolicy, UnwritableRecord
from deita.errors import DeitaError, RecordError
from deita.runtime.batching import plan_batches
from deita.runtime.options import RunOptions
from deita.runtime.progress import ProgressBar
from deita.runtime.runner import run_stage
from deita.runtime.shards import LocalExecutor
from deita.runtime.sinks import ArraySink, RecordSink
from deita.runtime.stage import RecordProblem, WorkResult, check_text


class LengthStage:
    """A model-free stage: one request per turn, value = instruction length; counts computed requests."""

    name = "lengths"

    def __init__(self, crash_at: int | None = None, version: int = 1) -> None:
        self.calls = 0
        self.computed = 0
        self.crash_at = crash_at
        self.version = version

    def fingerprint(self):
        return {"stage": "lengths", "version": self.version}

    def requests(self, record):
        for turn in record.turns:
            check_text(turn.instruction, "the instruction")
            if "REFUSE" in turn.instruction:
                raise RecordProblem("the stage refuses this record")
        return list(record.turns)

    def load_worker(self):
        def worker(turns):
            self.calls += 1
            if self.crash_at is not None and self.calls == self.crash_at:
                raise RuntimeError("worker crashed")
            self.computed += len(turns)
            return WorkResult(np.array([len(t.instruction) for t in turns], dtype=np.float64), {"seen": len(turns)})
        return worker


def pool(n: int, start: int = 0) -> list[dict]:
    """Records in the shapes real ShareGPT has: role aliases, a chat opening with the assistant, follow-ups."""
    records = []
    for i in range(start, start + n):
        messages = [("gpt", f"continued {i}")] if i % 4 == 0 else []
        messages += [("human" if i % 2 else "user", "q" * (i + 1)), ("chatgpt" if i % 3 == 0 else "gpt", f"a{i}")]
        if i % 3 == 0:
            messages += [("human", f"follow-up {i}"), ("gpt", "ok")]
        records.append(sharegpt(*messages, id=f"r{i}"))
    return records


def run(stage, data, out, cache, options=RunOptions(shard_size=2, quiet=True), policy=None):
    sink = RecordSink(out, lambda rows: {"lengths": [float(v) for v in rows]})
    return run_stage(stage, data, sink, options, cache, policy=policy)


def expected(records):
    from deita.data.formats import parse_turns

    return [[float(len(t.instruction)) for t in parse_turns(r, "sharegpt")[0]] for r in records]


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_crash_then_resume_recomputes_only_missing_shards(tmp_path):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(10))
    with pytest.raises(RuntimeError):
        run(LengthStage(crash_at=3), data, tmp_path / "out.jsonl", tmp_path / "cache")
    assert not (tmp_path / "out.jsonl").exists()
    rerun = LengthStage()
    summary = run(rerun, data, tmp_path / "out.jsonl", tmp_path / "cache")
    assert rerun.calls == 3 and summary.resumed_shards == 2 and summary.shards == 5
    out = read(tmp_path / "out.jsonl")
    assert [r["lengths"] for r in out] == expected(pool(10))
    assert [{k: v for k, v in r.items() if k != "lengths"} for r in out] == pool(10)
    assert summary.requests == sum(map(len, expected(pool(10))))


def test_changed_fingerprint_does_not_reuse_stale_shards(tmp_path):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(4))
    run(LengthStage(version=1), data, tmp_path / "a.jsonl", tmp_path / "cache")
    changed = LengthStage(version=2)
    summary = run(changed, data, tmp_path / "b.jsonl", tmp_path / "cache")
    assert changed.calls == 2 and summary.resumed_shards == 0


def test_moved_input_and_appended_records_reuse_finished_shards(tmp_path):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(6))
    run(LengthStage(), data, tmp_path / "a.jsonl", tmp_path / "cache")
    moved = tmp_path / "elsewhere" / "renamed.json"
    moved.parent.mkdir()
    moved.write_text(json.dumps(pool(6)))  # other name, other folder, other file type: same records
    again = LengthStage()
    assert run(again, moved, tmp_path / "b.jsonl", tmp_path / "cache").resumed_shards == 3 and again.calls == 0
    grown = write_jsonl(tmp_path / "grown.jsonl", pool(6) + pool(3, start=100))
    third = LengthStage()
    summary = run(third, grown, tmp_path / "c.jsonl", tmp_path / "cache")
    assert summary.resumed_shards == 3 and third.calls == 2
    assert [r["lengths"] for r in read(tmp_path / "c.jsonl")] == expected(pool(6) + pool(3, start=100))


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped", "unindexed"])
def test_damaged_cache_shard_is_reported_in_one_line_and_recomputed(tmp_path, caplog, damage):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(6))
    run(LengthStage(), data, tmp_path / "a.jsonl", tmp_path / "cache")
    shard = sorted((tmp_path / "cache").rglob("*.npz"))[1]
    content = shard.read_bytes()
    requests_in_shard = len(np.load(shard)["values"])
    if damage == "empty":
        shard.write_bytes(b"")
    elif damage == "truncated":
        shard.write_bytes(content[: len(content) // 2])
    elif damage == "flipped":
        shard.write_bytes(content[:200] + bytes([content[200] ^ 0xFF]) + content[201:])
    else:
        index = shard.parent / "index.jsonl"
        index.write_text("".join(line + "\n" for line in index.read_text().splitlines() if shard.stem not in line))
    again = LengthStage()
    with caplog.at_level(logging.WARNING, logger="deita"):
        summary = run(again, data, tmp_path / "b.jsonl", tmp_path / "cache")
    if damage != "unindexed":
        warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
        assert len(warnings) == 1 and shard.name in warnings[0] and "\n" not in warnings[0]
    assert summary.resumed_shards == 2 and again.computed == requests_in_shard
    assert (tmp_path / "b.jsonl").read_text() == (tmp_path / "a.jsonl").read_text()


def test_each_record_gets_its_own_results_in_input_order(tmp_path):
    """No second read: the sink gets the very records the results were computed from."""
    records = pool(9)
    data = write_jsonl(tmp_path / "pool.jsonl", records)
    out = tmp_path / "out.jsonl"
    run(LengthStage(), data, out, tmp_path / "cache", RunOptions(shard_size=4, quiet=True))
    for record, written in zip(records, read(out), strict=True):
        assert written["id"] == record["id"]
    assert [r["lengths"] for r in read(out)] == expected(records)


def test_bad_records_from_reader_stage_and_sink_all_reach_rejects(tmp_path):
    records = pool(5)
    records[1]["conversations"][0]["value"] = "REFUSE me"
    lines = [json.dumps(r) for r in records]
    lines.insert(3, "{broken json")
    lines.append(json.dumps(sharegpt(("human", "lone \ud800 surrogate"), ("gpt", "x"))).replace("\\\\ud800", "\\ud800"))
    data = tmp_path / "pool.jsonl"
    data.write_text("\n".join(lines) + "\n")

    class BigIntSink(RecordSink):
        def write(self, record, rows):
            if record.raw.get("id") == "r4":
                raise UnwritableRecord("'id' cannot be held")
            super().write(record, rows)

    sink = BigIntSink(tmp_path / "out.jsonl", lambda rows: {"lengths": rows.tolist()})
    with RecordPolicy.skipping(tmp_path / "rejects.jsonl") as policy:
        summary = run_stage(LengthStage(), data, sink, RunOptions(shard_size=2, quiet=True), tmp_path / "c",
                            policy=policy)
    reasons = {r["location"]: r["reason"] for r in read(tmp_path / "rejects.jsonl")}
    assert reasons["line 2"] == "the stage refuses this record"
    assert "invalid JSON" in reasons["line 4"]
    assert "'id' cannot be held" in reasons["line 6"]
    assert "not valid Unicode" in reasons["line 7"]
    assert [r["id"] for r in read(tmp_path / "out.jsonl")] == ["r0", "r2", "r3"]
    assert summary.records + summary.rejected == len(lines) == 7


def test_without_rejects_writer_the_first_bad_record_stops_with_file_and_line(tmp_path):
    records = pool(3)
    records[2]["conversations"][0]["value"] = "REFUSE"
    data = write_jsonl(tmp_path / "pool.jsonl", records)
    with pytest.raises(RecordError, match=r"pool.jsonl, line 3: the stage refuses this record"):
        run(LengthStage(), data, tmp_path / "out.jsonl", tmp_path / "cache")
    assert not (tmp_path / "out.jsonl").exists()


def test_array_sink_streams_a_memory_mappable_npy(tmp_path):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(7))

    class TwoColumns(LengthStage):
        def requests(self, record):
            return [record.turns[0].instruction]

        def load_worker(self):
            return lambda texts: WorkResult(np.array([[len(t), 1.5] for t in texts], dtype=np.float32))

    sink = ArraySink(tmp_path / "emb.npy", "float16")
    run_stage(TwoColumns(), data, sink, RunOptions(shard_size=3, quiet=True), tmp_path / "cache")
    array = np.load(tmp_path / "emb.npy", mmap_mode="r")
    assert array.shape == (7, 2) and array.dtype == np.float16
    np.testing.assert_array_equal(array[:, 0], [len("q" * (i + 1)) for i in range(7)])


def test_no_usable_records_is_an_error(tmp_path):
    data = tmp_path / "pool.jsonl"
    data.write_text("{bad\n")
    with RecordPolicy.skipping(tmp_path / "r.jsonl") as policy, pytest.raises(DeitaError, match="no usable records"):
        run(LengthStage(), data, tmp_path / "out.jsonl", tmp_path / "cache", policy=policy)


def test_progress_lines_when_not_a_terminal():
    stream = io.StringIO()
    with ProgressBar("scoring", total=1000, total_unit="bytes", interval=0.0, stream=stream) as bar:
        bar.advance(10, position=250)
        bar.advance(10, position=500)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("scoring: 20 records,") and "records/s" in lines[1]
    assert "50 % of the input" in lines[1] and "ETA" in lines[1]


def padding_fraction(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of computed positions that are padding."""
    real = sum(int(lengths[b].sum()) for b in batches)
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1.0 - real / padded if padded else 0.0


def test_plan_batches_respects_budget_and_covers_everything():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 2048, size=500)
    batches = plan_batches(lengths, batch_tokens=8192)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= 8192
    assert padding_fraction(lengths, batches) < 0.1


def test_local_executor_passes_cached_tasks_through(tmp_path):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(4))
    run(LengthStage(), data, tmp_path / "a.jsonl", tmp_path / "cache")
    stage = LengthStage()
    summary = run_stage(stage, data, RecordSink(tmp_path / "b.jsonl", lambda rows: {"lengths": rows.tolist()}),
                        RunOptions(shard_size=2, quiet=True), tmp_path / "cache", executor=LocalExecutor())
    assert summary.resumed_shards == 2 and stage.calls == 0
    shutil.rmtree(tmp_path / "cache")


def test_input_replaced_during_the_run_cannot_mix_up_scores(tmp_path):
    """The output pairs each result with the record it was computed from, never with a re-read file."""
    records = pool(8)
    data = write_jsonl(tmp_path / "pool.jsonl", records)

    class Replacing(LengthStage):
        def load_worker(self):
            inner = super().load_worker()

            def worker(turns):
                if self.calls == 0:  # another job replaces the input while we run
                    write_jsonl(tmp_path / "new.jsonl", list(reversed(pool(8, start=50))))
                    os.replace(tmp_path / "new.jsonl", data)
                return inner(turns)
            return worker

    run(Replacing(), data, tmp_path / "out.jsonl", tmp_path / "cache")
    out = read(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == [r["id"] for r in records]
    assert [r["lengths"] for r in out] == expected(records)
