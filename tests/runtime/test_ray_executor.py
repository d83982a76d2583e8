"""The Ray executor on a real local cluster (2 CPU workers, tiny model) against the local executor.

Same order and values as the local executor, a worker killed mid-run, and a driver-side failure resumed
without recomputing the shards that were already finished.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from deita.data.io import iter_records
from deita.data.records import Turn
from deita.embedding.embedder import EmbedConfig
from deita.embedding.run import embed_file
from deita.errors import DeitaError
from deita.runtime.options import RunOptions
from deita.runtime.ray import RayExecutor, decode_requests, encode_requests, import_ray
from deita.runtime.runner import run_stage
from deita.runtime.shards import shard_key
from deita.runtime.sinks import RecordSink
from deita.scoring.run import score_file
from deita.scoring.scorer import ScoreConfig, ScoreStage

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

# The probe stage below is defined here, a module Ray workers cannot import: ship it by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

N_RECORDS = 40
SHARD_SIZE = 4  # 10 shards
RECORD = re.compile(r"record (\d+):")


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sharegpt_file(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    words = ["the", "a", "data", "model", "learn", "quick", "brown", "fox", "sea", "poem", "code", "python", "list", "sort", "explain", "why", "how"]
    lines = []
    for i in range(N_RECORDS):
        conversations = []
        for turn in range(1 + i % 3):
            question = " ".join(rng.choice(words, size=int(rng.integers(3, 30))))
            answer = " ".join(rng.choice(words, size=int(rng.integers(1, 60))))
            conversations += [{"from": "human", "value": f"record {i}: turn {turn}: {question}"},
                              {"from": "gpt", "value": answer}]
        lines.append(json.dumps({"id": f"r{i}", "conversations": conversations}))
    path = tmp_path_factory.mktemp("ray-data") / "sharegpt.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


class ProbeStage(ScoreStage):
    """Scoring that logs each shard it computes and can kill its worker, or fail, on a chosen record."""

    def __init__(self, config: ScoreConfig, calls: Path, crash_on: int | None = None, fail_on: int | None = None,
                 marker: Path | None = None) -> None:
        super().__init__(config)
        self.calls, self.crash_on, self.fail_on, self.marker = str(calls), crash_on, fail_on, str(marker)

    def load_worker(self):
        inner = super().load_worker()
        calls, crash_on, fail_on, marker = self.calls, self.crash_on, self.fail_on, self.marker

        def worker(turns):
            records = sorted({int(RECORD.match(t.instruction).group(1)) for t in turns})
            if crash_on in records and not os.path.exists(marker):
                Path(marker).write_text("crashed")
                os._exit(1)  # the worker process dies with this shard in flight
            if fail_on in records:
                time.sleep(3)  # let the shards finished meanwhile reach the driver, which saves them
                raise RuntimeError(f"probe failure on record {fail_on}")
            result = inner(turns)
            Path(calls, f"{uuid.uuid4().hex}.json").write_text(json.dumps(records))
            return result

        return worker


def computed_shards(calls: Path) -> list[int]:
    return sorted(json.loads(p.read_text())[0] // SHARD_SIZE for p in calls.glob("*.json"))


def shard_keys(stage: ScoreStage, data: Path) -> list[str]:
    """Each shard's cache key, named as the runner names it (shards of SHARD_SIZE records, in file order)."""
    records = list(iter_records(data))
    keys = []
    for start in range(0, len(records), SHARD_SIZE):
        batch = [stage.requests(record) for record in records[start:start + SHARD_SIZE]]
        keys.append(shard_key([q for qs in batch for q in qs], np.array([len(qs) for qs in batch])))
    return keys


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_scores(local: list[dict], remote: list[dict], field: str = "quality_scores") -> None:
    assert len(local) == len(remote) == N_RECORDS
    for a, b in zip(local, remote, strict=True):
        assert a["id"] == b["id"] and a["conversations"] == b["conversations"]
        np.testing.assert_allclose(b[field], a[field], rtol=0, atol=1e-5)


def run_probe(stage, data: Path, output: Path, options: RunOptions):
    sink = RecordSink(output, lambda rows: {"quality_scores": [float(s) for s in rows]})
    return run_stage(stage, data, sink, options, options.cache_dir)


@pytest.fixture(scope="module")
def local_scores(tiny_llama, sharegpt_file, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("local") / "scored.jsonl"
    score_file(sharegpt_file, out, ScoreConfig(type="quality", model=str(tiny_llama), device="cpu"),
               RunOptions(shard_size=SHARD_SIZE, quiet=True))
    return read_jsonl(out)


def test_requests_round_trip_as_json():
    turns = [Turn("q", "a"), Turn("ünïcode \"quotes\"", "")]
    assert decode_requests(encode_requests(turns)) == turns
    assert all(isinstance(t, Turn) for t in decode_requests(encode_requests(turns)))
    assert decode_requests(encode_requests(["a text", "b"])) == ["a text", "b"]
    assert json.loads(encode_requests(turns))["kind"] == "turns"
    with pytest.raises(DeitaError, match="Turn or str requests only, not dict"):
        encode_requests([{"not": "a request"}])


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(DeitaError, match=r"pip install -e '\.\[ray\]'"):
        import_ray()


@pytest.mark.slow
def test_score_matches_local(ray_cluster, tiny_llama, sharegpt_file, local_scores, tmp_path):
    out = tmp_path / "scored.jsonl"
    report = score_file(sharegpt_file, out, ScoreConfig(type="quality", model=str(tiny_llama), device="cpu"),
                        RunOptions(executor="ray", num_workers=2, shard_size=SHARD_SIZE, quiet=True))
    assert report.summary.records == N_RECORDS and report.summary.shards == N_RECORDS // SHARD_SIZE
    assert_same_scores(local_scores, read_jsonl(out))


@pytest.mark.slow
def test_embed_matches_local(ray_cluster, tiny_llama, sharegpt_file, tmp_path):
    config = EmbedConfig(kind="causal", model=str(tiny_llama), device="cpu", dtype="float32", batch_tokens=2048)
    embed_file(sharegpt_file, tmp_path / "local.npy", config, RunOptions(shard_size=SHARD_SIZE, quiet=True))
    embed_file(sharegpt_file, tmp_path / "ray.npy", config,
               RunOptions(executor="ray", num_workers=2, shard_size=SHARD_SIZE, quiet=True))
    local, remote = np.load(tmp_path / "local.npy"), np.load(tmp_path / "ray.npy")
    assert local.shape == remote.shape and local.shape[0] == N_RECORDS
    np.testing.assert_allclose(remote, local, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_killed_worker_is_restarted_and_its_shard_retried(ray_cluster, tiny_llama, sharegpt_file, local_scores,
                                                          tmp_path):
    calls, marker = tmp_path / "calls", tmp_path / "crashed"
    calls.mkdir()
    config = ScoreConfig(type="quality", model=str(tiny_llama), device="cpu")
    stage = ProbeStage(config, calls, crash_on=13, marker=marker)  # shard 3 kills its worker once
    options = RunOptions(executor="ray", num_workers=2, shard_size=SHARD_SIZE, quiet=True,
                         cache_dir=str(tmp_path / "cache"))
    summary = run_probe(stage, sharegpt_file, tmp_path / "scored.jsonl", options)
    assert marker.exists(), "the worker was never killed"
    assert summary.resumed_shards == 0 and summary.shards == N_RECORDS // SHARD_SIZE
    assert set(computed_shards(calls)) == set(range(N_RECORDS // SHARD_SIZE))
    assert_same_scores(local_scores, read_jsonl(tmp_path / "scored.jsonl"))


@pytest.mark.slow
def test_failed_run_resumes_without_recomputing_finished_shards(ray_cluster, tiny_llama, sharegpt_file,
                                                                local_scores, tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    config = ScoreConfig(type="quality", model=str(tiny_llama), device="cpu")
    options = RunOptions(executor="ray", num_workers=2, shard_size=SHARD_SIZE, quiet=True,
                         cache_dir=str(tmp_path / "cache"))
    output = tmp_path / "scored.jsonl"
    with pytest.raises(DeitaError, match="probe failure on record 37"):
        run_probe(ProbeStage(config, calls, fail_on=37), sharegpt_file, output, options)
    stored = {p.stem for p in (tmp_path / "cache").rglob("*.npz")}
    keys = shard_keys(ProbeStage(config, calls), sharegpt_file)
    assert stored <= set(keys)  # every stored result is one of the shards, named as above
    saved = {shard for shard, key in enumerate(keys) if key in stored}
    assert 0 < len(saved) < N_RECORDS // SHARD_SIZE  # some shards were finished and persisted, the failing one was not
    assert 37 // SHARD_SIZE not in saved
    assert not output.exists()
    for p in calls.glob("*.json"):
        p.unlink()

    summary = run_probe(ProbeStage(config, calls), sharegpt_file, output, options)
    assert summary.resumed_shards == len(saved)
    # Ray runs a task at least once, not exactly once (it retries a task whose worker's socket closed): the
    # distinct shards computed are exactly those not saved, and no saved shard is computed again
    recomputed = set(computed_shards(calls))
    assert not recomputed & saved
    assert recomputed == set(range(N_RECORDS // SHARD_SIZE)) - saved
    assert_same_scores(local_scores, read_jsonl(output))


def test_everything_cached_needs_no_cluster():
    from deita.runtime.shards import ShardResult, ShardTask

    executor = RayExecutor(num_workers=1)
    assert list(executor.run(None, iter([]))) == []
    done = ShardTask(0, "k", [], np.array([1]), result=ShardResult(np.zeros(1), np.array([1])))
    assert list(executor.run(None, iter([done]))) == [(done, None)]
