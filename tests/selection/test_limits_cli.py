"""--token-budget, --max-share and --aggregate through the installed `deita filter` and `deita select`: the
budget held and filled, the caps held, the picks the plain reference makes, usage errors, defaults unchanged."""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builders import sharegpt, write_jsonl
from reference import one_at_a_time_limited

from deita.embedding.sentence import default_sentence_model
from deita.selection.tokens import TokenCounter, record_tokens

DEITA = shutil.which("deita") or str(Path(sys.executable).parent / "deita")
SOURCES = ("forum", "forum", "forum", "forum", "wiki", "wiki", "code", None)  # skewed, and some without a source


def deita(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([DEITA, *map(str, args)], capture_output=True, text=True, timeout=300, env=os.environ)


def ok(*args: object) -> list[str]:
    result = deita(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def one_line_error(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0][len("error: "):]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 scored records of varied length and turn count, with a system message on some and a skewed source."""
    rng = np.random.default_rng(11)
    records = []
    for i in range(120):
        n_turns = int(rng.integers(1, 5))
        messages = [("system", "You are terse. " * int(rng.integers(1, 6)))] if i % 6 == 0 else []
        for turn in range(n_turns):
            messages += [("human", f"question {i}.{turn} about topic {i % 9} " * int(rng.integers(1, 8))),
                         ("gpt", "an answer with some words " * int(rng.integers(1, 40)))]
        fields = {"id": i, "complexity_scores": rng.uniform(1, 6, n_turns).round(3).tolist(),
                  "quality_scores": rng.uniform(1, 6, n_turns).round(3).tolist()}
        if SOURCES[i % len(SOURCES)] is not None:
            fields["source"] = SOURCES[i % len(SOURCES)]
        records.append(sharegpt(*messages, **fields))
    return write_jsonl(tmp_path_factory.mktemp("limits") / "scored.jsonl", records)


def reference(pool: list[dict], size: int, budget: int | None = None, share: float | None = None,
              aggregate: str = "sum") -> list[int]:
    """The plain walk over the `score` ranking: ids of the records it picks."""
    fold = {"sum": sum, "mean": lambda p: sum(p) / len(p), "max": max}[aggregate]
    scores = np.asarray([fold([c * q for c, q in zip(r["complexity_scores"], r["quality_scores"], strict=True)])
                         for r in pool])
    costs = groups = cap = None
    if budget is not None:
        counter = TokenCounter(default_sentence_model())
        costs = np.asarray([record_tokens(r, counter) for r in pool])
    if share is not None:
        names: dict = {}
        groups = np.asarray([names.setdefault(r.get("source"), len(names)) for r in pool])
        cap = math.floor(share * size)
    picked, _ = one_at_a_time_limited(scores, None, size, None, costs, budget, groups, cap)
    return [pool[i]["id"] for i in picked]


@functools.cache
def plain_tokenizer() -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(default_sentence_model()) / "tokenizer.json"))
    tokenizer.no_truncation()  # the packaged file pads and truncates to 128 tokens
    tokenizer.no_padding()
    return tokenizer


def plain_tokens(record: dict) -> int:
    """Tokens of every message (system included), each tokenized alone without special tokens."""
    return sum(len(plain_tokenizer().encode(m["value"], add_special_tokens=False).ids)
               for m in record["conversations"])


def test_token_budget_holds_fills_and_matches_reference(scored: Path, tmp_path: Path) -> None:
    pool = read_jsonl(scored)
    budget = sum(plain_tokens(r) for r in pool) // 3
    out = tmp_path / "sel.jsonl"
    lines = ok("filter", scored, "-o", out, "--strategy", "score", "--size", "-1", "--token-budget", budget,
               "--stats", tmp_path / "stats.json")
    chosen = read_jsonl(out)
    held = sum(plain_tokens(r) for r in chosen)
    assert 0.9 * budget <= held <= budget
    assert [r["id"] for r in chosen] == reference(pool, -1, budget=budget)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["tokens_selected"] == held and stats["token_budget"] == budget
    assert stats["n_over_budget"] > 0  # skipped a record that would overflow, and walked on
    assert f"holds {held:,} of {budget:,} tokens" in lines[1]
    assert f"{stats['n_over_budget']:,} candidates skipped as they would overflow it" in lines[1]


def test_token_budget_with_the_diversity_walk(scored: Path, tmp_path: Path) -> None:
    """deita: the budget applies after the diversity test; the size still stops the walk first when reached."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "emb.npy", rng.standard_normal((120, 8)).astype(np.float32))
    pool = read_jsonl(scored)
    budget = sum(plain_tokens(r) for r in pool) // 5
    for size in (-1, 10):
        out = tmp_path / f"sel{size}.jsonl"
        ok("filter", scored, "--embeddings", tmp_path / "emb.npy", "-o", out, "--size", size, "--token-budget", budget,
           "--threshold", "0.6")
        chosen = read_jsonl(out)
        assert sum(plain_tokens(r) for r in chosen) <= budget
        assert size == -1 or len(chosen) == 10


def test_max_share_caps_each_group_and_matches_reference(scored: Path, tmp_path: Path) -> None:
    pool = read_jsonl(scored)
    out = tmp_path / "sel.jsonl"
    lines = ok("filter", scored, "-o", out, "--strategy", "score", "--size", "40", "--max-share", "0.3",
               "--stats", tmp_path / "stats.json")
    chosen = read_jsonl(out)
    counts: dict = {}
    for record in chosen:
        counts[record.get("source")] = counts.get(record.get("source"), 0) + 1
    assert max(counts.values()) <= 12 and None in counts  # records without the field: a group of their own
    assert [r["id"] for r in chosen] == reference(pool, 40, share=0.3)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["group_cap"] == 12 and stats["n_group_full"] > 0
    assert stats["selected_per_group"] == {("(no field)" if k is None else k): v for k, v in
                                           sorted(counts.items(), key=lambda kv: -kv[1])}
    assert f"{stats['n_group_full']:,} candidates skipped as their group was full" in lines[1]


def test_max_share_on_any_field(scored: Path, tmp_path: Path) -> None:
    """--source-field names any field; a field no record has makes one group."""
    out = tmp_path / "sel.jsonl"
    ok("filter", scored, "-o", out, "--strategy", "random", "--size", "20", "--max-share", "0.25",
       "--source-field", "language")
    assert len(read_jsonl(out)) == 5


def test_aggregate_matches_reference(scored: Path, tmp_path: Path) -> None:
    """Through the CLI for mean (sum and max against the same reference: tests/selection/test_scores.py)."""
    out = tmp_path / "sel.jsonl"
    ok("filter", scored, "-o", out, "--strategy", "score", "--size", "30", "--aggregate", "mean")
    picked = [r["id"] for r in read_jsonl(out)]
    assert picked == reference(read_jsonl(scored), 30, aggregate="mean")
    assert picked != reference(read_jsonl(scored), 30, aggregate="sum")


def test_defaults_unchanged(scored: Path, tmp_path: Path) -> None:
    """No budget and sum: the same bytes as the limits' path with limits that never bind."""
    np.save(tmp_path / "emb.npy", np.random.default_rng(1).standard_normal((120, 8)).astype(np.float32))
    common = ("--embeddings", tmp_path / "emb.npy", "--size", "25", "--threshold", "0.5")
    ok("filter", scored, "-o", tmp_path / "a.jsonl", *common)
    ok("filter", scored, "-o", tmp_path / "b.jsonl", *common, "--aggregate", "sum", "--token-budget", 10**9,
       "--max-share", "1")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


@pytest.mark.parametrize(("args", "code", "message"), [
    (("--size", "-1", "--max-share", "0.2"), 2, "--max-share needs a record count"),
    (("--token-budget", "100", "--budget-tokenizer", "/no/such/tok.json"), 1, "no such file or folder"),
    (("--strategy", "kcenter", "--token-budget", "100"), 1, "--token-budget needs a --strategy that walks a ranking"),
])
def test_filter_usage_errors(scored: Path, tmp_path: Path, args: tuple, code: int, message: str) -> None:
    line = one_line_error(deita("filter", scored, "-o", tmp_path / "o.jsonl", "--strategy", "score", *args), code)
    assert message in line
    assert not (tmp_path / "o.jsonl").exists()


def test_select_with_a_budget_a_share_and_an_aggregate(tmp_path: Path) -> None:
    """The whole pipeline, offline: the budget holds and fills, the caps hold, the manifest and report say so."""
    pool = [sharegpt(("human", f"question {i} on {['maths', 'poems', 'code'][i % 3]} " * (1 + i % 5)),
                     ("gpt", f"answer {i} " + "with more words " * (2 + (i * 7) % 23)),
                     source="a" if i % 3 else f"s{i % 10}", id=i) for i in range(90)]
    data = write_jsonl(tmp_path / "pool.jsonl", pool)
    out = tmp_path / "sel.jsonl"
    budget = 1500
    ok("select", data, "-o", out, "--preset", "offline", "--size", "60", "--token-budget", budget,
       "--max-share", "0.2", "--aggregate", "max")
    chosen = read_jsonl(out)
    held = sum(plain_tokens(r) for r in chosen)
    assert 0.9 * budget <= held <= budget
    assert sum(r["source"] == "a" for r in chosen) == 12  # two thirds of the pool, capped at floor(0.2 × 60)
    manifest = json.loads(out.with_name("sel.jsonl.manifest.json").read_text())
    assert manifest["counts"]["tokens_selected"] == held and manifest["counts"]["n_group_full"] > 0
    assert {k: manifest["config"]["filter"][k] for k in ("token_budget", "max_share", "aggregate", "budget_tokenizer")} \
        == {"token_budget": budget, "max_share": 0.2, "aggregate": "max",
            "budget_tokenizer": default_sentence_model()}  # the embedder's tokenizer: no scorer model offline
    report = out.with_name("sel.jsonl.report.html").read_text()
    assert 'id="turn-counts"' in report and "ranked by the max over their turns" in report
    assert "skipped: source group full" in report and "skipped: over the token budget" in report

    line = one_line_error(deita("select", data, "-o", tmp_path / "x.jsonl", "--preset", "offline", "--size", "-1",
                                "--max-share", "0.5"), 2)
    assert line.startswith("--max-share needs a record count")
