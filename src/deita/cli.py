"""The `deita` command. Every option flag is generated from the config dataclasses (`deita.config.option`),
so a flag's name, default and help are declared once, in the config the Python API and YAML files use.

Errors: a usage mistake (unknown option or command, missing option, a value of the wrong type) prints
click's short usage error and exits 2; a value out of range, a bad config file, a bad record or an
environment problem prints one `error:` line and exits 1; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from deita.config import check_config, config_from_mapping, field_types, is_config
from deita.errors import DeitaError
from deita.serve.command import serve_command

_state = {"debug": False}
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


# ---------------------------------------------------------------- flags from config dataclasses


class CommaList(click.ParamType):
    """A comma-separated list: `a,b,c` → ("a", "b", "c"), items converted to `item_type`."""

    def __init__(self, item_type: type) -> None:
        self.item_type = item_type
        self.name = f"{item_type.__name__}[,…]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple:
        if isinstance(value, tuple):
            return value
        items = [part.strip() for part in str(value).split(",") if part.strip()]
        try:
            return tuple(self.item_type(item) for item in items)
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {self.item_type.__name__} values", param, ctx)


@dataclasses.dataclass
class Flag:
    """One generated flag and the config fields (dotted paths) it sets."""

    option: click.Option
    paths: list[str]


def _click_type(tp: Any) -> tuple[Any, bool]:
    """(click type, is_flag) for a config field type."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = args[0]
    if typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0] if typing.get_args(tp) else str
        return CommaList(item), False
    if tp is bool:
        return click.BOOL, True
    return {int: click.INT, float: click.FLOAT}.get(tp, click.STRING), False


def _default_text(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def config_flags(cls: type, defaults: Any = None, exclude: tuple[str, ...] = (), prefix: str = "",
                 flags: dict[str, Flag] | None = None) -> dict[str, Flag]:
    """click options for every field of config `cls` (nested configs flattened), keyed by flag.

    A field shared by nested configs (e.g. max_logprobs of vllm and openai) gets one flag that sets all.
    Defaults are None in click, so only flags given on the command line override YAML or presets.
    """
    flags = {} if flags is None else flags
    defaults = defaults if defaults is not None else cls()
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.metadata.get("cli", True):
            continue
        tp = hints[f.name]
        value = getattr(defaults, f.name)
        if is_config(tp):
            config_flags(tp, value, (), f"{prefix}{f.name}.", flags)
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        if flag in flags:
            flags[flag].paths.append(prefix + f.name)
            continue
        click_type, is_flag = _click_type(tp)
        decls = [f"{flag}/--no-{flag[2:]}" if is_flag else flag]
        if f.metadata.get("short"):
            decls.append(f.metadata["short"])
        help_text = f.metadata.get("help", "")
        shown = _default_text(value)
        if shown and not is_flag or is_flag and value is not None:
            help_text += f"  [default: {shown}]"
        param = "opt_" + flag[2:].replace("-", "_")
        option = click.Option([*decls, param], type=None if is_flag else click_type, default=None,
                              help=help_text, show_default=False)
        flags[flag] = Flag(option, [prefix + f.name])
    return flags


def _nested(flags: dict[str, Flag], values: dict[str, Any]) -> dict[str, Any]:
    """The flags given on the command line as a nested mapping of config fields."""
    out: dict[str, Any] = {}
    for flag in flags.values():
        value = values.get(flag.option.name)
        if value is None:
            continue
        for path in flag.paths:
            node = out
            *parents, leaf = path.split(".")
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = value
    return out


def build_config(cls: type, flags: dict[str, Flag], values: dict[str, Any], base: Any = None) -> Any:
    """The command's config: defaults (or `base`) updated by the flags given, checked before any work."""
    config = config_from_mapping(cls, _nested(flags, values), "options", base=base if base is not None else cls())
    by_path = {path: flag for flag, spec in flags.items() for path in spec.paths}
    check_config(config, label=lambda name: by_path.get(name, name))
    return config


def command(name: str, help: str, params: list[click.Parameter], run: Callable[..., None],
            flag_sets: tuple[dict[str, Flag], ...] = ()) -> click.Command:
    options = [flag.option for flags in flag_sets for flag in flags.values()]
    return click.Command(name, callback=run, params=[*params, *options], help=help, context_settings=CONTEXT)


def _print(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


INPUT = click.Argument(["input"], type=click.Path(path_type=Path))
SELECTED = click.Argument(["input"], type=click.Path(path_type=Path), metavar="SELECTED")
OUTPUT = click.Option(["-o", "--output", "output"], type=click.Path(path_type=Path), required=True,
                      help="Output path.")


# ---------------------------------------------------------------- commands


def _run_flags() -> dict[str, Flag]:
    from deita.runtime.options import RunOptions

    return config_flags(RunOptions)


def _read_flags(exclude: tuple[str, ...] = ()) -> dict[str, Flag]:
    from deita.runtime.options import RunOptions

    keep = ("format", "pairing", "on_error")
    return config_flags(RunOptions, exclude=tuple(f.name for f in dataclasses.fields(RunOptions)
                                                  if f.name not in keep or f.name in exclude))


def _rejects(options: Any, output: Path):
    from deita.data.io import RejectsWriter, rejects_path_for

    return RejectsWriter(rejects_path_for(output)) if options.on_error == "skip" else None


@contextlib.contextmanager
def _checked_stage(input: Path, output: Path, options: Any) -> Iterator[Any]:
    """Refuse, before any work, outputs that would overwrite the input or each other; then yield the rejects
    writer of `--on-error skip` (None for fail), closed at the end."""
    from deita.data.io import rejects_path_for
    from deita.data.paths import check_paths, check_writable
    from deita.runtime.runner import cache_root

    if not input.exists():
        raise DeitaError(f"{input}: no such file or directory")
    outputs = {"--output": output, "rejects file": rejects_path_for(output) if options.on_error == "skip" else None,
               "cache": cache_root(options, output)}
    check_paths({"input": input}, outputs)
    check_writable("--output", output)
    rejects = _rejects(options, output)
    try:
        yield rejects
    finally:
        if rejects is not None:
            rejects.close()


def validate_command() -> click.Command:
    from deita.runtime.options import RunOptions

    flags = _read_flags(exclude=("on_error",))

    def run(input: Path, **values: Any) -> None:
        """Check a data file: counts records and turns, lists every problem; exits 1 if there is any."""
        from deita.data.validate import validate_file

        options = build_config(RunOptions, flags, values)
        report = validate_file(input, fmt=options.format, pairing=options.pairing)
        _print([f"{report.path}: {report.records:,} records, {report.turns:,} turns, format {report.format}, "
                f"file type {report.file_type}"])
        _print([f"note: {note}" for note in report.notes])
        _print([f"problem: {problem}" for problem in report.problems])
        if report.problems:
            _print([f"{len(report.problems):,} problems found (use --on-error skip in other commands to set such "
                    "records aside); by kind:"])
            _print(report.tally())
            raise SystemExit(1)
        _print(["no problems found"])

    return command("validate", "Check a data file: counts records and turns, lists every problem; exits 1 if "
                   "there is any.\n\nExample: deita validate data.jsonl", [INPUT], run, (flags,))


def convert_command() -> click.Command:
    from deita.data.formats import FORMATS
    from deita.runtime.options import RunOptions

    flags = _read_flags(exclude=("pairing",))
    to = click.Option(["--to"], required=True, help=f"Target format: {', '.join(FORMATS)}.")

    def run(input: Path, output: Path, to: str, **values: Any) -> None:
        from deita.data.io import ReadStats, convert_file, rejects_path_for
        from deita.data.paths import check_paths, check_writable

        options = build_config(RunOptions, flags, values)
        if to not in FORMATS:
            raise DeitaError(f"--to: '{to}' is not one of {', '.join(FORMATS)}")
        if not input.exists():
            raise DeitaError(f"{input}: no such file or directory")
        rejects_file = rejects_path_for(output) if options.on_error == "skip" else None
        check_paths({"input": input}, {"--output": output, "rejects file": rejects_file})
        check_writable("--output", output)
        stats = ReadStats()
        rejects = _rejects(options, output)
        try:
            count = convert_file(input, output, to, fmt=options.format, on_error=options.on_error, rejects=rejects,
                                 stats=stats)
        finally:
            if rejects is not None:
                rejects.close()
        _print([f"converted {count:,} of {stats.records:,} records from {stats.format} to {to} → {output}"])
        if stats.rejected:
            _print([f"rejected {stats.rejected:,} records → {rejects_file}"])

    return command("convert", "Convert between ShareGPT, Alpaca and chat-messages records, keeping every other "
                   "field.\n\nExample: deita convert alpaca.json -o sharegpt.jsonl --to sharegpt",
                   [INPUT, OUTPUT, to], run, (flags,))


def score_command() -> click.Command:
    from deita.runtime.options import RunOptions
    from deita.scoring.config import ScoreConfig

    score_flags, run_flags = config_flags(ScoreConfig), _run_flags()

    def run(input: Path, output: Path, **values: Any) -> None:
        from deita.scoring.run import score_file

        config = build_config(ScoreConfig, score_flags, values)
        options = build_config(RunOptions, run_flags, values)
        with _checked_stage(input, output, options) as rejects:
            _print(score_file(input, output, config, options, rejects=rejects).lines())

    return command("score", "Score every turn with a Deita scorer; adds complexity_scores or quality_scores to "
                   "each record.\n\nResumable: rerun the same command after an interruption and finished shards "
                   "are reused.\n\nExample: deita score data.json -o scored.json --type quality",
                   [INPUT, OUTPUT], run, (score_flags, run_flags))


def embed_command() -> click.Command:
    from deita.embedding.embedder import EmbedConfig
    from deita.runtime.options import RunOptions

    embed_flags, run_flags = config_flags(EmbedConfig), _run_flags()

    def run(input: Path, output: Path, **values: Any) -> None:
        from deita.embedding.run import embed_file

        config = build_config(EmbedConfig, embed_flags, values)
        options = build_config(RunOptions, run_flags, values)
        if output.suffix != ".npy":
            raise DeitaError(f"{output}: embeddings are written as a .npy array; give a path ending in .npy")
        with _checked_stage(input, output, options) as rejects:
            _print(embed_file(input, output, config, options, rejects=rejects).lines())

    return command("embed", "Embed every conversation into a memory-mappable .npy for the diversity filter. "
                   "Resumable.\n\nExample: deita embed scored.json -o emb.npy --kind causal --model "
                   "mistralai/Mistral-7B-v0.1", [INPUT, OUTPUT], run, (embed_flags, run_flags))


def filter_command() -> click.Command:
    from deita.runtime.options import RunOptions
    from deita.selection.run import FilterConfig

    filter_flags, read_flags = config_flags(FilterConfig), _read_flags(exclude=("pairing", "on_error"))
    embeddings = click.Option(["--embeddings"], type=click.Path(path_type=Path),
                              help="EMB.npy from `deita embed` (strategies deita and kcenter).")
    stats = click.Option(["--stats"], type=click.Path(path_type=Path), help="Write selection statistics as JSON here.")

    def run(input: Path, output: Path, embeddings: Path | None, stats: Path | None, **values: Any) -> None:
        from deita.selection.run import filter_file

        config = build_config(FilterConfig, filter_flags, values)
        options = build_config(RunOptions, read_flags, values)
        _print(filter_file(input, output, config, embeddings, fmt=options.format, stats_path=stats).lines())

    return command("filter", "Select the best diverse samples: score-first, skipping near-duplicates of what was "
                   "already taken.\n\nExample: deita filter scored.jsonl --embeddings emb.npy -o selected.jsonl "
                   "--size 6000 --stats stats.json", [INPUT, OUTPUT, embeddings, stats], run,
                   (filter_flags, read_flags))


def select_command() -> click.Command:
    from deita.report.run import ReportConfig
    from deita.runtime.devices import DEVICE_HELP
    from deita.runtime.options import RunOptions
    from deita.selection.run import FilterConfig
    from deita.workflow import DEFAULT_PRESET, PRESETS, SECTIONS, SelectConfig

    filter_flags = config_flags(FilterConfig, exclude=("device",))
    report_flags = config_flags(ReportConfig, exclude=("examples", "text_chars", "seed"))
    run_flags = config_flags(RunOptions)
    preset_field = {f.name: f for f in dataclasses.fields(SelectConfig)}["preset"]
    config_file = click.Option(["--config", "config_file"], type=click.Path(path_type=Path),
                               help=f"YAML with sections {', '.join(SECTIONS)} (keys as the flags of each command).")
    preset = click.Option(["--preset"], help=f"{preset_field.metadata['help']}  [default: {DEFAULT_PRESET}]")
    device = click.Option(["--device"], help=f"{DEVICE_HELP} For every stage.")
    dedup = click.Option(["--dedup/--no-dedup"], default=None, help="Remove exact and near-duplicates before "
                         "scoring (the dedup section; --no-dedup is dedup: {exact: false, near: false}).  "
                         "[default: on]")

    def run(input: Path, output: Path, config_file: Path | None, preset: str | None, device: str | None,
            dedup: bool | None, **values: Any) -> None:
        from deita.workflow import run_select

        data = SelectConfig.from_yaml(config_file) if config_file else {}
        source = str(config_file) if config_file else "options"
        if preset is not None:
            if preset not in PRESETS:
                raise DeitaError(f"--preset: '{preset}' is not one of {', '.join(PRESETS)}")
            data["preset"] = preset
        config = SelectConfig.build(data, source)
        config = dataclasses.replace(config, filter=build_config(FilterConfig, filter_flags, values, config.filter),
                                     report=build_config(ReportConfig, report_flags, values, config.report),
                                     run=build_config(RunOptions, run_flags, values, config.run))
        if dedup is not None:
            config = dataclasses.replace(config, dedup=dataclasses.replace(config.dedup, exact=dedup, near=dedup))
        if device is not None:
            config = dataclasses.replace(config, **{
                name: dataclasses.replace(getattr(config, name), device=device)
                for name in ("complexity", "quality", "embed", "filter")})
        check_config(config)
        _print(run_select(input, output, config))

    return command("select", "The whole Deita pipeline: dedup (and decontamination, with a decontaminate section), "
                   "complexity and quality scoring, embedding, diversity-aware filtering.\n\nEach stage is cached "
                   "next to OUTPUT, so rerunning the same command resumes; the "
                   "effective config is saved as OUTPUT.config.yaml and bad records (with --on-error skip) go to "
                   "OUTPUT.rejects.jsonl.\n\nExamples:\n\n  deita select examples/sample.jsonl -o out/selected.jsonl "
                   "--size 20 --preset offline\n\n  deita select pool.json -o deita6k.json --size 6000 --config "
                   "run.yaml", [INPUT, OUTPUT, config_file, preset, device, dedup], run,
                   (filter_flags, report_flags, run_flags))


def report_command() -> click.Command:
    from deita.report.run import ReportConfig

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

    def run(input: Path, output: Path, pool: Path, embeddings: Path | None, stats: Path | None,
            rejects: Path | None, **values: Any) -> None:
        from deita.report.run import report_file

        config = build_config(ReportConfig, flags, values)
        _print([f"report → {report_file(input, pool, output, embeddings, stats, config, rejects)}"])

    return command("report", "Explain a selection: one self-contained HTML page (funnel, pool vs selection, "
                   "near-duplicate evidence, threshold curve, best and worst picks, per-source breakdown, score "
                   "health).\n\nExample: deita report selected.jsonl --pool scored.jsonl --embeddings emb.npy "
                   "--stats stats.json -o report.html", [SELECTED, OUTPUT, pool, embeddings, stats, rejects], run,
                   (flags,))


def _job_flags(exclude: tuple[str, ...] = ()) -> dict[str, Flag]:
    """RunOptions flags of the LLM jobs (evol, rank): read, reject, shard and progress options."""
    from deita.evol.config import JOB_RUN_OPTIONS, RUN_FLAGS_UNUSED
    from deita.runtime.options import RunOptions

    return config_flags(RunOptions, JOB_RUN_OPTIONS, exclude=(*RUN_FLAGS_UNUSED, *exclude))


def _llm_flags(cls: type) -> dict[str, Flag]:
    from deita.evol.config import SERVER_FLAGS_UNUSED

    flags = config_flags(cls)
    for flag in SERVER_FLAGS_UNUSED:
        flags.pop(flag)
    return flags


DRY_RUN = click.Option(["--dry-run"], is_flag=True, help="Estimate the input and output tokens of the whole job "
                       "from the input, without calling the server.")


def evol_command() -> click.Command:
    group = click.Group("evol", context_settings=CONTEXT, help="EVOL: grow scorer training data from seeds with any "
                        "OpenAI-compatible chat server. Then `deita rank`.\n\nExample: deita evol complexity "
                        "seeds.json -o evolved.jsonl --base-url http://host:8000/v1 --served-model NAME")
    for score_type in ("complexity", "quality"):
        group.add_command(_evol_type_command(score_type))
    return group


def _evol_type_command(score_type: str) -> click.Command:
    from deita.evol.config import JOB_RUN_OPTIONS, EvolConfig
    from deita.runtime.options import RunOptions

    evol_flags, run_flags = _llm_flags(EvolConfig), _job_flags()
    evol_flags.pop("--type")
    what = "instruction" if score_type == "complexity" else "response (to the fixed instruction)"
    seeds = click.Argument(["input"], type=click.Path(path_type=Path), metavar="SEEDS")

    def run(input: Path, output: Path, dry_run: bool, **values: Any) -> None:
        from deita.evol.run import estimate_evol, evolve_file

        config = build_config(EvolConfig, evol_flags, values, EvolConfig(type=score_type))
        options = build_config(RunOptions, run_flags, values, JOB_RUN_OPTIONS)
        _print(estimate_evol(input, output, config, options) if dry_run else
               evolve_file(input, output, config, options).lines())

    return command(score_type, f"Evolve the first turn's {what} of every seed --steps times, each step from the "
                   "previous variant, into EVOLVED (JSONL). Failed evolutions go to OUTPUT.rejects.jsonl with the "
                   "reason. Resumable; prints the tokens spent.\n\nExample: deita evol "
                   f"{score_type} seeds.json -o evolved.jsonl --base-url http://host:8000/v1 --served-model NAME",
                   [seeds, OUTPUT, DRY_RUN], run, (evol_flags, run_flags))


def rank_command() -> click.Command:
    from deita.evol.config import JOB_RUN_OPTIONS, RankConfig
    from deita.runtime.options import RunOptions

    rank_flags, run_flags = _llm_flags(RankConfig), _job_flags(exclude=("format", "pairing"))
    evolved = click.Argument(["input"], type=click.Path(path_type=Path), metavar="EVOLVED")

    def run(input: Path, output: Path, dry_run: bool, **values: Any) -> None:
        from deita.evol.run import estimate_rank, rank_file

        config = build_config(RankConfig, rank_flags, values)
        options = build_config(RunOptions, run_flags, values, JOB_RUN_OPTIONS)
        _print(estimate_rank(input, output, config, options) if dry_run else
               rank_file(input, output, config, options).lines())

    return command("rank", "Score the variants of every EVOLVED row jointly (1..6 for 5 steps) in one call each, "
                   "shown in a seeded random order, into RANKED (JSONL). Invalid scores are asked again, then the row "
                   "is a reject; never a default. Resumable; prints the tokens spent.\n\nExample: deita rank "
                   "evolved.jsonl -o ranked.jsonl --base-url http://host:8000/v1 --served-model NAME",
                   [evolved, OUTPUT, DRY_RUN], run, (rank_flags, run_flags))


def _train_command(kind: str) -> click.Command:
    from deita.runtime.options import RunOptions
    from deita.training.config import READ_OPTIONS, DPOConfig, SFTConfig, load_yaml
    from deita.training.scorer import ScorerTrainConfig

    cls = {"sft": SFTConfig, "dpo": DPOConfig, "scorer": ScorerTrainConfig}[kind]
    train_flags = config_flags(cls)
    read_flags = config_flags(RunOptions, exclude=tuple(f.name for f in dataclasses.fields(RunOptions)
                                                        if f.name not in READ_OPTIONS))
    config_file = click.Option(["--config", "config_file"], type=click.Path(path_type=Path),
                               help="YAML with the options (keys as the flags, read options under run:); flags "
                                    "override it. OUTDIR/train_config.yaml has this shape.")
    outdir = click.Option(["-o", "--output", "output"], type=click.Path(path_type=Path), required=True,
                          help="Output folder: the trained model and tokenizer, logs, checkpoints while training.")

    def run(input: Path, output: Path, config_file: Path | None, **values: Any) -> None:
        config, options = cls(), RunOptions()
        if config_file is not None:
            config, options = load_yaml(config_file, cls, options)
        config = build_config(cls, train_flags, values, config)
        options = build_config(RunOptions, read_flags, values, options)
        if kind == "sft":
            from deita.training.sft import run_sft as train
        elif kind == "dpo":
            from deita.training.dpo import run_dpo as train
        else:
            from deita.training.scorer import run_scorer as train
        _print(train(input, output, config, options).lines())

    help = {"sft": "Supervised fine-tuning on DATA (any file deita reads, e.g. `deita select`'s output) with the "
                   "paper's recipe: Vicuna v1.1, loss on the answers only, packed rows, lr 2e-5 cosine, 6 epochs."
                   "\n\nRerun the same command after an interruption to resume from the last checkpoint. Several "
                   "GPUs: the same command under `accelerate launch` (see docs/training.md).\n\nExample: deita "
                   "train sft selected.jsonl -o out/sft --model mistralai/Mistral-7B-v0.1",
            "dpo": "DPO on PAIRS (prompt, chosen, rejected) after SFT, with the paper's settings: beta 0.1, lr 5e-7 "
                   "linear, prompts cut to 512 tokens; the reference is a frozen copy of --model.\n\nExample: "
                   "deita train dpo pairs.jsonl -o out/dpo --model out/sft",
            "scorer": "Train a Deita scorer on RANKED (from `deita rank`): the scorer prompt exactly as `deita "
                      "score` builds it, then the score digit; the loss falls on the digit only, the SFT recipe "
                      "otherwise. Then: deita score --model OUTDIR.\n\nExample: deita train scorer ranked.jsonl "
                      "-o out/complexity-scorer --model meta-llama/Llama-3.2-1B --type complexity"}[kind]
    return command(kind, help, [INPUT, outdir, config_file], run, (train_flags, read_flags))


def train_command() -> click.Command:
    return click.Group("train", commands={kind: _train_command(kind) for kind in ("sft", "dpo", "scorer")},
                       context_settings=CONTEXT, help="Train on the selection: `sft`, then `dpo`; or grow your own "
                       "scorer from EVOL data: `scorer` (needs the train extra: pip install -e '.[train]').")


def dpo_data_command() -> click.Command:
    from deita.runtime.options import RunOptions
    from deita.training.config import DPODataConfig

    sample_flags, read_flags = config_flags(DPODataConfig), _read_flags(exclude=("format", "pairing"))

    def run(input: Path, output: Path, **values: Any) -> None:
        from deita.data.io import rejects_path_for
        from deita.data.paths import check_paths, check_writable
        from deita.training.data import sample_pairs

        config = build_config(DPODataConfig, sample_flags, values)
        options = build_config(RunOptions, read_flags, values)
        if not input.exists():
            raise DeitaError(f"{input}: no such file or directory")
        rejects_file = rejects_path_for(output) if options.on_error == "skip" else None
        check_paths({"input": input}, {"--output": output, "rejects file": rejects_file})
        check_writable("--output", output)
        rejects = _rejects(options, output)
        try:
            _print(sample_pairs(input, output, config.size, config.seed, options.on_error, rejects,
                                rejects_hint=rejects_path_for(output)).lines())
        finally:
            if rejects is not None:
                rejects.close()

    return command("dpo-data", "Sample DPO pairs the way the paper did (10K with seed 42) from a local "
                   "UltraFeedback-binarized style file (prompt, chosen, rejected).\n\nExample: deita dpo-data "
                   "train_prefs.parquet -o pairs.jsonl --size 10000 --seed 42", [INPUT, OUTPUT], run,
                   (sample_flags, read_flags))


def _clean_flags() -> dict[str, Flag]:
    """The RunOptions a single-pass cleaning command reads: format, pairing, bad records, progress."""
    from deita.runtime.options import RunOptions

    keep = ("format", "pairing", "on_error", "quiet", "progress_interval")
    return config_flags(RunOptions, exclude=tuple(f.name for f in dataclasses.fields(RunOptions) if f.name not in keep))


def _clean_paths(input: Path, output: Path, options: Any, side: dict[str, Path], inputs: dict[str, Path]) -> None:
    """Refuse, before any work, outputs that would overwrite an input or each other, or cannot be written."""
    from deita.data.io import rejects_path_for
    from deita.data.paths import check_paths, check_writable

    for label, path in {"input": input, **inputs}.items():
        if not path.exists():
            raise DeitaError(f"{path}: no such file or directory" + (f" ({label})" if label != "input" else ""))
    outputs = {"--output": output, **side,
               "rejects file": rejects_path_for(output) if options.on_error == "skip" else None}
    check_paths({"input": input, **inputs}, outputs)
    for label, path in outputs.items():
        if path is not None:
            check_writable(label, path)


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
        _clean_paths(input, output, options, {"duplicates file": duplicates_path_for(output)}, {})
        rejects = _rejects(options, output)
        try:
            _print(dedup_file(input, output, config, options, rejects=rejects).lines())
        finally:
            if rejects is not None:
                rejects.close()

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
        from deita.dedup.run import contaminated_path_for, decontaminate_file

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
        _clean_paths(input, output, options, {"contaminated file": contaminated_path_for(output)}, evals)
        rejects = _rejects(options, output)
        try:
            _print(decontaminate_file(input, output, config, options, rejects=rejects, embed=embed).lines())
        finally:
            if rejects is not None:
                rejects.close()

    return command("decontaminate", "Remove records that hold the prompts of evaluation sets.\n\nEach checked "
                   "text (the first instruction, or every message with --field all) is tested for a run of --ngram "
                   "words shared with an eval prompt (after NFKC, casefold, punctuation removed); with "
                   "--embedding-threshold, also for cosine similarity with an eval prompt (paraphrases). "
                   "OUT.contaminated.jsonl names each removed record, the eval item and the shared words or the "
                   "similarity.\n\nExample: deita decontaminate pool.jsonl --against mt_bench/question.jsonl "
                   "alpaca_eval.json -o clean.jsonl", [INPUT, more, OUTPUT], run, (flags, embed_flags, run_flags))


COMMANDS = {"validate": validate_command, "convert": convert_command, "score": score_command,
            "embed": embed_command, "filter": filter_command, "select": select_command, "report": report_command,
            "evol": evol_command, "rank": rank_command,
            "train": train_command, "dpo-data": dpo_data_command, "dedup": dedup_command,
            "decontaminate": decontaminate_command,
            "serve": serve_command}


class LazyGroup(click.Group):
    """Builds a command's flags only when that command runs (they import the config modules)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        factory = COMMANDS.get(name)
        return factory() if factory else None


@click.group(cls=LazyGroup, context_settings=CONTEXT, invoke_without_command=False, no_args_is_help=False,
             help="Deita: pick the few thousand best instruction-tuning samples from a large pool "
                  "(complexity × quality scores, diversity-aware selection).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
def app(debug: bool) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("deita").setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)  # libraries' deprecation notes are not for users
        # read by transformers and the hub when a stage first imports them: importing transformers here
        # would add seconds to every command, convert, validate and filter included. The hub's setting also
        # hides its "Loading weights" / "Writing model shards" bars: deita prints its own progress
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        if "huggingface_hub" in sys.modules:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()


def _error(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: people get a short usage error (exit 2) or one `error:` line (exit 1), not a traceback."""
    args = sys.argv[1:] if argv is None else argv
    _state["debug"] = "--debug" in args[:1]
    try:
        if not args:
            raise click.UsageError("Missing command.", click.Context(app, info_name="deita"))
        app.main(args=args, prog_name="deita", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.Abort:
        _error("aborted")
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        if _state["debug"]:
            raise
        _error("interrupted; rerun the same command to resume from the finished shards")
        sys.exit(130)
    except DeitaError as err:
        if _state["debug"]:
            raise
        _error(str(err))
        sys.exit(1)
    except OSError as err:
        if _state["debug"]:
            raise
        where = f": {err.filename}" if err.filename else ""
        _error(f"{err.strerror or err}{where}")
        sys.exit(1)


if __name__ == "__main__":
    main()
