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

from deita.data.paths import check_paths, prepare_output
from deita.data.policy import RecordPolicy, given_or_own, rejected_line
from deita.embedding.run import embed_file
from deita.errors import DeitaError
from deita.manifest import write_manifest
from deita.runtime.models import check_models_reachable
from deita.runtime.options import RunOptions
from deita.runtime.runner import StageSummary
from deita.scoring.lengths import MAX_CHARS, MAX_TOKENS, add_length_scores
from deita.scoring.run import score_file
from deita.select_config import (  # noqa: F401  (the names `deita.workflow` always offered)
    DEFAULT_PRESET,
    PRESET_DEFAULTS,
    PRESETS,
    ROLES,
    SECTIONS,
    SelectConfig,
)

OFFLINE_WAY_OUT = ("Run without network with `--preset offline` (length scores and the packaged MiniLM), or point "
                   "the config at local model folders (complexity: {model: DIR}, quality: {model: DIR}, "
                   "embed: {model: DIR}).")


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
        prepare_output(label, path)
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


def later_stage() -> RecordPolicy:
    """The policy of a stage that reads select's own clean files: their records passed the first stage's
    checks, so one that is bad now stops the run (there is nothing to skip to)."""
    return RecordPolicy.failing(switch=None, who="A later stage of deita select")


def run_select(input_path: str | Path, output_path: str | Path, config: SelectConfig,
               policy: RecordPolicy | None = None) -> list[str]:
    """Run every stage into `<output>.work/`, then write the selection, its report, config and manifest.
    `policy`: what happens to bad records (default: `run.on_error`, rejects in OUTPUT.rejects.jsonl)."""
    from deita.report.run import report_file  # imports matplotlib
    from deita.selection.run import (
        filter_file,  # imports torch: neither at import, so `select --help` stays light
    )

    input_path, output_path = Path(input_path), Path(output_path)
    config = config.with_filter_defaults()
    paths = prepare_select(input_path, output_path, config)
    paths.work.mkdir(parents=True, exist_ok=True)
    run = dataclasses.replace(config.run, cache_dir=config.run.cache_dir or str(paths.work / "cache"))
    clean = dataclasses.replace(run, format=None)  # later stages read our own clean files
    lines: list[str] = []
    seconds: dict[str, float] = {}
    scored = paths.work / "scored.jsonl"
    truncated = 0
    with given_or_own(policy, config.run, paths.rejects) as policy:
        cleaned = clean_pool(input_path, paths, config, run, policy, lines)
        seconds.update(cleaned.seconds)
        # per role, its scorer or (where the preset says so and the user wrote no section) its length score
        scorers = [(role, scorer) for role in ROLES if (scorer := config.scorer_for(role)) is not None]
        steps = ([None] if len(scorers) < len(ROLES) else []) + scorers
        source, first = cleaned.pool, None
        for number, step in enumerate(steps, 1):
            target = scored if number == len(steps) else paths.work / f"{step[0] if step else 'lengths'}.jsonl"
            options, step_policy = (run, policy) if first is None else (clean, later_stage())
            if step is None:
                summary = add_length_scores(source, target, options, policy=step_policy)
                seconds["lengths"] = summary.seconds
                lines += offline_length_lines(summary)
            else:
                scorer = step[1]
                if scorer.type == "signals" and cleaned.bigrams is not None:
                    scorer = dataclasses.replace(scorer, bigram_counts=str(cleaned.bigrams))
                report = score_file(source, target, scorer, options, policy=step_policy)
                summary = report.summary
                seconds[step[0]] = summary.seconds
                lines += report.lines()
                truncated += summary.counters.get("truncated", 0)
            first = first or summary
            source = target
    rejected = cleaned.rejected + first.rejected
    records = cleaned.records if cleaned.records is not None else first.records + first.rejected
    lines += rejected_line(rejected, policy.by_kind(), policy.path, of=records)
    rows = policy.rows_file()  # the report reads the rows written so far (moved into place at the end)
    embedded = embed_file(scored, paths.work / "embeddings.npy", config.embed, clean, policy=later_stage())
    seconds["embed"] = embedded.summary.seconds
    lines += embedded.lines()
    if config.preset == "offline" and not config.embed.model:
        model = "a static model distilled from the packaged" if config.embed.kind == "static" else "the packaged"
        lines.append(f"offline preset: embedded {config.embed.window()} of each conversation with {model} "
                     f"all-MiniLM-L6-v2 ({config.embed.resolved_model()})")
    filter_config = dataclasses.replace(config.filter, sort_key=config.sort_key())
    selection = filter_file(scored, output_path, filter_config, paths.work / "embeddings.npy", stats_path=None)
    seconds["filter"] = selection.seconds
    lines += selection.lines()
    funnel = {"input": records, "rejected": rejected, **cleaned.removed, "scored": first.records,
              "turns": first.requests, "truncated_turns": truncated}
    stats = {**selection.stats(), "funnel": funnel, "threshold_note": config.threshold_note()}
    paths.stats.write_text(json.dumps(stats, indent=2) + "\n")
    if config.report.write:
        report_config = config.report if config.report.source_field or not config.filter.source_field else \
            dataclasses.replace(config.report, source_field=config.filter.source_field)
        report_file(output_path, scored, paths.report, paths.work / "embeddings.npy", config=report_config,
                    rejects_path=rows if rejected else None, stats=stats)
        lines.append(f"report → {paths.report}")
    paths.config.write_text(config.to_yaml())
    counts = {**funnel, **cleaned.details, "examined": selection.n_examined,
              "skipped_near_duplicates": selection.n_near_duplicates, "selected": selection.n_selected}
    if selection.limits is not None:
        counts.update({key: value for key, value in selection.limits.stats().items()
                       if key in ("tokens_selected", "n_over_budget", "n_group_full")})
    write_manifest(paths.manifest, input_path, output_path, counts, config.effective(), config.models_used(),
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
    bigrams: Path | None = None
    """The pool's word-bigram counts, where dedup's pass counted them for the offline signals."""


def clean_pool(input_path: Path, paths: SelectPaths, config: SelectConfig, run: RunOptions,
               policy: RecordPolicy, lines: list[str]) -> Cleaned:
    """Dedup, then decontaminate, into the work folder, before any scorer sees a record; writes every count to
    `clean_stats.json`. The first stage that reads the input meets its bad records."""
    from deita.dedup.decontaminate_file import decontaminate_file
    from deita.dedup.run import dedup_file

    cleaned, stats = Cleaned(input_path), {}
    quiet = dataclasses.replace(run, quiet=True) if run.quiet else run
    if config.dedup.enabled:
        signals = any((scorer := config.scorer_for(role)) is not None and scorer.type == "signals" for role in ROLES)
        bigrams = paths.work / "bigram_counts.npy" if signals and config.dedup.near \
            and config.dedup.field == "all" else None
        report = dedup_file(cleaned.pool, paths.work / "deduplicated.jsonl", config.dedup, quiet, policy, bigrams)
        cleaned.bigrams = bigrams
        cleaned.pool, stats["dedup"] = report.output, report.counts()
        cleaned.records, cleaned.rejected = report.records + report.rejected, report.rejected
        cleaned.removed["removed as duplicates"] = report.exact + report.near
        cleaned.details.update(exact_duplicates=report.exact, near_duplicates=report.near)
        cleaned.seconds["dedup"] = report.seconds
        lines.append(report.lines()[0])
    if config.decontaminate.against:
        first = cleaned.records is None
        report = decontaminate_file(cleaned.pool, paths.work / "decontaminated.jsonl", config.decontaminate, quiet,
                                    policy if first else later_stage(), embed=config.embed,
                                    bigrams_path=cleaned.bigrams if cleaned.bigrams and cleaned.bigrams.exists()
                                    else None)
        cleaned.pool, stats["decontaminate"] = report.output, report.counts()
        if first:
            cleaned.records, cleaned.rejected = report.records + report.rejected, report.rejected
        cleaned.removed["removed as contaminated"] = report.by_ngram + report.by_embedding
        cleaned.details.update(contaminated_ngram=report.by_ngram, contaminated_embedding=report.by_embedding)
        cleaned.seconds["decontaminate"] = report.seconds
        lines += [line for line in report.lines() if not line.startswith("rejected ")]
    paths.clean_stats.write_text(json.dumps(stats, indent=2) + "\n")
    return cleaned
