"""Selection commands: filter, select (the whole pipeline), report."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from deita.config_layers import Layer

from .flags import (
    INPUT,
    OUTPUT,
    SELECTED,
    build_config,
    command,
    config_flags,
    flag_label,
    nested_values,
    read_option_flags,
)
from .outputs import command_policy, echo_lines


def filter_command() -> click.Command:
    from deita.runtime.options import RunOptions
    from deita.selection.config import FilterConfig

    filter_flags, read_flags = config_flags(FilterConfig), read_option_flags(exclude=("pairing", "on_error"))
    embeddings = click.Option(["--embeddings"], type=click.Path(path_type=Path),
                              help="EMB.npy from `deita embed` (strategies deita and kcenter).")
    stats = click.Option(["--stats"], type=click.Path(path_type=Path), help="Write selection statistics as JSON here.")

    def run(input: Path, output: Path, embeddings: Path | None, stats: Path | None, **values: Any) -> None:
        from deita.selection.run import filter_file

        config = build_config(FilterConfig, filter_flags, values)
        options = build_config(RunOptions, read_flags, values)
        echo_lines(filter_file(input, output, config, embeddings, fmt=options.format, stats_path=stats).lines())

    return command("filter", "Select the best diverse samples: score-first, skipping near-duplicates of what was "
                   "already taken.\n\nExample: deita filter scored.jsonl --embeddings emb.npy -o selected.jsonl "
                   "--size 6000 --stats stats.json", [INPUT, OUTPUT, embeddings, stats], run,
                   (filter_flags, read_flags))


def select_command() -> click.Command:
    from deita.report.config import ReportConfig
    from deita.runtime.devices import DEVICE_HELP
    from deita.runtime.options import RunOptions
    from deita.select_config import DEFAULT_PRESET, SECTIONS, SelectConfig
    from deita.selection.config import FilterConfig

    flags = {**config_flags(FilterConfig, exclude=("device",), prefix="filter."),
             **config_flags(ReportConfig, exclude=("examples", "text_chars", "seed"), prefix="report."),
             **config_flags(RunOptions, prefix="run.")}
    preset_field = {f.name: f for f in dataclasses.fields(SelectConfig)}["preset"]
    config_file = click.Option(["--config", "config_file"], type=click.Path(path_type=Path),
                               help=f"YAML with sections {', '.join(SECTIONS)} (keys as the flags of each command).")
    preset = click.Option(["--preset"], help=f"{preset_field.metadata['help']}  [default: {DEFAULT_PRESET}]")
    device = click.Option(["--device"], help=f"{DEVICE_HELP} For every stage.")
    dedup = click.Option(["--dedup/--no-dedup"], default=None, help="Remove exact and near-duplicates before "
                         "scoring (the dedup section; --no-dedup is dedup: {exact: false, near: false}).  "
                         "[default: on]")
    ifd_model = click.Option(["--ifd-model"], help="Score IFD (instruction-following difficulty) in the pass with "
                             "this causal LM (hub id, folder or .gguf file), as `deita score --type ifd` does; "
                             "--strategy ifd ranks by it (the ifd section; its other keys as that command's flags).")

    def run(input: Path, output: Path, config_file: Path | None, preset: str | None, device: str | None,
            dedup: bool | None, ifd_model: str | None, **values: Any) -> None:
        from deita.workflow import SelectPaths, run_select

        data = SelectConfig.from_yaml(config_file) if config_file else {}
        given = nested_values(flags, values)
        labels = {"preset": "--preset", "dedup.exact": "--dedup" if dedup else "--no-dedup",
                  "dedup.near": "--dedup" if dedup else "--no-dedup", "ifd.model": "--ifd-model"}
        if preset is not None:
            given["preset"] = preset
        if dedup is not None:
            given["dedup"] = {"exact": dedup, "near": dedup}
        if ifd_model is not None:
            given["ifd"] = {"model": ifd_model}
        layer = Layer("", given, lambda path: labels.get(path) or flag_label(flags)(path))
        config = SelectConfig.build(data, str(config_file) if config_file else "options", layer, device)
        with command_policy(config.run, SelectPaths(output).rejects) as policy:
            echo_lines(run_select(input, output, config, policy))

    return command("select", "The whole Deita pipeline: dedup (and decontamination, with a decontaminate section), "
                   "complexity and quality scoring, embedding, diversity-aware filtering.\n\nOne read of the pool "
                   "dedups it; a second computes every score and embedding of the kept records as columns in "
                   "OUTPUT.work/ (no copies of records), so a killed run resumes from its finished shards and a rerun "
                   "that changes only the walk (--size, --threshold, --token-budget, --max-share) reuses them; the "
                   "effective config is saved as OUTPUT.config.yaml and bad records (with --on-error skip) go to "
                   "OUTPUT.rejects.jsonl.\n\nExamples:\n\n  deita select examples/sample.jsonl -o out/selected.jsonl "
                   "--size 20 --preset offline\n\n  deita select pool.json -o deita6k.json --size 6000 --config "
                   "run.yaml", [INPUT, OUTPUT, config_file, preset, device, dedup, ifd_model], run, (flags,))


def report_command() -> click.Command:
    from deita.report.config import ReportConfig

    flags = config_flags(ReportConfig, exclude=("write",))
    pool = click.Option(["--pool"], type=click.Path(path_type=Path), required=True,
                        help="The scored pool the selection was made from (the filter's input).")
    embeddings = click.Option(["--embeddings"], type=click.Path(path_type=Path),
                              help="The pool's embeddings (.npy): adds the threshold curve.")
    stats = click.Option(["--stats"], type=click.Path(path_type=Path),
                         help="The filter's statistics JSON (--stats of `deita filter`): funnel and near-duplicate "
                              "evidence.")
    rejects = click.Option(["--rejects"], type=click.Path(path_type=Path),
                           help="A rejects file, to count rejected records by kind.")
    probe = click.Option(["--probe"], type=click.Path(path_type=Path),
                         help="A `deita probe` JSON: adds its section (how much known-bad data the selection keeps).")

    def run(input: Path, output: Path, pool: Path, embeddings: Path | None, stats: Path | None,
            rejects: Path | None, probe: Path | None, **values: Any) -> None:
        from deita.report.run import report_file

        config = build_config(ReportConfig, flags, values)
        echo_lines([f"report → {report_file(input, pool, output, embeddings, stats, config, rejects, None, probe)}"])

    return command("report", "Explain a selection: one self-contained HTML page (funnel, pool vs selection, "
                   "near-duplicate evidence, threshold curve, best and worst picks, per-source breakdown, score "
                   "health).\n\nExample: deita report selected.jsonl --pool scored.jsonl --embeddings emb.npy "
                   "--stats stats.json -o report.html", [SELECTED, OUTPUT, pool, embeddings, stats, rejects, probe], run,
                   (flags,))
