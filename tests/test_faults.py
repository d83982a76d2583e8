"""Hostile or degenerate inputs through the installed command: a YAML alias bomb, and a one-record pool
that every stage handles without numpy warnings."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from builders import scored_pool, sharegpt, write_jsonl

DEITA = [sys.executable, "-m", "deita.cli"]
SAMPLE = Path(__file__).parents[1] / "examples" / "sample.jsonl"
BOMB = "\n".join([f"l{0}: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                 + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
                 + ["filter: {size: *l8}"]) + "\n"


def deita(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*DEITA, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_a_yaml_alias_bomb_is_one_error_within_seconds(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert len(BOMB) < 600  # a few hundred bytes that expand to 10⁹ strings
    start = time.monotonic()
    for command in (["select", SAMPLE, "-o", tmp_path / "s.jsonl", "--config", bomb],
                    ["evol", "complexity", SAMPLE, "-o", tmp_path / "e.jsonl", "--prompts", bomb,
                     "--base-url", "http://127.0.0.1:9/v1", "--served-model", "m"]):
        result = deita(*command)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"error: {bomb}, line ") and "alias bomb" in result.stderr
        assert len(result.stderr) < 300  # the expanded value is never printed
    assert time.monotonic() - start < 60
    assert not list(tmp_path.glob("s.jsonl*")) and not list(tmp_path.glob("e.jsonl*"))


def test_a_one_record_pool_prints_no_numpy_warning(tmp_path: Path) -> None:
    pool = write_jsonl(tmp_path / "one.jsonl", [sharegpt(("human", "What is 2+2?"), ("gpt", "4"), id="only")])
    out = tmp_path / "sel" / "s.jsonl"
    runs = [deita("select", pool, "-o", out, "--size", "1", "--preset", "offline")]  # filter and report inside
    work = out.with_name("s.jsonl.work")
    runs.append(deita("filter", scored_pool(out), "--embeddings", work / "embeddings.npy", "-o",
                      tmp_path / "k.jsonl", "--size", "1", "--strategy", "kcenter"))  # it divides by distances
    for result in runs:
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr and "Traceback" not in result.stderr, (result.args, result.stderr)
    assert out.with_name("s.jsonl.report.html").exists() and len(out.read_text().splitlines()) == 1
