"""The CLI through its real entry point: exit codes, messages, resume after kill -9, the whole pipeline."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from deita.testing import sharegpt, write_jsonl

ENTRY = [sys.executable, "-c", "from deita.cli import main; main()"]


def deita(*args, check=True, cwd=None):
    result = subprocess.run([*ENTRY, *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"deita {args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def pool(n: int, long: bool = False) -> list[dict]:
    filler = " and more detail" * (60 if long else 1)
    return [sharegpt(("human", f"question {i}: explain topic {i % 7}{filler}"), ("gpt", f"answer {i}{filler}"),
                     *([("human", f"follow-up {i}"), ("gpt", f"more {i}")] if i % 3 == 0 else []),
                     id=f"r{i}") for i in range(n)]


def test_help_lists_commands():
    out = deita("--help").stdout
    for command in ("validate", "convert", "score", "embed", "filter", "select"):
        assert command in out
    assert "Example" in deita("score", "--help").stdout


def test_validate_reports_problems_with_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", pool(2) + [sharegpt(("robot", "hi"))])
    result = deita("validate", path, check=False)
    assert result.returncode == 1
    assert "bad.jsonl, line 3" in result.stdout and "robot" in result.stdout


def test_score_error_names_file_record_and_fix(tmp_path, tiny_llama):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(pool(1)[0]) + "\n{not json\n")
    result = deita("score", path, "-o", tmp_path / "out.jsonl", "--model", tiny_llama, "-q", check=False)
    assert result.returncode == 1
    assert "bad.jsonl, line 2" in result.stderr and "--on-error skip" in result.stderr
    assert "out.jsonl.rejects.jsonl" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_score_skip_writes_rejects_and_counts_add_up(tmp_path, tiny_llama):
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pool(3)) + "{oops\n"
                    + json.dumps(sharegpt(("human", "a"), ("human", "b"))) + "\n")
    out = tmp_path / "out.jsonl"
    result = deita("score", path, "-o", out, "--model", tiny_llama, "--on-error", "skip", "-q")
    assert "rejected 2 records" in result.stdout
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    rejects = [json.loads(line) for line in Path(str(out) + ".rejects.jsonl").read_text().splitlines()]
    assert len(scored) + len(rejects) == 5
    assert [r["id"] for r in scored] == ["r0", "r1", "r2"]
    assert {r["location"] for r in rejects} == {"line 4", "line 5"}


def test_score_resumes_after_kill_9_with_identical_output(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(600, long=True))
    args = ["score", data, "--model", tiny_llama, "--type", "quality", "--shard-size", "4", "-q"]
    deita(*args, "-o", tmp_path / "full.jsonl")

    out = tmp_path / "resumed.jsonl"
    cache = Path(str(out) + ".cache")
    process = subprocess.Popen([*ENTRY, *map(str, args), "-o", str(out)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cache.rglob("*.npz"))) < 3:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(cache.rglob("*.npz")))
    assert 3 <= finished < 150, "the run must be killed part-way"
    assert not out.exists()
    result = deita(*args, "-o", out)
    assert f"{finished} of 150 shards resumed" in result.stdout
    assert out.read_text() == (tmp_path / "full.jsonl").read_text()


def test_changed_type_does_not_reuse_cache(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(6))
    out = tmp_path / "out.jsonl"
    deita("score", data, "-o", out, "--model", tiny_llama, "--type", "complexity", "-q")
    result = deita("score", data, "-o", out, "--model", tiny_llama, "--type", "quality", "-q")
    assert "resumed" not in result.stdout
    assert "quality_scores" in out.read_text()


def test_score_embed_filter_by_hand(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(30))
    deita("score", data, "-o", tmp_path / "c.jsonl", "--model", tiny_llama, "--type", "complexity", "-q")
    deita("score", tmp_path / "c.jsonl", "-o", tmp_path / "cq.jsonl", "--model", tiny_llama, "--type", "quality", "-q")
    deita("embed", tmp_path / "cq.jsonl", "-o", tmp_path / "emb.npy", "--kind", "causal", "--model", tiny_llama, "-q")
    embeddings = np.load(tmp_path / "emb.npy", mmap_mode="r")
    assert embeddings.shape == (30, 64) and embeddings.dtype == np.float16
    deita("filter", tmp_path / "cq.jsonl", "--embeddings", tmp_path / "emb.npy", "-o", tmp_path / "sel.jsonl",
          "--size", "10", "--threshold", "1.0", "--stats", tmp_path / "stats.json")
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["n_pool"] == 30 and stats["n_selected"] == 10 and stats["strategy"] == "deita"
    assert {"n_examined", "threshold", "seconds"} <= set(stats)
    selected = [json.loads(line) for line in (tmp_path / "sel.jsonl").read_text().splitlines()]
    scored = {r["id"]: r for r in map(json.loads, (tmp_path / "cq.jsonl").read_text().splitlines())}
    finals = [sum(c * q for c, q in zip(r["complexity_scores"], r["quality_scores"])) for r in selected]
    assert finals == sorted(finals, reverse=True)
    assert all(r == scored[r["id"]] for r in selected)


def test_filter_rejects_mismatched_embeddings(tmp_path):
    scored = [{**r, "complexity_scores": [1.0] * (2 if i % 3 == 0 else 1), "quality_scores": [2.0] * (2 if i % 3 == 0 else 1)}
              for i, r in enumerate(pool(5))]
    data = write_jsonl(tmp_path / "s.jsonl", scored)
    np.save(tmp_path / "emb.npy", np.ones((4, 8), dtype=np.float16))
    result = deita("filter", data, "--embeddings", tmp_path / "emb.npy", "-o", tmp_path / "o.jsonl", check=False)
    assert result.returncode == 1 and "has 4 rows but" in result.stderr and "5 records" in result.stderr
    del scored[2]["quality_scores"]
    write_jsonl(data, scored)
    result = deita("filter", data, "--strategy", "score", "-o", tmp_path / "o.jsonl", check=False)
    assert result.returncode == 1 and "line 3" in result.stderr and "quality_scores" in result.stderr


def test_select_offline_end_to_end_and_resume(tmp_path):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(40))
    out = tmp_path / "out" / "selected.jsonl"
    first = deita("select", data, "-o", out, "--size", "8", "--preset", "offline", "-q").stdout
    assert "offline preset" in first and "selected 8 of 40" in first
    config = (tmp_path / "out" / "selected.jsonl.config.yaml").read_text()
    assert "preset: offline" in config and "size: 8" in config
    again = deita("select", data, "-o", out, "--size", "8", "--preset", "offline", "-q").stdout
    assert "shards resumed" in again
    assert len(out.read_text().splitlines()) == 8


def test_select_config_file_unknown_key(tmp_path):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(4))
    (tmp_path / "run.yaml").write_text("filter:\n  treshold: 0.8\n")
    result = deita("select", data, "-o", tmp_path / "o.jsonl", "--config", tmp_path / "run.yaml", check=False)
    assert result.returncode == 1 and "did you mean 'threshold'" in result.stderr


def test_embed_skip_writes_rejects_and_one_row_per_good_record(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pool(4)) + json.dumps(sharegpt(("gpt", "no question"))) + "\n")
    out = tmp_path / "emb.npy"
    result = deita("embed", path, "-o", out, "--on-error", "skip", "-q")
    assert "rejected 1 records" in result.stdout
    assert np.load(out).shape == (4, 384)
    rejects = [json.loads(line) for line in Path(str(out) + ".rejects.jsonl").read_text().splitlines()]
    assert [r["location"] for r in rejects] == ["line 5"] and "no user message" in rejects[0]["reason"]


def test_select_paper_path_with_config_file(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(24))
    (tmp_path / "run.yaml").write_text(
        f"complexity: {{model: {tiny_llama}, max_length: 256}}\nquality: {{model: {tiny_llama}}}\n"
        f"embed: {{kind: causal, model: {tiny_llama}, max_length: 128}}\nfilter: {{threshold: 1.0}}\n"
        "run: {shard_size: 8}\n")
    out = tmp_path / "sel.jsonl"
    printed = deita("select", data, "-o", out, "--size", "6", "--config", tmp_path / "run.yaml", "-q").stdout
    assert "into 'complexity_scores'" in printed and "into 'quality_scores'" in printed and "selected 6 of 24" in printed
    selected = [json.loads(line) for line in out.read_text().splitlines()]
    scored = {r["id"]: r for r in map(json.loads, (tmp_path / "sel.jsonl.work" / "scored.jsonl").read_text().splitlines())}
    finals = {k: sum(c * q for c, q in zip(r["complexity_scores"], r["quality_scores"])) for k, r in scored.items()}
    assert [r["id"] for r in selected] == sorted(finals, key=finals.get, reverse=True)[:6]
    assert "max_length: 256" in (tmp_path / "sel.jsonl.config.yaml").read_text()
