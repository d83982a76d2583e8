"""The `deita` command. Every option flag is generated from the config dataclasses (`deita.config.option`),
so a flag's name, default and help are declared once, in the config the Python API and YAML files use.

Errors: a usage mistake (unknown option or command, missing option, a value of the wrong type) prints
click's short usage error and exits 2; a value out of range, a bad config file, a bad record or an
environment problem prints one `error:` line and exits 1; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from deita.config import check_config, config_from_mapping, field_types, is_config
from deita.errors import DeitaError

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
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType")):
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
        if shown and not is_flag:
            help_text += f"  [default: {shown}]"
        elif is_flag and value is not None:
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


def _stage_paths(input: Path, output: Path, options: Any) -> None:
    """Refuse, before any work, outputs that would overwrite the input or each other."""
    from deita.data.io import rejects_path_for
    from deita.data.paths import check_paths, check_writable
    from deita.runtime.runner import cache_root

    if not input.exists():
        raise DeitaError(f"{input}: no such file or directory")
    outputs = {"--output": output, "rejects file": rejects_path_for(output) if options.on_error == "skip" else None,
               "cache": cache_root(options, output)}
    check_paths({"input": input}, outputs)
    check_writable("--output", output)


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
        _stage_paths(input, output, options)
        rejects = _rejects(options, output)
        try:
            _print(score_file(input, output, config, options, rejects=rejects).lines())
        finally:
            if rejects is not None:
                rejects.close()

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
        _stage_paths(input, output, options)
        rejects = _rejects(options, output)
        try:
            _print(embed_file(input, output, config, options, rejects=rejects).lines())
        finally:
            if rejects is not None:
                rejects.close()

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
    from deita.runtime.devices import DEVICE_HELP
    from deita.runtime.options import RunOptions
    from deita.selection.run import FilterConfig
    from deita.workflow import DEFAULT_PRESET, PRESETS, SECTIONS, SelectConfig

    filter_flags = config_flags(FilterConfig, exclude=("device",))
    run_flags = config_flags(RunOptions)
    preset_field = {f.name: f for f in dataclasses.fields(SelectConfig)}["preset"]
    config_file = click.Option(["--config", "config_file"], type=click.Path(path_type=Path),
                               help=f"YAML with sections {', '.join(SECTIONS)} (keys as the flags of each command).")
    preset = click.Option(["--preset"], help=f"{preset_field.metadata['help']}  [default: {DEFAULT_PRESET}]")
    device = click.Option(["--device"], help=f"{DEVICE_HELP} For every stage.")

    def run(input: Path, output: Path, config_file: Path | None, preset: str | None, device: str | None,
            **values: Any) -> None:
        from deita.workflow import run_select

        data = SelectConfig.from_yaml(config_file) if config_file else {}
        source = str(config_file) if config_file else "options"
        if preset is not None:
            if preset not in PRESETS:
                raise DeitaError(f"--preset: '{preset}' is not one of {', '.join(PRESETS)}")
            data["preset"] = preset
        config = SelectConfig.build(data, source)
        config = dataclasses.replace(config, filter=build_config(FilterConfig, filter_flags, values, config.filter),
                                     run=build_config(RunOptions, run_flags, values, config.run))
        if device is not None:
            config = dataclasses.replace(config, **{
                name: dataclasses.replace(getattr(config, name), device=device)
                for name in ("complexity", "quality", "embed", "filter")})
        check_config(config)
        _print(run_select(input, output, config))

    return command("select", "The whole Deita pipeline: complexity and quality scoring, embedding, diversity-aware "
                   "filtering.\n\nEach stage is cached next to OUTPUT, so rerunning the same command resumes; the "
                   "effective config is saved as OUTPUT.config.yaml and bad records (with --on-error skip) go to "
                   "OUTPUT.rejects.jsonl.\n\nExamples:\n\n  deita select examples/sample.jsonl -o out/selected.jsonl "
                   "--size 20 --preset offline\n\n  deita select pool.json -o deita6k.json --size 6000 --config "
                   "run.yaml", [INPUT, OUTPUT, config_file, preset, device], run, (filter_flags, run_flags))


COMMANDS = {"validate": validate_command, "convert": convert_command, "score": score_command,
            "embed": embed_command, "filter": filter_command, "select": select_command}


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
        # read by transformers and the hub when a stage first imports them: importing transformers here
        # would add seconds to every command, convert, validate and filter included
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()


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
