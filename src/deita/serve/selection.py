"""A finished `deita select` run, as the service reads it: the one place that knows the run's files.

Everything is found through `OUTPUT.manifest.json`: the effective config it records, and the run's work
folder beside it (the pool's columns, its embeddings, the filter's statistics), which names the pool file
the columns were computed from. The interface is what the service needs and nothing more: the pool's size
(its kept records), per-turn score lists by field, the embeddings (memory-mapped), the selected ordinals,
and any one record fetched lazily by ordinal (by byte offset from a JSONL pool, else by reading the pool up
to it; the last few fetched are kept).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from deita.data.formats import detect_format, parse_turns
from deita.data.records import Record, Turn
from deita.embedding.embedder import EmbedStage
from deita.errors import DeitaError
from deita.passes.columns import MARKER, Columns
from deita.passes.fetch import ScoredPool
from deita.passes.run import COLUMNS, EMBEDDINGS
from deita.scoring.scorer import ScoreStage
from deita.selection.embeddings import open_embeddings
from deita.workflow import SelectConfig, SelectPaths

MANIFEST_SUFFIX = ".manifest.json"
RECORDS_KEPT = 256
"""Records fetched by ordinal that stay in memory (neighbours of popular records come back often)."""


class FinishedRun:
    """A `deita select` OUTPUT: its manifest and config now, its pool on first use."""

    def __init__(self, output: str | Path) -> None:
        output = Path(output)
        if output.name.endswith(MANIFEST_SUFFIX):
            output = output.with_name(output.name[: -len(MANIFEST_SUFFIX)])
        self.output = output
        self.paths = SelectPaths(output)
        manifest_path = self.paths.manifest
        if not manifest_path.is_file():
            raise DeitaError(f"--selection {output}: no manifest at {manifest_path}; give the OUTPUT of a finished "
                             "`deita select` run")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DeitaError(f"{manifest_path}: not a readable manifest ({err})") from None
        if not isinstance(self.manifest, dict) or not isinstance(self.manifest.get("config"), dict):
            raise DeitaError(f"{manifest_path}: the manifest records no config; was it written by `deita select`?")
        self.config = SelectConfig.build(self.manifest["config"], f"{manifest_path} config")
        self._work_file(f"{COLUMNS}/{MARKER}")
        self.columns = Columns(self.paths.work / COLUMNS)
        self.pool_path = Path(self.columns.marker["pool"]["path"])
        if not self.pool_path.is_file():
            raise DeitaError(f"--selection {self.output}: its pool {self.pool_path} is missing; the run's records "
                             "are read from it")
        self._pool = ScoredPool(self.pool_path, self.columns, self.config.run.format, self.config.run.pairing)

    def _work_file(self, name: str) -> Path:
        path = self.paths.work / name
        if not path.exists():
            raise DeitaError(f"--selection {self.output}: {path} is missing; the run's work folder is incomplete "
                             "(run `deita select` again to finish it)")
        return path

    @property
    def threshold(self) -> float:
        return self.config.filter.threshold

    def score_lists(self, keys: tuple[str, ...]) -> list[list[Any]]:
        """For each key, every pool record's per-turn list in ordinal order (None for a field the run did not
        compute), from the run's columns."""
        return [self.columns.lists(key) if key in self.columns.fields else [None] * self.size for key in keys]

    @property
    def size(self) -> int:
        return self.columns.rows

    @cached_property
    def embeddings(self) -> np.ndarray:
        """The pool's embeddings, memory-mapped, one row per ordinal."""
        return open_embeddings(self._work_file(EMBEDDINGS), self.size, self.pool_path)

    @cached_property
    def selected(self) -> np.ndarray | None:
        """Ordinals of the selected records in selection order (None when the run kept no statistics)."""
        path = self.paths.stats
        if not path.exists():
            return None
        stats = json.loads(path.read_text(encoding="utf-8"))
        return np.asarray(stats.get("selected", []), dtype=np.int64) if "selected" in stats else None

    def scored_records(self) -> Iterator[Record]:
        """Every pool record of the run (its kept records, in ordinal order) with its score fields."""
        return self._pool.records()

    def record(self, ordinal: int) -> dict[str, Any]:
        """The pool record at `ordinal` with its score fields, read from the pool file."""
        return self._record(int(ordinal))

    @lru_cache(maxsize=RECORDS_KEPT)  # noqa: B019 (one FinishedRun per service, alive as long as it)
    def _record(self, ordinal: int) -> dict[str, Any]:
        return self._pool.fetch([ordinal])[0]

    def turns(self, ordinal: int) -> list[Turn]:
        raw = self.record(ordinal)
        return parse_turns(raw, detect_format(raw), self.config.run.pairing)[0]

    def describe(self) -> dict[str, Any]:
        """What /v1/info says about the run."""
        counts = self.manifest.get("counts", {})
        return {"output": str(self.output), "manifest": str(self.paths.manifest), "pool": self.size,
                "selected": counts.get("selected"), "threshold": self.threshold,
                "strategy": self.config.filter.strategy, "input": self.manifest.get("input", {}).get("path")}


def model_differences(service: SelectConfig, run: SelectConfig) -> list[str]:
    """Each way the service's scorers or embedder differ from the run's, as a phrase (empty: the same).

    Compared by the stages' own fingerprints, the settings that decide their values (model files, template,
    lengths, dtype, backend options), as the resume cache compares them."""
    differences = []
    offline = {"offline": "length scores (preset offline)", "paper": "LLM scorers (preset paper)"}
    if service.preset != run.preset and "offline" in (service.preset, run.preset):
        differences.append(f"scorers: {offline[service.preset]} here, {offline[run.preset]} in the run")
    elif service.preset != "offline":
        for name in ("complexity", "quality"):
            ours, theirs = getattr(service, name), getattr(run, name)
            differences += _differences(f"{name} scorer", ScoreStage(ours).fingerprint(),
                                        ScoreStage(theirs).fingerprint(), ours.resolved_model(),
                                        theirs.resolved_model())
    differences += _differences("embedder", EmbedStage(service.embed).fingerprint(),
                                EmbedStage(run.embed).fingerprint(), service.embed.resolved_model(),
                                run.embed.resolved_model())
    return differences


def _differences(role: str, ours: dict[str, Any], theirs: dict[str, Any], our_model: str,
                 their_model: str) -> list[str]:
    out = []
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) == theirs.get(key):
            continue
        if key == "model":
            shown = (our_model, their_model) if our_model != their_model else ("these files", "other files")
        else:
            shown = (ours.get(key), theirs.get(key))
        out.append(f"{role} {key}: {shown[0]!r} here, {shown[1]!r} in the run")
    return out


def check_same_models(service: SelectConfig, run: FinishedRun) -> None:
    """Refuse a service whose scorers or embedder are not the run's: its neighbours and percentiles would
    compare values of different models."""
    differences = model_differences(service, run.config)
    if differences:
        raise DeitaError(f"--selection {run.output}: the service's config differs from the run's: "
                         f"{'; '.join(differences)}. Serve with the run's own config (leave out --config and "
                         "--preset), or select again with this one")
