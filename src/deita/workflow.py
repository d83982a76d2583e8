"""`deita select`: its paths and checks, and the run as one composed pass (`deita.passes`): dedup hashes the
pool and decides a keep mask, one more read computes every per-record column of the kept records (scores,
embeddings; resumable), selection runs on the columns, and the selected records are fetched and written once.

Settings come in layers: the defaults, then the preset's, then the YAML file's sections, then the flags.
The whole effective config is checked, and so are the paths and the models, before any stage runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deita.data import atomic
from deita.data.paths import check_paths, prepare_output
from deita.data.policy import RecordPolicy, given_or_own
from deita.errors import DeitaError
from deita.runtime.models import check_models_reachable
from deita.runtime.runner import StageSummary
from deita.scoring.lengths import MAX_CHARS, MAX_TOKENS
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


def run_select(input_path: str | Path, output_path: str | Path, config: SelectConfig,
               policy: RecordPolicy | None = None) -> list[str]:
    """Hash the pool (dedup), compute every per-record column of the kept records in one more read, select
    on the arrays, then fetch the selected records and write them with the report, config and manifest.
    `policy`: what happens to bad records (default: `run.on_error`, rejects in OUTPUT.rejects.jsonl)."""
    from deita.passes.run import run_pass
    from deita.passes.select import write_selection

    input_path, output_path = Path(input_path), Path(output_path)
    config = config.with_filter_defaults()
    paths = prepare_select(input_path, output_path, config)
    paths.work.mkdir(parents=True, exist_ok=True)
    with given_or_own(policy, config.run, paths.rejects) as policy:
        computed = run_pass(input_path, paths, config, policy)
        lines = list(computed["lines"])
        # the report reads the rows set aside so far (moved into place as the rejects file at the end)
        lines += write_selection(input_path, output_path, paths, config, computed, policy.rows_file())
    atomic.write_bytes(paths.config, config.to_yaml().encode("utf-8"))
    lines.append(f"effective config → {paths.config}; manifest → {paths.manifest}; columns in {paths.work}")
    return lines
