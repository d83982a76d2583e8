"""`deita score --type ifd` then `deita filter --strategy ifd`, through the installed command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from builders import sharegpt, write_jsonl

DEITA = shutil.which("deita") or str(Path(sys.executable).parent / "deita")


def deita(*args, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([DEITA, *map(str, args)], capture_output=True, text=True, env=dict(os.environ),
                            check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"deita {args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def test_score_ifd_then_filter(tmp_path, tiny_llama):
    records = [
        sharegpt(("human", "What is the capital of France?"), ("gpt", "Paris is the capital of France."), id="a"),
        sharegpt(("human", "Explain recursion."), id="empty"),  # unanswered: a null turn, not selectable
        sharegpt(("human", "Write a poem about the sea. " * 20), ("gpt", "Waves and salt and sky."),
                 ("human", "Shorter, please."), ("gpt", "Sea."), id="long"),  # truncated at --max-length 64
        sharegpt(("human", "List three colours."), ("gpt", "Red, green and blue."), id="b"),
        sharegpt(("human", "Say hello."), ("gpt", "Hello! How can I help you today?"), id="c"),
    ]
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    scored = tmp_path / "ifd.jsonl"
    args = ("score", pool, "-o", scored, "--type", "ifd", "--model", tiny_llama, "--device", "cpu",
            "--max-length", 64, "--quiet")
    first = deita(*args)
    assert "scored 6 turns of 5 records into 'ifd_scores'" in first.stdout
    assert "truncated to fit --max-length: 1 turns lost the start of their instruction, 0 of them" in first.stdout
    assert "ifd null (no score): 1 turns, 1 with an empty response" in first.stdout
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    assert rows[1]["ifd_scores"] == [None] and len(rows[2]["ifd_scores"]) == 2
    values = [v for r in rows for v in r["ifd_scores"] if v is not None]
    assert len(values) == 5 and all(v > 0 for v in values)

    again = deita(*args)  # a rerun resumes from the content-keyed cache, with the same result
    assert "(1 of 1 shards resumed from cache)" in again.stdout
    assert [json.loads(line) for line in scored.read_text().splitlines()] == rows

    np.save(tmp_path / "emb.npy", np.eye(5, dtype=np.float32))
    deita("filter", scored, "--embeddings", tmp_path / "emb.npy", "-o", tmp_path / "sel.jsonl", "--strategy", "ifd",
          "--size", 10, "--max-ifd", 100, "--stats", tmp_path / "stats.json")
    means = {r["id"]: np.mean([v for v in r["ifd_scores"] if v is not None]) for r in rows if r["id"] != "empty"}
    selected = [json.loads(line)["id"] for line in (tmp_path / "sel.jsonl").read_text().splitlines()]
    assert selected == sorted(means, key=lambda k: -means[k])
    assert json.loads((tmp_path / "stats.json").read_text())["n_unselectable"] == 1


def test_ifd_needs_a_model(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", [sharegpt(("human", "q"), ("gpt", "a"))])
    result = deita("score", pool, "-o", tmp_path / "out.jsonl", "--type", "ifd", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: --type ifd needs --model: any causal LM (hub id, folder, or .gguf file)"
