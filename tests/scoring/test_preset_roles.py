"""A section the user wrote wins over the preset's, per scorer role, through the installed `deita select`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from builders import sharegpt, write_jsonl

DEITA = shutil.which("deita") or str(Path(sys.executable).parent / "deita")


def test_offline_preset_with_a_quality_section_scores_quality_through_that_server(tmp_path, tiny_llama, server,
                                                                                   options):
    quality = {"model": str(tiny_llama), "backend": "openai",
               "openai": {"base_url": server.url, "served_model": "tiny"}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"preset": "offline", "quality": quality}))
    data = write_jsonl(tmp_path / "pool.jsonl", [sharegpt(("human", f"question {i} " * (i + 1)),
                                                          ("gpt", f"answer {i} " * (i + 2)), id=i) for i in range(6)])
    out = tmp_path / "sel.jsonl"
    environment = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    done = subprocess.run([DEITA, "select", str(data), "-o", str(out), "--size", "3", "--config",
                           str(tmp_path / "run.yaml"), "-q"], capture_output=True, text=True, timeout=600,
                          env=environment)
    assert done.returncode == 0, done.stderr
    assert len(options.requests) == 6, "one quality request per turn, none for complexity"
    assert all("##Quality: " in request["prompt"] for request in options.requests)
    selected = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(selected) == 3
    assert all("quality_scores" in r and "instruction_lengths" in r and "complexity_scores" not in r for r in selected)
    saved = yaml.safe_load((tmp_path / "sel.jsonl.config.yaml").read_text())
    assert saved["preset"] == "offline" and saved["quality"]["backend"] == "openai" and "complexity" not in saved
    assert "sort_key" not in saved["filter"] or saved["filter"]["sort_key"] is None
    stats = json.loads((tmp_path / "sel.jsonl.work" / "filter_stats.json").read_text())
    assert stats["sort_key"] == ["instruction_lengths", "quality_scores"]
