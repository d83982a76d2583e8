"""The composed pass: reads of the pool counted, nothing under OUTPUT.work/ a copy of records, resume after
a crash in the pass (in-process, and `kill -9` of the CLI) to the same bytes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from builders import sharegpt, write_jsonl

from deita.data.policy import RecordPolicy
from deita.data.records import Record
from deita.passes.columns import Columns, ColumnsWriter
from deita.passes.compute import Job, PassInput, compute_columns
from deita.runtime.options import RunOptions
from deita.runtime.stage import WorkResult
from deita.scoring.lengths import LengthStage, length_fields

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample.jsonl"


def select(pool: Path, output: Path, *more: str, env: dict[str, str] | None = None,
           wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    command = [sys.executable, "-m", "deita.cli", "select", str(pool), "-o", str(output), "--preset", "offline",
               "--sort-key", "instruction_lengths,response_lengths", "-q", *more]
    environment = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One offline select of the shipped sample, with reads counted."""
    output = tmp_path_factory.mktemp("sample") / "sel.jsonl"
    return output, select(SAMPLE, output, "--size", "20", env={"DEITA_COUNT_READS": "1"})


def test_pool_read_at_most_three_times_and_no_other_file_of_records(sample_run):
    output, done = sample_run
    reads = re.findall(r"deita reads: (\d+) (.+)", done.stderr)
    assert reads == [(reads[0][0], str(SAMPLE))] and int(reads[0][0]) <= 3, done.stderr
    # the report's read of the pool keeps the selected records: none fetched by offset
    assert not re.findall(r"deita fetched: (\d+) records of (.+)", done.stderr)
    assert len(output.read_text().splitlines()) == 20


OPENS = """
import atexit, os, runpy, sys
pool, opens = os.path.realpath(sys.argv[1]), []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and os.path.realpath(args[0]) == pool:
        opens.append(args[1])
sys.addaudithook(hook)
atexit.register(lambda: print(f"opens: {len(opens)}", file=sys.stderr))
sys.argv = ["deita", *sys.argv[2:]]
runpy.run_module("deita.cli", run_name="__main__")
"""


@pytest.mark.parametrize("report", ["--report", "--no-report"])
def test_every_open_of_the_pool_counts_the_manifest_hash_included(report, tmp_path):
    """Python's audit hook sees every open of the pool file, whatever opens it: the manifest's sha256 comes
    from the pass's reads, the selected records from the report's read or by offset, and nothing peeks."""
    import hashlib

    output = tmp_path / "sel.jsonl"
    command = [sys.executable, "-c", OPENS, str(SAMPLE), "select", str(SAMPLE), "-o", str(output), "--preset",
               "offline", "--size", "20", "-q", report]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "DEITA_COUNT_READS": "1"})
    assert done.returncode == 0, done.stderr
    assert int(re.findall(r"opens: (\d+)", done.stderr)[-1]) == 3, done.stderr
    fetched = re.findall(r"deita fetched: (\d+) records of (.+)", done.stderr)
    assert fetched == ([("20", str(SAMPLE))] if report == "--no-report" else [])
    manifest = json.loads(output.with_name("sel.jsonl.manifest.json").read_text())
    assert manifest["input"]["sha256"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()


def test_nothing_under_the_work_folder_is_a_copy_of_records(sample_run):
    output, _ = sample_run
    work = output.with_name(output.name + ".work")
    first = json.loads(SAMPLE.read_text().splitlines()[0])["conversations"][1]["value"]
    files = [path for path in work.rglob("*") if path.is_file()]
    assert files and not (work / "cache").exists()  # the columns are the cache now
    assert not (work / "bigram_counts.npy").exists()  # the signals' table served the compute read only
    for path in files:
        assert first.encode() not in path.read_bytes(), path
    assert {path.name for path in files} >= {"embeddings.npy", "columns.json", "instruction_lengths.values.npy",
                                             "filter_stats.json"}


def test_a_rerun_reuses_the_finished_columns_without_reading_the_pool_again(sample_run, tmp_path):
    output, _ = sample_run
    again = select(SAMPLE, output, "--size", "20", env={"DEITA_COUNT_READS": "1"})
    assert "reused the finished columns" in again.stdout
    reads = re.findall(r"deita reads: (\d+) (.+)", again.stderr)
    assert reads == [("1", str(SAMPLE))], again.stderr  # the report's read; the selected ones by offset


class CrashAfter:
    """Length scores that stop the process (as a kill would) after `shards` shards: a real stage's worker."""

    name = "lengths"

    def __init__(self, shards: int) -> None:
        self.stage, self.left = LengthStage(), shards

    def fingerprint(self):
        return self.stage.fingerprint()

    def requests(self, record: Record):
        return self.stage.requests(record)

    def load_worker(self):
        measure = self.stage.load_worker()

        def worker(requests) -> WorkResult:
            if self.left == 0:
                raise KeyboardInterrupt
            self.left -= 1
            return measure(requests)

        return worker


def test_a_crash_in_the_pass_resumes_from_the_finished_shards(tmp_path):
    options = RunOptions(shard_size=16, quiet=True)
    source = PassInput(SAMPLE, None, RecordPolicy.failing())
    with pytest.raises(KeyboardInterrupt):
        compute_columns(source, [Job(CrashAfter(3), length_fields)], options, tmp_path / "cache",
                        ColumnsWriter(tmp_path / "crashed"))
    assert not (tmp_path / "crashed").exists()  # no half columns
    resumed = Job(LengthStage(), length_fields)
    compute_columns(source, [resumed], options, tmp_path / "cache", ColumnsWriter(tmp_path / "resumed"))
    clean = Job(LengthStage(), length_fields)
    compute_columns(source, [clean], options, tmp_path / "fresh-cache", ColumnsWriter(tmp_path / "clean"))
    assert resumed.summary.resumed_shards == 3 and clean.summary.resumed_shards == 0
    assert resumed.summary.shards == clean.summary.shards == 8  # 120 records, 16 a shard


def test_columns_of_a_resumed_pass_equal_a_clean_pass(tmp_path):
    options = RunOptions(shard_size=16, quiet=True)
    source = PassInput(SAMPLE, None, RecordPolicy.failing())
    with pytest.raises(KeyboardInterrupt):
        compute_columns(source, [Job(CrashAfter(2), length_fields)], options, tmp_path / "cache",
                        ColumnsWriter(tmp_path / "crashed"))
    for name, cache in (("resumed", "cache"), ("clean", "fresh")):
        writer = ColumnsWriter(tmp_path / name)
        compute_columns(source, [Job(LengthStage(), length_fields)], options, tmp_path / cache, writer)
        writer.finish({})
    resumed, clean = Columns(tmp_path / "resumed"), Columns(tmp_path / "clean")
    for name in ("row_index.npy", "spans.npy", "response_chars.npy", "instruction_lengths.values.npy",
                 "response_lengths.offsets.npy"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name
    assert resumed.lists("response_lengths") == clean.lists("response_lengths")
    assert np.asarray(resumed.row_index).tolist() == list(range(120))


@pytest.mark.slow
def test_kill_9_in_the_pass_then_rerun_gives_the_same_bytes(tmp_path):
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    records = [sharegpt(("human", f"question {i}: " + " ".join(words[(i + j) % 12] for j in range(40 + i % 60))),
                        ("gpt", f"answer {i} " + " ".join(words[(i * j) % 12] for j in range(30 + i % 90))),
                        id=f"r{i}") for i in range(6000)]
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    config = tmp_path / "run.yaml"
    config.write_text("run: {shard_size: 50}\n")
    killed = tmp_path / "killed" / "sel.jsonl"
    process = select(pool, killed, "--size", "100", "--config", str(config), wait=False)
    index = tmp_path / "killed" / "sel.jsonl.work" / "cache" / "embed"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if any(path.stat().st_size for path in index.glob("*/index.jsonl")):
            break
        time.sleep(0.005)
    interrupted = process.poll() is None
    if interrupted:
        process.send_signal(signal.SIGKILL)
    process.wait()
    again = select(pool, killed, "--size", "100", "--config", str(config))
    if interrupted:
        assert "shards resumed from cache" in again.stdout, again.stdout
    clean = tmp_path / "clean" / "sel.jsonl"
    select(pool, clean, "--size", "100", "--config", str(config))
    assert killed.read_bytes() == clean.read_bytes()
    assert (tmp_path / "killed" / "sel.jsonl.work" / "embeddings.npy").read_bytes() == \
        (tmp_path / "clean" / "sel.jsonl.work" / "embeddings.npy").read_bytes()


@pytest.mark.parametrize("strategy", ["length", "score"])
def test_strategies_on_the_columns_pick_what_filter_picks_on_the_scored_file(strategy, tmp_path):
    from builders import scored_pool

    from deita.selection.config import FilterConfig
    from deita.selection.run import filter_file
    from deita.workflow import SelectConfig, run_select

    config = SelectConfig.build({"preset": "offline", "filter": {"strategy": strategy, "size": 15},
                                 "report": {"write": False}})
    output = tmp_path / "sel.jsonl"
    run_select(SAMPLE, output, config)
    refiltered = tmp_path / "refiltered.jsonl"
    filter_file(scored_pool(output), refiltered, FilterConfig(strategy=strategy, size=15))
    assert output.read_bytes() == refiltered.read_bytes()
