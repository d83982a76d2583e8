"""Flags from config dataclasses (`deita.config.option`): a flag's name, default and help are declared once,
in the config the Python API and YAML files use, and every command builds its options here."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from deita.config import field_types, is_config
from deita.config_layers import Layer, build_layered
from deita.errors import quote

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


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
            self.fail(f"{quote(value)} is not a comma-separated list of {self.item_type.__name__} values", param, ctx)


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
    `exclude` names fields of `cls`: `seed`, or `openai.http_tries` for a field of a nested config.
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
            inner = tuple(name.removeprefix(f"{f.name}.") for name in exclude if name.startswith(f"{f.name}."))
            config_flags(tp, value, inner, f"{prefix}{f.name}.", flags)
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


def nested_values(flags: dict[str, Flag], values: dict[str, Any]) -> dict[str, Any]:
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


def flag_label(flags: dict[str, Flag]) -> Callable[[str], str]:
    """A config path → the flag that sets it (errors name what the user typed)."""
    by_path = {path: flag for flag, spec in flags.items() for path in spec.paths}
    return lambda path: by_path.get(path, path)


def flag_layer(flags: dict[str, Flag], values: dict[str, Any]) -> Layer:
    """The flags given on the command line as the last layer of settings."""
    return Layer("", nested_values(flags, values), flag_label(flags))


def build_config(cls: type, flags: dict[str, Flag], values: dict[str, Any], base: Any = None,
                 layers: tuple[Layer, ...] = ()) -> Any:
    """The command's config: defaults (or `base`), then `layers` (a YAML file), then the flags given; built
    and checked once, before any work."""
    return build_layered(cls, [*layers, flag_layer(flags, values)], base)


def command(name: str, help: str, params: list[click.Parameter], run: Callable[..., None],
            flag_sets: tuple[dict[str, Flag], ...] = ()) -> click.Command:
    options = [flag.option for flags in flag_sets for flag in flags.values()]
    return click.Command(name, callback=run, params=[*params, *options], help=help, context_settings=CONTEXT)


INPUT = click.Argument(["input"], type=click.Path(path_type=Path))
SELECTED = click.Argument(["input"], type=click.Path(path_type=Path), metavar="SELECTED")
OUTPUT = click.Option(["-o", "--output", "output"], type=click.Path(path_type=Path), required=True,
                      help="Output path.")


def run_option_flags() -> dict[str, Flag]:
    """Every RunOptions flag (the stage commands: score, embed, select)."""
    from deita.runtime.options import RunOptions

    return config_flags(RunOptions)


def read_option_flags(exclude: tuple[str, ...] = ()) -> dict[str, Flag]:
    """The RunOptions flags of reading: format, pairing and on_error, less `exclude`."""
    from deita.runtime.options import RunOptions

    keep = ("format", "pairing", "on_error")
    return config_flags(RunOptions, exclude=tuple(f.name for f in dataclasses.fields(RunOptions)
                                                  if f.name not in keep or f.name in exclude))
