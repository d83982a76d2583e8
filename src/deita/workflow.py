"""`deita select`: dedup and decontaminate, then score (complexity, quality), embed, filter — each scoring
stage cached so a rerun resumes.

Settings come in layers: the defaults, then the preset's, then the YAML file's sections, then the flags.
The whole effective config is checked, and so are the paths and the models, before any stage runs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deita.config import check_config, check_keys, config_from_mapping, config_to_dict, option
from deita.data.io import RejectsWriter
from deita.data.paths import check_paths, check_writable
from deita.dedup.config import DecontaminateConfig, DedupConfig
from deita.embedding.embedder import EmbedConfig
from deita.embedding.run import embed_file
from deita.errors import DeitaError
from deita.manifest import write_manifest
from deita.report.config import ReportConfig
from deita.runtime.models import check_models_reachable
from deita.runtime.options import RunOptions
from deita.runtime.runner import StageSummary
from deita.scoring.config import ScoreConfig
from deita.scoring.lengths import MAX_CHARS, MAX_TOKENS, add_length_scores
from deita.scoring.run import score_file
from deita.selection.config import FilterConfig
from deita.selection.scores import LENGTH_SCORE_KEYS

PRESETS = ("paper", "offline")
DEFAULT_PRESET = "paper"
SECTIONS = ("dedup", "decontaminate", "complexity", "quality", "embed", "filter", "report", "run")
PRESET_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"complexity": {"type": "complexity"}, "quality": {"type": "quality"},
              "embed": {"kind": "causal"}},
    "offline": {"embed": {"kind": "static"}, "filter": {"sort_key": LENGTH_SCORE_KEYS, "threshold": 0.99}},
}
"""What each preset changes from the defaults: declared once, here. The offline threshold is calibrated for the
static embedder's scale of cosine similarity (benchmarks/offline.py, docs/benchmarks.md): whole-conversation
means of static token vectors sit closer together than MiniLM's sentence embeddings, so 0.9 would skip most
of a pool; the calibrated value skips ≥ 95 % of planted near-copies and about as many real records as MiniLM
does at 0.9."""
OFFLINE_WAY_OUT = ("Run without network with `--preset offline` (length scores and the packaged MiniLM), or point "
                   "the config at local model folders (complexity: {model: DIR}, quality: {model: DIR}, "
                   "embed: {model: DIR}).")


@dataclass
class SelectConfig:
    """The whole pipeline's settings; a YAML file has one section per field (`complexity:`, `embed:`, …)."""

    preset: str = option(DEFAULT_PRESET, "paper: Deita scorers and Mistral-7B embeddings (needs the models, a GPU); "
                         "offline: length scores and a static embedder distilled from MiniLM (no network or GPU).",
                         choices=PRESETS)
    dedup: DedupConfig = option(default_factory=DedupConfig)
    decontaminate: DecontaminateConfig = option(default_factory=DecontaminateConfig)
    complexity: ScoreConfig = option(default_factory=lambda: ScoreConfig(type="complexity"))
    quality: ScoreConfig = option(default_factory=lambda: ScoreConfig(type="quality"))
    embed: EmbedConfig = option(default_factory=lambda: EmbedConfig(kind="causal"))
    filter: FilterConfig = option(default_factory=FilterConfig)
    report: ReportConfig = option(default_factory=ReportConfig)
    run: RunOptions = option(default_factory=RunOptions)

    @classmethod
    def from_yaml(cls, path: str | Path) -> dict[str, Any]:
        """The sections of a YAML config file, as a mapping (checked when the config is built)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DeitaError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as err:
            raise DeitaError(f"{path}: cannot read the config file ({err})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise DeitaError(f"{path}{where}: not valid YAML ({problem})") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise DeitaError(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)}), got {data!r}")
        return data

    @classmethod
    def build(cls, data: dict[str, Any], source: str = "config") -> SelectConfig:
        """Defaults ← the preset's defaults ← `data`'s sections; unknown sections, keys or types are errors."""
        check_keys(data, ["preset", *SECTIONS], source)
        preset = data.get("preset") or DEFAULT_PRESET
        if preset not in PRESETS:
            raise DeitaError(f"{source}: preset '{preset}' is not one of {', '.join(PRESETS)}")
        config = cls(preset=preset)
        for layer, layer_source in ((PRESET_DEFAULTS[preset], f"preset {preset}"), (data, source)):
            for name in SECTIONS:
                values = layer.get(name)
                if values is None:
                    continue
                if not isinstance(values, dict):
                    raise DeitaError(f"{layer_source}: section '{name}' must be a mapping of options, got {values!r}")
                current = getattr(config, name)
                config = dataclasses.replace(config, **{
                    name: config_from_mapping(type(current), values, f"{layer_source} [{name}]", base=current)})
        check_config(config, f"{source}: ")
        return config

    def to_yaml(self) -> str:
        return yaml.safe_dump(config_to_dict(self), sort_keys=False, allow_unicode=True)

    def models_used(self) -> list[tuple[str, str]]:
        """(role, model id or folder) of every model this run loads, the packaged default embedder included."""
        if self.preset == "offline":
            return [("embedding model", self.embed.resolved_model())]
        return [(f"{c.type} scorer", c.resolved_model()) for c in (self.complexity, self.quality)] + [
            ("embedding model", self.embed.resolved_model())]


@dataclass(frozen=True)
class SelectPaths:
    """Every file `deita select` writes, from the output path."""

    output: Path

    def _beside(self, suffix: str) -> Path:
        return self.output.with_name(self.output.name + suffix)

    @property
    def work(self) -> Path:
        return self._beside(".work")

    @property
    def rejects(self) -> Path:
        return self._beside(".rejects.jsonl")

    @property
    def config(self) -> Path:
        return self._beside(".config.yaml")

    @property
    def stats(self) -> Path:
        return self.work / "filter_stats.json"

    @property
    def clean_stats(self) -> Path:
        """What dedup and decontamination removed (counts), beside the summary, manifest and report."""
        return self.work / "clean_stats.json"

    @property
    def report(self) -> Path:
        return self._beside(".report.html")

    @property
    def manifest(self) -> Path:
        return self._beside(".manifest.json")

    def outputs(self) -> dict[str, Path]:
        return {"--output": self.output, "rejects file": self.rejects, "config file": self.config,
                "report": self.report, "manifest": self.manifest, "work folder": self.work}


def prepare_select(input_path: Path, output_path: Path, config: SelectConfig, check_models: bool = True) -> SelectPaths:
    """Every check that must pass before work starts: paths (none overwrites the input or another), folders
    writable, models reachable."""
    paths = SelectPaths(output_path)
    if config.filter.strategy == "ifd":
        raise DeitaError("select does not compute IFD scores; run deita score --type ifd --model M, deita embed, "
                         "then deita filter --strategy ifd")
    if not input_path.exists():
        raise DeitaError(f"{input_path}: no such file or directory")
    evals = {f"eval set {path}": Path(path) for path in config.decontaminate.against}
    check_paths({"input": input_path, **evals}, {**paths.outputs(), "--cache-dir": config.run.cache_dir})
    for label, path in paths.outputs().items():
        check_writable(label, path)
    if evals:
        from deita.dedup.decontaminate import read_eval_items

        read_eval_items(list(evals.values()))  # a bad eval file fails now, not after dedup
    if check_models:
        check_models_reachable(config.models_used(), OFFLINE_WAY_OUT)
    return paths


def offline_length_lines(summary: StageSummary) -> list[str]:
    """The offline preset's length-score summary: what counted, and how much of the text that was."""
    counters = summary.counters
    lines = [f"offline preset: scored {summary.records:,} records by instruction and response length (the paper's "
             f"length baselines, each side counted up to {MAX_CHARS:,} characters ≈ {MAX_TOKENS:,} tokens, what "
             "training sees), no scorer models used"]
    if counters.get("capped_sides"):
        seen = counters["chars_seen"] / max(counters["chars_total"], 1)
        lines.append(f"offline preset: {counters['capped_sides']:,} instructions or responses were longer and "
                     f"counted only in part; the length scores saw {seen:.1%} of all characters "
                     f"({counters['chars_seen']:,} of {counters['chars_total']:,})")
    return lines


def run_select(input_path: str | Path, output_path: str | Path, config: SelectConfig) -> list[str]:
    """Run every stage into `<output>.work/`, then write the selection, its report, config and manifest."""
    from deita.report.run import report_file  # imports matplotlib
    from deita.selection.run import (
        filter_file,  # imports torch: neither at import, so `select --help` stays light
    )

    input_path, output_path = Path(input_path), Path(output_path)
    paths = prepare_select(input_path, output_path, config)
    paths.work.mkdir(parents=True, exist_ok=True)
    run = dataclasses.replace(config.run, cache_dir=config.run.cache_dir or str(paths.work / "cache"))
    clean = dataclasses.replace(run, format=None)  # later stages read our own clean files
    rejects = RejectsWriter(paths.rejects) if config.run.on_error == "skip" else None
    lines: list[str] = []
    seconds: dict[str, float] = {}
    scored = paths.work / "scored.jsonl"
    truncated = 0
    try:
        cleaned = clean_pool(input_path, paths, config, run, rejects, lines)
        seconds.update(cleaned.seconds)
        if config.preset == "offline":
            first = add_length_scores(cleaned.pool, scored, run, rejects=rejects)
            seconds["lengths"] = first.seconds
            lines += offline_length_lines(first)
        else:
            complexity = paths.work / "complexity.jsonl"
            report = score_file(cleaned.pool, complexity, config.complexity, run, rejects=rejects)
            first = report.summary
            lines += report.lines()
            quality = score_file(complexity, scored, config.quality, clean)
            lines += quality.lines()
            seconds.update(complexity=first.seconds, quality=quality.summary.seconds)
            truncated = first.counters.get("truncated", 0) + quality.summary.counters.get("truncated", 0)
    finally:
        if rejects is not None:
            rejects.close()
    rejected = cleaned.rejected + first.rejected
    records = cleaned.records if cleaned.records is not None else first.records + first.rejected
    if rejected:
        lines.append(f"rejected {rejected:,} of {records:,} records → {paths.rejects}")
    embedded = embed_file(scored, paths.work / "embeddings.npy", config.embed, clean)
    seconds["embed"] = embedded.summary.seconds
    lines += embedded.lines()
    if config.preset == "offline" and not config.embed.model:
        model = "a static model distilled from the packaged" if config.embed.kind == "static" else "the packaged"
        lines.append(f"offline preset: embedded {config.embed.window()} of each conversation with {model} "
                     f"all-MiniLM-L6-v2 ({config.embed.resolved_model()})")
    selection = filter_file(scored, output_path, config.filter, paths.work / "embeddings.npy", stats_path=None)
    seconds["filter"] = selection.seconds
    lines += selection.lines()
    funnel = {"input": records, "rejected": rejected, **cleaned.removed, "scored": first.records,
              "turns": first.requests, "truncated_turns": truncated}
    stats = {**selection.stats(), "funnel": funnel}
    paths.stats.write_text(json.dumps(stats, indent=2) + "\n")
    if config.report.write:
        report_file(output_path, scored, paths.report, paths.work / "embeddings.npy", config=config.report,
                    rejects_path=paths.rejects if rejected else None, stats=stats)
        lines.append(f"report → {paths.report}")
    paths.config.write_text(config.to_yaml())
    counts = {**funnel, **cleaned.details, "examined": selection.n_examined,
              "skipped_near_duplicates": selection.n_near_duplicates, "selected": selection.n_selected}
    write_manifest(paths.manifest, input_path, output_path, counts, config_to_dict(config), config.models_used(),
                   seconds, {"filter": config.filter.seed, "report": config.report.seed})
    lines.append(f"effective config → {paths.config}; manifest → {paths.manifest}; stage outputs and caches in "
                 f"{paths.work}")
    return lines


@dataclass
class Cleaned:
    """What dedup and decontamination did: the file the scorers read, and the counts for the funnel."""

    pool: Path
    records: int | None = None  # records in the input (good and bad), when a cleaning stage read it
    rejected: int = 0
    removed: dict[str, int] = dataclasses.field(default_factory=dict)  # funnel stage → records removed
    details: dict[str, int] = dataclasses.field(default_factory=dict)  # the same, by kind, for the manifest
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def clean_pool(input_path: Path, paths: SelectPaths, config: SelectConfig, run: RunOptions,
               rejects: RejectsWriter | None, lines: list[str]) -> Cleaned:
    """Dedup, then decontaminate, into the work folder, before any scorer sees a record; writes every count to
    `clean_stats.json`. The first stage that reads the input meets its bad records."""
    from deita.dedup.decontaminate_file import decontaminate_file
    from deita.dedup.run import dedup_file

    cleaned, stats = Cleaned(input_path), {}
    quiet = dataclasses.replace(run, quiet=True) if run.quiet else run
    if config.dedup.enabled:
        report = dedup_file(cleaned.pool, paths.work / "deduplicated.jsonl", config.dedup, quiet, rejects)
        cleaned.pool, stats["dedup"] = report.output, report.counts()
        cleaned.records, cleaned.rejected = report.records + report.rejected, report.rejected
        cleaned.removed["removed as duplicates"] = report.exact + report.near
        cleaned.details.update(exact_duplicates=report.exact, near_duplicates=report.near)
        cleaned.seconds["dedup"] = report.seconds
        lines.append(report.lines()[0])
    if config.decontaminate.against:
        first = cleaned.records is None
        report = decontaminate_file(cleaned.pool, paths.work / "decontaminated.jsonl", config.decontaminate, quiet,
                                    rejects if first else None, embed=config.embed)
        cleaned.pool, stats["decontaminate"] = report.output, report.counts()
        if first:
            cleaned.records, cleaned.rejected = report.records + report.rejected, report.rejected
        cleaned.removed["removed as contaminated"] = report.by_ngram + report.by_embedding
        cleaned.details.update(contaminated_ngram=report.by_ngram, contaminated_embedding=report.by_embedding)
        cleaned.seconds["decontaminate"] = report.seconds
        lines += [line for line in report.lines() if not line.startswith("rejected ")]
    paths.clean_stats.write_text(json.dumps(stats, indent=2) + "\n")
    return cleaned
