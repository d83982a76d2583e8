"""Data commands: validate, convert, dedup, decontaminate."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from deita.errors import DeitaError

from .flags import INPUT, OUTPUT, Flag, build_config, command, config_flags, read_option_flags
from .outputs import cleaning_policy, echo_lines


def validate_command() -> click.Command:
    from deita.runtime.options import RunOptions

    flags = read_option_flags(exclude=("on_error",))

    def run(input: Path, **values: Any) -> None:
        """Check a data file: counts records and turns, lists every problem; exits 1 if there is any."""
        from deita.data.validate import validate_file

        options = build_config(RunOptions, flags, values)
        report = validate_file(input, fmt=options.format, pairing=options.pairing)
        echo_lines([f"{report.path}: {report.records:,} records, {report.turns:,} turns, format {report.format}, "
                f"file type {report.file_type}"])
        echo_lines([f"note: {note}" for note in report.notes])
        echo_lines([f"problem: {problem}" for problem in report.problems])
        if report.problems:
            echo_lines([f"{len(report.problems):,} problems found; by kind:"])
            echo_lines(report.tally())
            raise SystemExit(1)
        echo_lines(["no problems found"])

    return command("validate", "Check a data file: counts records and turns, lists every problem; exits 1 if "
                   "there is any.\n\nExample: deita validate data.jsonl", [INPUT], run, (flags,))


def convert_command() -> click.Command:
    from deita.data.formats import FORMATS
    from deita.runtime.options import RunOptions

    flags = read_option_flags(exclude=("pairing",))
    to = click.Option(["--to"], required=True, help=f"Target format: {', '.join(FORMATS)}.")

    def run(input: Path, output: Path, to: str, **values: Any) -> None:
        from deita.data.io import ReadStats, convert_file

        options = build_config(RunOptions, flags, values)
        if to not in FORMATS:
            raise DeitaError(f"--to: '{to}' is not one of {', '.join(FORMATS)}")
        stats = ReadStats()
        with cleaning_policy(input, output, options, {}, {}) as policy:
            count = convert_file(input, output, to, fmt=options.format, policy=policy, stats=stats)
        echo_lines([f"converted {count:,} of {stats.records:,} records from {stats.format} to {to} → {output}",
                    *policy.line()])

    return command("convert", "Convert between ShareGPT, Alpaca and chat-messages records, keeping every other "
                   "field.\n\nExample: deita convert alpaca.json -o sharegpt.jsonl --to sharegpt",
                   [INPUT, OUTPUT, to], run, (flags,))


def _clean_flags() -> dict[str, Flag]:
    """The RunOptions a single-pass cleaning command reads: format, pairing, bad records, progress."""
    from deita.runtime.options import RunOptions

    keep = ("format", "pairing", "on_error", "quiet", "progress_interval")
    return config_flags(RunOptions, exclude=tuple(f.name for f in dataclasses.fields(RunOptions) if f.name not in keep))


def dedup_command() -> click.Command:
    from deita.dedup.config import DedupConfig
    from deita.runtime.options import RunOptions

    dedup_flags, run_flags = config_flags(DedupConfig), _clean_flags()

    def run(input: Path, output: Path, **values: Any) -> None:
        from deita.dedup.run import dedup_file, duplicates_path_for

        config = build_config(DedupConfig, dedup_flags, values)
        options = build_config(RunOptions, run_flags, values)
        if not config.enabled:
            raise DeitaError("--no-exact and --no-near leave nothing to remove; drop one of them")
        with cleaning_policy(input, output, options, {"duplicates file": duplicates_path_for(output)}, {}) as policy:
            echo_lines(dedup_file(input, output, config, options, policy=policy).lines())

    return command("dedup", "Remove exact and near-duplicate records before paying for scores.\n\nExact: the same "
                   "text after NFKC, casefold and whitespace collapsing. Near: MinHash + LSH on word n-gram "
                   "shingles at an estimated Jaccard threshold. OUT gets the kept records untouched; "
                   "OUT.duplicates.jsonl names every removed record, the record kept in its place and the "
                   "similarity.\n\nExample: deita dedup pool.jsonl -o pool.dedup.jsonl --threshold 0.8",
                   [INPUT, OUTPUT], run, (dedup_flags, run_flags))


def decontaminate_command() -> click.Command:
    from deita.dedup.config import DecontaminateConfig
    from deita.embedding.embedder import EmbedConfig
    from deita.runtime.options import RunOptions

    flags = config_flags(DecontaminateConfig)
    embed_flags, run_flags = config_flags(EmbedConfig, exclude=("only_answer",)), _clean_flags()
    more = click.Argument(["more_evals"], nargs=-1, type=click.Path(path_type=Path), metavar="[EVAL]...")

    def run(input: Path, output: Path, more_evals: tuple[Path, ...], **values: Any) -> None:
        from deita.dedup.decontaminate_file import contaminated_path_for, decontaminate_file

        config = build_config(DecontaminateConfig, flags, values)
        if more_evals and not config.against:
            raise click.UsageError(f"unexpected extra argument{'s' if len(more_evals) > 1 else ''} "
                                   f"({' '.join(map(str, more_evals))}); eval files follow --against")
        if not config.against:
            raise click.UsageError("Missing option '--against': give the eval files, --against EVAL [EVAL ...]")
        config = dataclasses.replace(config, against=(*config.against, *map(str, more_evals)))
        embed = build_config(EmbedConfig, embed_flags, values)
        options = build_config(RunOptions, run_flags, values)
        evals = {f"eval set{f' {number}' if number > 1 else ''}": Path(path)
                 for number, path in enumerate(config.against, 1)}
        side = {"contaminated file": contaminated_path_for(output)}
        with cleaning_policy(input, output, options, side, evals) as policy:
            echo_lines(decontaminate_file(input, output, config, options, policy=policy, embed=embed).lines())

    return command("decontaminate", "Remove records that hold the prompts of evaluation sets.\n\nEach checked "
                   "text (the first instruction, or every message with --field all) is tested for a run of --ngram "
                   "words shared with an eval prompt (after NFKC, casefold, punctuation removed); with "
                   "--embedding-threshold, also for cosine similarity with an eval prompt (paraphrases). "
                   "OUT.contaminated.jsonl names each removed record, the eval item and the shared words or the "
                   "similarity.\n\nExample: deita decontaminate pool.jsonl --against mt_bench/question.jsonl "
                   "alpaca_eval.json -o clean.jsonl", [INPUT, more, OUTPUT], run, (flags, embed_flags, run_flags))
