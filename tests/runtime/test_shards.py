"""Resumable sharded execution: a crash mid-run loses nothing, a rerun recomputes only what is missing."""

import numpy as np
import pytest

from deita.data.records import Record, Turn
from deita.runtime.batching import padding_fraction, plan_batches
from deita.runtime.shards import LocalExecutor, ShardStore, compute_shards
from deita.runtime.stage import WorkResult


class Bar:
    def advance(self, records: int) -> None:
        pass


class LengthStage:
    """A model-free stage: one request per turn, value = instruction length; counts worker calls."""

    name = "lengths"

    def __init__(self, crash_at: int | None = None, version: int = 1) -> None:
        self.calls = 0
        self.crash_at = crash_at
        self.version = version

    def fingerprint(self):
        return {"stage": "lengths", "version": self.version}

    def requests(self, record):
        return list(record.turns)

    def load_worker(self):
        def worker(turns):
            self.calls += 1
            if self.crash_at is not None and self.calls == self.crash_at:
                raise RuntimeError("worker crashed")
            return WorkResult(np.array([len(t.instruction) for t in turns], dtype=np.float64), {"seen": len(turns)})
        return worker


def records(n: int):
    return [Record(i, f"line {i + 1}", {}, [Turn("x" * (i + 1), "")] * (1 + i % 3)) for i in range(n)]


def test_crash_then_resume_recomputes_only_missing_shards(tmp_path):
    crashing = LengthStage(crash_at=3)
    store = ShardStore(tmp_path, crashing.fingerprint())
    with pytest.raises(RuntimeError):
        compute_shards(crashing, records(10), store, 2, LocalExecutor(), Bar())
    assert [store.done(i) for i in range(5)] == [True, True, False, False, False]
    rerun = LengthStage()
    summary = compute_shards(rerun, records(10), store, 2, LocalExecutor(), Bar())
    assert rerun.calls == 3 and summary.resumed_shards == 2 and summary.shards == 5
    values = np.concatenate([store.load(i).values for i in range(5)])
    expected = [len(t.instruction) for r in records(10) for t in r.turns]
    np.testing.assert_array_equal(values, expected)
    assert summary.counters["seen"] == len(expected) == summary.requests


def test_changed_fingerprint_does_not_reuse_stale_shards(tmp_path):
    first = ShardStore(tmp_path, LengthStage(version=1).fingerprint())
    compute_shards(LengthStage(version=1), records(4), first, 2, LocalExecutor(), Bar())
    changed = LengthStage(version=2)
    second = ShardStore(tmp_path, changed.fingerprint())
    compute_shards(changed, records(4), second, 2, LocalExecutor(), Bar())
    assert changed.calls == 2 and second.directory != first.directory


def test_plan_batches_respects_budget_and_covers_everything():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 2048, size=500)
    batches = plan_batches(lengths, batch_tokens=8192)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= 8192
    assert padding_fraction(lengths, batches) < 0.1
