"""A finished `deita select` run with a tiny random LLaMA as both scorers, the server loaded from it (with an
API key), and what `deita score` writes for the request records."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from builders import write_jsonl
from serve_helpers import DEITA, Server, pool_records, request_records, start

API_KEY = "s3cret-key-for-tests"
SCORER = {"device": "cpu", "max_length": 256}


@pytest.fixture(scope="session")
def prepared(tiny_llama, tmp_path_factory) -> tuple[Path, list[dict]]:
    """Side by side: `deita select` on the pool (both scorers the tiny LLaMA, max_length 256, the static
    embedder) and `deita score` (complexity, quality) on the ShareGPT side of `request_records()`."""
    folder = tmp_path_factory.mktemp("serve-run")
    write_jsonl(folder / "pool.jsonl", pool_records())
    write_jsonl(folder / "in.jsonl", [cli for cli, _ in request_records()])
    scorer = {"model": str(tiny_llama), **SCORER}
    config = {"complexity": scorer, "quality": scorer, "embed": {"kind": "static"},
              "filter": {"size": 8, "threshold": 0.99}}
    (folder / "run.yaml").write_text(json.dumps(config))
    flags = ["--model", str(tiny_llama), "--device", SCORER["device"], "--max-length", str(SCORER["max_length"]), "-q"]
    commands = [[DEITA, "select", folder / "pool.jsonl", "-o", folder / "sel.jsonl", "--config", folder / "run.yaml",
                 "-q"]]
    commands += [[DEITA, "score", folder / "in.jsonl", "-o", folder / f"{kind}.jsonl", "--type", kind, *flags]
                 for kind in ("complexity", "quality")]
    runs = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for command in commands]
    try:
        for run in runs:
            assert run.wait(timeout=1800) == 0, run.stderr.read()  # generous: a shared machine can be very slow
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    complexity, quality = ([json.loads(line) for line in (folder / f"{kind}.jsonl").read_text().splitlines()]
                           for kind in ("complexity", "quality"))
    return folder / "sel.jsonl", [{**c, **q} for c, q in zip(complexity, quality, strict=True)]


@pytest.fixture(scope="session")
def selected(prepared) -> Path:
    """OUTPUT of the finished `deita select` run."""
    return prepared[0]


@pytest.fixture(scope="session")
def cli_scores(prepared) -> list[dict]:
    """Per record of `request_records()`: what `deita score` writes, complexity and quality."""
    return prepared[1]


@pytest.fixture(scope="session")
def server(selected) -> Server:
    """`deita serve --selection OUTPUT` (the run's own config) with a 50 ms batch window and an API key; stopped
    with SIGTERM at the end, which must exit 0 with the key never printed."""
    running = start("--selection", selected, "--batch-wait-ms", "50", "--api-key-env", "DEITA_TEST_KEY",
                    env={"DEITA_TEST_KEY": API_KEY}, key=API_KEY)
    yield running
    assert running.stop() == 0, running.text()
    assert API_KEY not in running.text()
