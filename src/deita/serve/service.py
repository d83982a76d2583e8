"""`Service`: what the routes share — the config, the loaded engine, the batcher, the pool — and how one
record's answer is made from what the engine returned."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from deita import __version__
from deita.config import config_to_dict
from deita.errors import DeitaError
from deita.serve.batching import DynamicBatcher
from deita.serve.config import ServeConfig
from deita.serve.engine import Engine, Job, JobResult, aggregation, record_scores
from deita.serve.metrics import Metrics
from deita.serve.pool import Neighbour, PoolIndex
from deita.serve.records import RecordFailure
from deita.serve.selection import FinishedRun, check_same_models
from deita.workflow import SelectConfig


def api_key_from_env(name: str) -> str | None:
    """The key in environment variable `name` (None without a name); a named but empty variable is an error."""
    if not name:
        return None
    key = os.environ.get(name, "")
    if not key.strip():
        raise DeitaError(f"--api-key-env {name}: the environment variable {name} is not set (or empty)")
    return key.strip()


def load_pool(run: FinishedRun, engine: Engine, config: SelectConfig) -> PoolIndex:
    """The run's pool as the service compares against it: record scores made the service's way."""
    lists = run.score_lists(engine.keys)
    for key, values in zip(engine.keys, lists, strict=True):
        if values and values[0] is None:
            raise DeitaError(f"--selection {run.output}: the pool {run.pool_path} has no '{key}' scores")
    scores = record_scores(lists, engine.keys, config)
    embeddings = run.embeddings
    if embeddings.shape[1] != engine.dimensions:
        raise DeitaError(f"--selection {run.output}: its embeddings have {embeddings.shape[1]} dimensions, the "
                         f"service's embedder gives {engine.dimensions}")
    return PoolIndex(scores, embeddings, run.selected, config.filter.threshold, run.config.filter.strategy)


class Service:
    """The loaded service: built once, before the server listens."""

    def __init__(self, config: SelectConfig, serve: ServeConfig, engine: Engine, run: FinishedRun | None = None,
                 pool: PoolIndex | None = None, api_key: str | None = None) -> None:
        self.config, self.serve, self.engine, self.run, self.pool = config, serve, engine, run, pool
        self.api_key = api_key
        self.metrics = Metrics()
        self.keys = engine.keys
        self.aggregation = aggregation(config)
        self.dimensions = engine.dimensions
        self.embed_model = config.embed.resolved_model()
        self.batcher: DynamicBatcher[Job, JobResult] = DynamicBatcher(
            self.run_batch, serve.batch_wait_ms / 1000, serve.max_batch_records, serve.max_queue, self.metrics.batch)

    @classmethod
    def load(cls, config: SelectConfig, serve: ServeConfig, run: FinishedRun | None = None) -> Service:
        """Check the key and the selection against the config, then load the models (and the pool)."""
        api_key = api_key_from_env(serve.api_key_env)
        if run is not None:
            check_same_models(config, run)
        engine = Engine(config)
        pool = load_pool(run, engine, config) if run is not None else None
        return cls(config, serve, engine, run, pool, api_key)

    def text_job(self, text: str) -> Job:
        return Job(text=text)

    def serves_model(self, name: str) -> bool:
        return name in (self.embed_model, Path(self.embed_model).name)

    def run_batch(self, jobs: list[Job]) -> list[JobResult]:
        """One engine batch, then one pass over the pool for every job that asked for neighbours."""
        results = self.engine.run(jobs)
        wanted = [i for i, job in enumerate(jobs) if job.neighbors and results[i].vector is not None]
        if wanted and self.pool is not None:
            found = self.pool.search(np.stack([results[i].vector for i in wanted]), max(jobs[i].neighbors
                                                                                      for i in wanted))
            for i, neighbours in zip(wanted, found, strict=True):
                results[i].extra = neighbours[: jobs[i].neighbors]
        return results

    def failed(self, failure: RecordFailure) -> dict[str, Any]:
        self.metrics.rejected.labels(failure.kind).inc()
        return failure.to_json()

    def describe(self, job: Job, result: JobResult, include_turns: bool) -> dict[str, Any]:
        """One record's answer: per-turn columns, record score, rank against the pool, neighbours."""
        out: dict[str, Any] = {name: result.columns[name] for name in self.engine.columns}
        score = float(record_scores([[result.columns[key]] for key in self.keys], self.keys, self.config)[0])
        out["score"] = score
        if self.pool is not None:
            out["rank_percentile"] = round(self.pool.percentile(score), 4)
            out["rank"] = self.pool.rank(score)
        if include_turns:
            out["turns"] = [{"instruction": t.instruction, "response": t.response} for t in job.record.turns]
        if result.extra is not None and self.pool is not None:
            out["neighbors"] = [self.neighbour(n) for n in result.extra]
            duplicate = self.pool.near_duplicate(result.vector, score)
            out["near_duplicate"] = self.neighbour(duplicate) if duplicate is not None else None
        return out

    def neighbour(self, neighbour: Neighbour) -> dict[str, Any]:
        assert self.run is not None and self.pool is not None
        selected = self.pool.selected_sorted
        is_selected = selected is not None and bool(np.isin(neighbour.ordinal, selected))
        return {"ordinal": neighbour.ordinal, "cosine": round(neighbour.cosine, 6),
                "score": float(self.pool.scores[neighbour.ordinal]), "selected": is_selected,
                "turns": [{"instruction": t.instruction, "response": t.response}
                          for t in self.run.turns(neighbour.ordinal)]}

    def info(self) -> dict[str, Any]:
        """/v1/info: models, the whole config, the loaded selection, the limits; never the key itself."""
        limits = asdict(self.serve)
        for name in ("host", "port", "selection", "api_key_env", "access_log"):
            limits.pop(name)
        return {"version": __version__, "models": self.engine.models(), "config": config_to_dict(self.config),
                "preset": self.config.preset, "aggregation": self.aggregation, "score_keys": list(self.keys),
                "columns": list(self.engine.columns), "threshold": self.config.filter.threshold,
                "embedding": {"model": self.embed_model, "dimensions": self.dimensions},
                "selection": self.run.describe() if self.run is not None else None, "limits": limits,
                "auth": {"required": self.api_key is not None, "env": self.serve.api_key_env or None}}
