"""`deita select`: score (complexity, quality), embed, filter — each stage cached so a rerun resumes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from deita.config import check_keys, config_from_mapping, config_to_dict
from deita.data.io import rejects_path_for
from deita.embedding.embedder import EmbedConfig
from deita.embedding.run import embed_file
from deita.errors import DeitaError
from deita.runtime.runner import RunOptions
from deita.scoring.lengths import LENGTH_FIELDS, add_length_scores
from deita.scoring.run import score_file
from deita.scoring.scorer import ScoreConfig
from deita.selection.run import FilterConfig, filter_file

PRESETS = ("paper", "offline")
SECTIONS = ("complexity", "quality", "embed", "filter", "run")


@dataclass
class SelectConfig:
    """The whole pipeline's settings; a YAML file has one section per field (`complexity:`, `embed:`, …)."""

    preset: str = "paper"
    """paper: Deita scorers + Mistral-7B embeddings (needs the models; a GPU); offline: length scores +
    the packaged MiniLM, runs anywhere with no network."""
    complexity: ScoreConfig = field(default_factory=lambda: ScoreConfig(type="complexity"))
    quality: ScoreConfig = field(default_factory=lambda: ScoreConfig(type="quality"))
    embed: EmbedConfig = field(default_factory=lambda: EmbedConfig(kind="causal"))
    filter: FilterConfig = field(default_factory=FilterConfig)
    run: RunOptions = field(default_factory=RunOptions)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SelectConfig:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise DeitaError(f"{path}: cannot read config ({err})") from err
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "config") -> "SelectConfig":
        """Each section's keys update that section's defaults; unknown sections or keys are errors."""
        check_keys(data, [f.name for f in dataclasses.fields(cls)], source)
        config = cls(preset=data.get("preset", "paper"))
        for name in SECTIONS:
            current = getattr(config, name)
            merged = {**config_to_dict(current), **_tuples(data.get(name) or {})}
            setattr(config, name, config_from_mapping(type(current), merged, f"{source} [{name}]"))
        return config

    def resolved(self) -> SelectConfig:
        """Apply the preset: offline swaps the scorers for length scores and the embedder for MiniLM."""
        if self.preset not in PRESETS:
            raise DeitaError(f"unknown preset '{self.preset}' (choose {', '.join(PRESETS)})")
        if self.preset == "offline":
            return replace(self, embed=replace(self.embed, kind="sentence", model=""),
                           filter=replace(self.filter, sort_key=LENGTH_FIELDS))
        return self

    def to_yaml(self) -> str:
        sections = {name: _lists(config_to_dict(getattr(self, name))) for name in SECTIONS}
        return yaml.safe_dump({"preset": self.preset, **sections}, sort_keys=False)


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def _lists(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def run_select(input_path: str | Path, output_path: str | Path, config: SelectConfig) -> list[str]:
    """Run every stage into `<output>.work/`, then write the selection and `<output>.config.yaml`."""
    config = config.resolved()
    input_path, output_path = Path(input_path), Path(output_path)
    work = output_path.with_name(output_path.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    clean = replace(config.run, format=None, on_error="fail")  # later stages read our own clean files
    lines: list[str] = []
    scored = work / "scored.jsonl"
    if config.preset == "offline":
        stats = add_length_scores(input_path, scored, config.run)
        lines.append(f"offline preset: scored {stats.records - stats.rejected:,} records by instruction and "
                     "response length (the paper's length baselines), no scorer models used")
        if stats.rejected:
            lines.append(f"rejected {stats.rejected:,} records → {rejects_path_for(scored)}")
    else:
        complexity = work / "complexity.jsonl"
        lines += score_file(input_path, complexity, replace(config.complexity, type="complexity"),
                            replace(config.run, cache_dir=str(work / "cache"))).lines()
        lines += score_file(complexity, scored, replace(config.quality, type="quality"),
                            replace(clean, cache_dir=str(work / "cache"))).lines()
    embeddings = work / "embeddings.npy"
    lines += embed_file(scored, embeddings, config.embed, replace(clean, cache_dir=str(work / "cache"))).lines()
    if config.preset == "offline":
        lines.append(f"offline preset: embedded with the packaged all-MiniLM-L6-v2 ({config.embed.resolved_model()})")
    report = filter_file(scored, output_path, config.filter, embeddings, stats_path=work / "filter_stats.json")
    lines += report.lines()
    config_path = output_path.with_name(output_path.name + ".config.yaml")
    config_path.write_text(config.to_yaml())
    lines.append(f"effective config → {config_path}; stage outputs and caches in {work}")
    return lines
