"""Running evol and rank through their Python API against the fake chat server (shared by the EVOL tests)."""

from __future__ import annotations

import json
from pathlib import Path

from deita.evol.client import RetryOptions
from deita.evol.config import EvolConfig, RankConfig
from deita.evol.run import evolve_file, rank_file
from deita.runtime.options import RunOptions
from deita.scoring.backends.openai import OpenAIOptions


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()] if Path(path).exists() else []


def server_options(server, concurrency: int = 1) -> dict:
    return {"openai": OpenAIOptions(base_url=server.url, served_model="fake", concurrency=concurrency, timeout=5.0),
            "retry": RetryOptions(http_tries=3, backoff=0.01)}


def run_evol(server, seeds: Path, output: Path, concurrency: int = 1, shard_size: int = 64, cache: Path | None = None,
             **config):
    options = RunOptions(shard_size=shard_size, quiet=True, on_error="skip",
                         cache_dir=str(cache) if cache else None)
    report = evolve_file(seeds, output, EvolConfig(**server_options(server, concurrency), **config), options)
    return report, read_jsonl(output), read_jsonl(output.with_name(output.name + ".rejects.jsonl"))


def run_rank(server, evolved: Path, output: Path, concurrency: int = 1, shard_size: int = 64,
             cache: Path | None = None, **config):
    options = RunOptions(shard_size=shard_size, quiet=True, on_error="skip",
                         cache_dir=str(cache) if cache else None)
    report = rank_file(evolved, output, RankConfig(**server_options(server, concurrency), **config), options)
    return report, read_jsonl(output), read_jsonl(output.with_name(output.name + ".rejects.jsonl"))
