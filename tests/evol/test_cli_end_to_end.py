"""`deita evol` and `deita rank` as a person runs them: the synthetic task end to end, the cost report, dry runs,
credentials kept out of every output, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import run_main, sharegpt, write_jsonl
from chat_server import phrases, seed_records

DEITA = shutil.which("deita") or str(Path(sys.executable).parent / "deita")
SECRET = "sk-test-secret-123"


def deita(*args, check=True, env=None):
    result = subprocess.run([DEITA, *map(str, args)], capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"deita {args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def one_line_error(result, code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def spearman(a, b) -> float:
    import numpy as np

    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_synthetic_task_from_seeds_to_ranked_scores_in_the_true_order(chat_server, tmp_path):
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps(seed_records(12)))  # an Alpaca JSON array, as users bring seed sets
    url = chat_server.url.replace("http://", "http://someone:sk-url-secret@")
    server = ["--base-url", url, "--served-model", "fake", "--concurrency", "4", "--backoff", "0.01"]
    env = {"OPENAI_API_KEY": SECRET}

    dry = deita("evol", "complexity", seeds, "-o", tmp_path / "evolved.jsonl", "--dry-run", *server, env=env)
    assert not chat_server.options.requests, "a dry run calls no server"
    assert "dry run: 12 seeds (complexity, 5 steps), no calls made; tokens counted with ~4 characters" in dry.stdout
    assert "evolution (deita evol): 60 calls" in dry.stdout and "ranking (deita rank):   12 calls" in dry.stdout

    chat_server.options.faults[:] = ["429", "timeout"]
    chat_server.options.delay = 1.5
    evol = deita("evol", "complexity", seeds, "-o", tmp_path / "evolved.jsonl", *server, "--shard-size", "4",
                 "--timeout", "0.5", env=env)
    assert "evolved (complexity, 5 steps) 12 of 12 records" in evol.stdout
    assert "cost of this run: 60 calls" in evol.stdout and "2 requests retried" in evol.stdout
    rank = deita("rank", tmp_path / "evolved.jsonl", "-o", tmp_path / "ranked.jsonl", *server, env=env)
    assert "ranked (complexity) 12 of 12 records" in rank.stdout and "cost of this run: 12 calls" in rank.stdout
    assert {h["authorization"] for h in chat_server.options.headers} == {"Bearer sk-url-secret"}, "the URL's key wins"

    rows = [json.loads(line) for line in (tmp_path / "ranked.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [f"s{i}" for i in range(12)]
    truth = [phrases(v) for row in rows for v in row["variants"]]
    scores = [s for row in rows for s in row["scores"]]
    assert all(row["scores"] == [1, 2, 3, 4, 5, 6] for row in rows) and spearman(truth, scores) == pytest.approx(1.0)

    for text in (dry.stdout, dry.stderr, evol.stdout, evol.stderr, rank.stdout, rank.stderr):
        assert SECRET not in text and "sk-url-secret" not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            content = path.read_text(errors="replace")
            assert SECRET not in content and "sk-url-secret" not in content, path



def error_line(outcome, code: int = 1) -> str:
    returncode, _, err = outcome
    assert returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_quality_dry_run_counts_with_the_served_models_tokenizer(chat_server, tmp_path, tiny_llama, capsys):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [sharegpt(("human", "What is 2+2?"), ("gpt", "4"))] * 3)
    code, out, _ = run_main(capsys, "evol", "quality", seeds, "-o", tmp_path / "e.jsonl", "--dry-run", "--model",
                            tiny_llama)
    assert code == 0 and f"tokens counted with the tokenizer of {tiny_llama}" in out
    assert "3 seeds (quality, 5 steps)" in out and "15 calls" in out
    assert not chat_server.options.requests


def test_bad_input_and_options_are_one_line_errors(chat_server, tmp_path, capsys):
    bad = {"instruction": "seed-09: a question without an answer", "input": "", "output": ""}
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [*seed_records(2), bad, [1, 2]])
    server = ["--base-url", chat_server.url, "--served-model", "fake", "--quiet"]
    evol = ["evol", "quality", seeds, "-o", tmp_path / "e.jsonl", *server]
    line = error_line(run_main(capsys, *evol))
    assert "seeds.jsonl, line 3: no response in the first turn (quality evolves the response). Use --on-error " \
           "skip to write bad records to" in line
    assert not (tmp_path / "e.jsonl").exists()
    code, out, _ = run_main(capsys, *evol, "--on-error", "skip", "--steps", "1")
    assert code == 0 and "evolved (quality, 1 steps) 2 of 4 records" in out
    assert "rejected 2 (2 bad input) →" in out
    rejects = [json.loads(line) for line in (tmp_path / "e.jsonl.rejects.jsonl").read_text().splitlines()]
    assert [(r["location"], r["reason"][:20]) for r in rejects] == [("line 3", "no response in the f"),
                                                                   ("line 4", "not a JSON object: t")]
    assert [r["kind"] for r in rejects] == ["empty", "schema"] and "by kind: 1 empty, 1 schema" in out
    assert "--served-model" in error_line(run_main(capsys, "evol", "complexity", seeds, "-o", tmp_path / "x.jsonl"))
    assert "--steps: 6 is out of range" in error_line(run_main(capsys, *evol, "--steps", "6"))
    assert "--output" in error_line(run_main(capsys, "evol", "complexity", seeds, "-o", tmp_path / "e.json", *server))
    assert "line 1: not an EVOLVED row" in error_line(run_main(capsys, "rank", seeds, "-o", tmp_path / "r.jsonl",
                                                               *server))
    assert "refusing to overwrite the input" in error_line(run_main(capsys, "rank", tmp_path / "e.jsonl", "-o",
                                                                    tmp_path / "e.jsonl", *server))
    code, _, err = run_main(capsys, *evol, "--bogus")
    assert code == 2 and "No such option" in err and "--bogus" in err
    assert not chat_server.options.requests[2:], "only the two good seeds were evolved, once"
