"""Resume: a rerun pays for no finished shard again; a crash loses only the shards in flight."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import write_jsonl
from chat_server import seed_records, seeds_in
from evol_helpers import read_jsonl, run_evol, run_rank

from deita.errors import DeitaError


def stored_seeds(cache) -> set[str]:
    """The seeds whose outcomes are in finished shard files."""
    seeds = set()
    for path in cache.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            outcome = json.loads(line)
            seeds.add(f"seed-{outcome['row']['index']:02d}")
    return seeds


def test_a_rerun_makes_no_calls_and_writes_the_same_files(chat_server, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_records(7))
    first, _, _ = run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", concurrency=3, shard_size=2)
    evolved_bytes = (tmp_path / "evolved.jsonl").read_bytes()
    calls = len(chat_server.options.requests)
    assert calls == 35 and first.summary.shards == 4
    again, _, _ = run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", concurrency=3, shard_size=2)
    assert len(chat_server.options.requests) == calls, "no call for a finished shard"
    assert (tmp_path / "evolved.jsonl").read_bytes() == evolved_bytes
    assert again.summary.resumed_shards == 4 and again.summary.usage.calls == 0
    assert again.summary.earlier.total_tokens == first.summary.usage.total_tokens > 0
    lines = again.lines()
    assert "resumed 4 of 4 shards from the cache: no calls made for them" in lines
    assert lines[-2] == "cost of this run: 0 calls, 0 prompt + 0 completion tokens = 0 tokens"
    assert lines[-1].startswith("cost of the reused results when they ran: 35 calls")

    run_rank(chat_server, tmp_path / "evolved.jsonl", tmp_path / "ranked.jsonl", shard_size=3)
    calls = len(chat_server.options.requests)
    ranked = (tmp_path / "ranked.jsonl").read_bytes()
    run_rank(chat_server, tmp_path / "evolved.jsonl", tmp_path / "ranked.jsonl", shard_size=3)
    assert len(chat_server.options.requests) == calls and (tmp_path / "ranked.jsonl").read_bytes() == ranked


def test_after_a_crash_finished_shards_are_not_paid_for_again(chat_server, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_records(8))
    output, cache = tmp_path / "evolved.jsonl", tmp_path / "evolved.jsonl.cache"
    chat_server.options.fault_when = lambda body: "401" if "seed-06" in str(body["messages"]) else None
    with pytest.raises(DeitaError, match="HTTP 401"):
        run_evol(chat_server, seeds, output, concurrency=2, shard_size=2)
    assert not output.exists(), "no partial output"
    saved = stored_seeds(cache)
    assert {"seed-00", "seed-01"} <= saved and "seed-06" not in saved
    chat_server.options.reset()
    report, rows, rejects = run_evol(chat_server, seeds, output, concurrency=2, shard_size=2)
    asked = {seed for prompt in chat_server.options.prompts() for seed in seeds_in(prompt)}
    assert not asked & saved, "finished shards made no calls"
    assert asked | saved == {f"seed-{i:02d}" for i in range(8)}
    assert len(rows) == 8 and not rejects and report.summary.resumed_shards == len(saved) // 2
    _, clean_rows, _ = run_evol(chat_server, seeds, tmp_path / "clean.jsonl", concurrency=2, shard_size=2)
    assert rows == clean_rows


def test_a_killed_command_resumes_without_paying_twice(chat_server, tmp_path):
    """kill -9 mid-run: the rerun asks only for the seeds of unfinished shards and writes the full output."""
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_records(8))
    output, cache = tmp_path / "evolved.jsonl", tmp_path / "evolved.jsonl.cache"
    slow = {f"seed-{i:02d}" for i in range(4, 8)}
    chat_server.options.delay = 3.0
    chat_server.options.fault_when = lambda body: "timeout" if seeds_in(str(body["messages"])) & slow else None
    deita = shutil.which("deita") or str(Path(sys.executable).parent / "deita")
    process = subprocess.Popen([deita, "evol", "complexity", str(seeds), "-o", str(output), "--base-url",
                                chat_server.url, "--served-model", "fake", "--concurrency", "1", "--timeout", "5",
                                "--shard-size", "2", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(stored_seeds(cache)) < 4:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    saved = stored_seeds(cache)
    assert saved == {"seed-00", "seed-01", "seed-02", "seed-03"} and not output.exists()
    chat_server.options.reset()
    report, rows, _ = run_evol(chat_server, seeds, output, concurrency=1, shard_size=2)
    asked = {seed for prompt in chat_server.options.prompts() for seed in seeds_in(prompt)}
    assert asked == slow and len(chat_server.options.requests) == 20
    assert report.summary.resumed_shards == 2 and [row["index"] for row in rows] == list(range(8))


def test_transient_rejects_are_asked_again_on_a_rerun_and_only_they(chat_server, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_records(4))
    chat_server.options.fault_when = lambda body: "500" if "seed-02" in str(body["messages"]) else None
    report, rows, rejects = run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", shard_size=4)
    assert [row["index"] for row in rows] == [0, 1, 3] and rejects[0]["index"] == 2
    assert rejects[0]["reason"] == ("step 1 (add_constraint): no answer after 3 tries (HTTP 500: injected 500) "
                                    "(may succeed on a rerun)")
    assert "rejected 1 (0 bad input, 1 server (the server gave no answer); 1 of them may succeed on a rerun)" \
        in "\n".join(report.lines())
    assert rejects[0]["kind"] == "server"
    chat_server.options.reset()
    again, rows, rejects = run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", shard_size=4)
    assert {s for p in chat_server.options.prompts() for s in seeds_in(p)} == {"seed-02"}
    assert len(chat_server.options.requests) == 5 and [row["index"] for row in rows] == [0, 1, 2, 3]
    assert not rejects and again.summary.usage.calls == 5


def test_final_rejects_are_kept_and_a_damaged_shard_is_redone(chat_server, tmp_path, caplog):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_records(4))
    chat_server.options.fault_when = lambda body: "refuse" if "seed-01" in str(body["messages"]) else None
    run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", shard_size=2)
    calls = len(chat_server.options.requests)
    _, rows, rejects = run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", shard_size=2)
    assert len(chat_server.options.requests) == calls, "a refusal after every try is final: not asked again"
    assert [r["index"] for r in rejects] == [1] and "the model refused" in rejects[0]["reason"]
    shard = min((tmp_path / "evolved.jsonl.cache").rglob("*.jsonl"))
    shard.write_text(shard.read_text()[:50])
    _, rows_again, _ = run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", shard_size=2)
    assert rows_again == rows and len(chat_server.options.requests) > calls
    assert any("is damaged" in r.getMessage() for r in caplog.records)


def test_changed_prompts_or_model_never_reuse_answers(chat_server, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_records(2))
    run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", steps=2)
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("complexity:\n  system: Be brief.\n")
    calls = len(chat_server.options.requests)
    run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", steps=2, prompts=str(prompts))
    assert len(chat_server.options.requests) == calls + 4
    assert chat_server.options.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief."}
    rows = read_jsonl(tmp_path / "evolved.jsonl")
    assert len(rows) == 2
