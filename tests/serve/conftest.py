"""A finished `deita select` run with a tiny random LLaMA as both scorers, the server loaded from it (with an
API key), and what `deita score` writes for the request records."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from serve_helpers import DEITA, Server, pool_records, request_records, start

from deita.testing import write_jsonl

API_KEY = "s3cret-key-for-tests"
SCORER = {"device": "cpu", "max_length": 256}


@pytest.fixture(scope="session")
def selected(tiny_llama, tmp_path_factory) -> Path:
    """OUTPUT of `deita select` (both scorers the tiny LLaMA, max_length 256, the static embedder)."""
    folder = tmp_path_factory.mktemp("serve-run")
    write_jsonl(folder / "pool.jsonl", pool_records())
    scorer = {"model": str(tiny_llama), **SCORER}
    config = {"complexity": scorer, "quality": scorer, "embed": {"kind": "static"},
              "filter": {"size": 8, "threshold": 0.99}}
    (folder / "run.yaml").write_text(json.dumps(config))
    subprocess.run([DEITA, "select", folder / "pool.jsonl", "-o", folder / "sel.jsonl", "--config",
                    folder / "run.yaml", "-q"], check=True, capture_output=True)
    return folder / "sel.jsonl"


@pytest.fixture(scope="session")
def cli_scores(tiny_llama, tmp_path_factory) -> list[dict]:
    """Per record of `request_records()`: what `deita score` writes, complexity and quality (run side by side)."""
    folder = tmp_path_factory.mktemp("serve-cli")
    write_jsonl(folder / "in.jsonl", [cli for cli, _ in request_records()])
    flags = ["--model", str(tiny_llama), "--device", SCORER["device"], "--max-length", str(SCORER["max_length"]), "-q"]
    runs = {kind: subprocess.Popen([DEITA, "score", folder / "in.jsonl", "-o", folder / f"{kind}.jsonl", "--type",
                                    kind, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for kind in ("complexity", "quality")}
    for run in runs.values():
        assert run.wait(timeout=300) == 0, run.stderr.read()
    complexity, quality = ([json.loads(line) for line in (folder / f"{kind}.jsonl").read_text().splitlines()]
                           for kind in ("complexity", "quality"))
    return [{**c, **q} for c, q in zip(complexity, quality, strict=True)]


@pytest.fixture(scope="session")
def server(selected) -> Server:
    """`deita serve --selection OUTPUT` (the run's own config) with a 50 ms batch window and an API key; stopped
    with SIGTERM at the end, which must exit 0 with the key never printed."""
    running = start("--selection", selected, "--batch-wait-ms", "50", "--api-key-env", "DEITA_TEST_KEY",
                    env={"DEITA_TEST_KEY": API_KEY}, key=API_KEY)
    yield running
    assert running.stop() == 0, running.text()
    assert API_KEY not in running.text()
