"""`deita select` scores IFD in its pass (the ifd section, `--ifd-model`) and `strategy: ifd` walks on that
column: the same records, bytes and statistics as `deita score --type ifd` → `deita embed` → `deita filter
--strategy ifd`; the config error for strategy ifd without a model; a killed pass resumes with its IFD column."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from builders import run_main, sharegpt, write_jsonl

from deita.errors import ConfigError
from deita.passes.columns import Columns
from deita.select_config import SelectConfig
from deita.selection.ifd import IFD_KEY

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample.jsonl"


def test_select_strategy_ifd_equals_score_then_filter_record_for_record(tmp_path, tiny_llama, capsys):
    """The staged reference on the shipped sample (120 records, unanswered turns and records whose every turn
    is at or above --max-ifd among them): select writes the same bytes and selects the same pool indices."""
    scored, embeddings, reference = tmp_path / "ifd.jsonl", tmp_path / "emb.npy", tmp_path / "ref.jsonl"
    common = ("--device", "cpu", "-q")
    assert run_main(capsys, "score", SAMPLE, "-o", scored, "--type", "ifd", "--model", tiny_llama,
                    "--max-length", 256, *common)[0] == 0
    assert run_main(capsys, "embed", scored, "-o", embeddings, "--kind", "static", *common)[0] == 0
    code, out, err = run_main(capsys, "filter", scored, "--embeddings", embeddings, "-o", reference,
                              "--strategy", "ifd", "--size", 30, "--threshold", 0.99, "--max-ifd", 0.95,
                              "--stats", tmp_path / "ref_stats.json")
    assert code == 0, err
    ranked_by = out.strip()

    output = tmp_path / "sel.jsonl"
    config = tmp_path / "run.yaml"
    config.write_text("ifd: {max_length: 256}\n")
    code, out, err = run_main(capsys, "select", SAMPLE, "-o", output, "--preset", "offline", "--no-dedup",
                              "--config", config, "--ifd-model", tiny_llama, "--strategy", "ifd", "--size", 30,
                              "--max-ifd", 0.95, "--cache-dir", tmp_path / "cache", *common)
    assert code == 0, err
    assert output.read_bytes() == reference.read_bytes()
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 30 and all(IFD_KEY in row and "quality_scores" not in row for row in rows)

    staged = json.loads((tmp_path / "ref_stats.json").read_text())
    stats = json.loads((tmp_path / "sel.jsonl.work" / "filter_stats.json").read_text())
    for key in ("selected", "skipped", "n_examined", "n_unselectable", "max_ifd", "sort_key", "n_near_duplicates"):
        assert stats[key] == staged[key], key
    assert staged["n_unselectable"] > 0 and staged["n_near_duplicates"] > 0  # both sides of the walk were met
    # the summary names the IFD field and the same walk as the filter's
    assert "scored 194 turns of 120 records into 'ifd_scores'" in out
    assert "ifd null (no score): 5 turns, 5 with an empty response" in out
    assert ranked_by.split(" in ")[0] in out
    columns = Columns(tmp_path / "sel.jsonl.work" / "columns")
    assert columns.fields == [IFD_KEY]  # IFD ranks: no role scores, no lengths computed for nothing
    saved = (tmp_path / "sel.jsonl.config.yaml").read_text()
    assert "ifd:\n  type: ifd\n" in saved and "complexity:" not in saved and "quality:" not in saved
    manifest = json.loads((tmp_path / "sel.jsonl.manifest.json").read_text())
    assert [(m["role"], m["model"]) for m in manifest["models"]][0] == ("ifd scorer", str(tiny_llama))

    # under a token budget, the same walk again (the IFD shards from --cache-dir)
    limits = ("--token-budget", 2000, "--budget-tokenizer", tiny_llama / "tokenizer.json")
    code, out, err = run_main(capsys, "filter", scored, "--embeddings", embeddings, "-o", reference, "--strategy",
                              "ifd", "--size", 30, "--threshold", 0.99, "--max-ifd", 0.95, *limits,
                              "--stats", tmp_path / "ref_stats.json")
    assert code == 0, err
    code, out, err = run_main(capsys, "select", SAMPLE, "-o", output, "--preset", "offline", "--no-dedup",
                              "--config", config, "--ifd-model", tiny_llama, "--strategy", "ifd", "--size", 30,
                              "--max-ifd", 0.95, "--cache-dir", tmp_path / "cache", *limits, *common)
    assert code == 0, err
    assert output.read_bytes() == reference.read_bytes()
    staged = json.loads((tmp_path / "ref_stats.json").read_text())
    stats = json.loads((tmp_path / "sel.jsonl.work" / "filter_stats.json").read_text())
    assert staged["n_over_budget"] > 0 and 0 < staged["tokens_selected"] <= 2000
    for key in ("selected", "tokens_selected", "n_over_budget", "n_unselectable"):
        assert stats[key] == staged[key], key


def test_strategy_ifd_without_a_model_is_one_usage_line_before_any_work(tmp_path, capsys):
    output = tmp_path / "sel.jsonl"
    code, out, err = run_main(capsys, "select", SAMPLE, "-o", output, "--preset", "offline", "--strategy", "ifd")
    assert code == 2 and out == ""
    assert err == ("error: --strategy ifd ranks records by their IFD, which needs a scorer: set --ifd-model to any "
                   "causal LM (hub id, folder or .gguf file)\n")
    config = tmp_path / "run.yaml"
    config.write_text("preset: offline\nfilter: {strategy: ifd, size: 5}\n")
    code, out, err = run_main(capsys, "select", SAMPLE, "-o", output, "--config", config)
    assert code == 2
    assert err == (f"error: {config}: filter.strategy ifd ranks records by their IFD, which needs a scorer: set "
                   "--ifd-model to any causal LM (hub id, folder or .gguf file)\n")
    assert not output.exists() and not (tmp_path / "sel.jsonl.work").exists()
    config.write_text("ifd: {type: quality, model: m}\n")
    code, _, err = run_main(capsys, "select", SAMPLE, "-o", output, "--config", config)
    assert code == 1 and err.count("\n") == 1 and "ifd.type: 'quality' in the ifd section" in err
    with pytest.raises(ConfigError, match="strategy ifd ranks records by their IFD") as raised:
        SelectConfig.build({"filter": {"strategy": "ifd"}})
    assert raised.value.usage


def test_the_ifd_section_is_absent_unless_written_and_takes_the_device_flag(tiny_llama):
    plain = SelectConfig.build({"preset": "offline"}, device="cpu")
    assert plain.ifd is None and "ifd" not in plain.effective()
    written = SelectConfig.build({"preset": "offline", "ifd": {"model": str(tiny_llama)}}, device="cpu")
    assert written.ifd is not None and (written.ifd.type, written.ifd.device) == ("ifd", "cpu")
    assert written.pass_scorers()[-1] == written.ifd  # scored beside the roles when another strategy ranks
    assert SelectConfig.build(yaml.safe_load(written.to_yaml())).ifd == written.ifd  # the saved config reloads


def _ifd_select(pool: Path, output: Path, model: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "deita.cli", "select", str(pool), "-o", str(output), "--preset", "offline",
            "--ifd-model", str(model), "--strategy", "ifd", "--device", "cpu", "--size", "40", "--shard-size", "4",
            "--no-dedup", "-q", *more]


def test_a_killed_pass_resumes_with_its_ifd_column(tmp_path, tiny_llama):
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    records = [sharegpt(("human", f"question {i}: " + " ".join(words[(i * j) % 12] for j in range(8 + i % 30))),
                        ("gpt", f"answer {i} " + " ".join(words[(i + j) % 12] for j in range(5 + i % 40))),
                        id=f"r{i}") for i in range(160)]
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    killed = tmp_path / "killed" / "sel.jsonl"
    killed.parent.mkdir()
    cache = killed.with_name("sel.jsonl.work") / "cache" / "ifd"
    process = subprocess.Popen(_ifd_select(pool, killed, tiny_llama), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True, env=dict(os.environ))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and len(list(cache.rglob("*.npz"))) < 3:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(cache.rglob("*.npz")))
    assert 3 <= finished < 40 and not killed.exists(), "the pass must be killed part-way"
    again = subprocess.run(_ifd_select(pool, killed, tiny_llama), capture_output=True, text=True,
                           env=dict(os.environ))
    assert again.returncode == 0, again.stderr
    assert f"({finished} of 40 shards resumed from cache)" in again.stdout.split("into 'ifd_scores'")[1]
    clean = tmp_path / "clean" / "sel.jsonl"
    clean.parent.mkdir()
    done = subprocess.run(_ifd_select(pool, clean, tiny_llama), capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert killed.read_bytes() == clean.read_bytes()
    resumed, fresh = (Columns(path.with_name("sel.jsonl.work") / "columns") for path in (killed, clean))
    assert resumed.fields == fresh.fields == [IFD_KEY]
    for part in (0, 1):
        assert np.array_equal(resumed.turn_arrays(IFD_KEY)[part], fresh.turn_arrays(IFD_KEY)[part], equal_nan=True)
    assert np.isfinite(np.asarray(resumed.turn_arrays(IFD_KEY)[0])).sum() > 100
