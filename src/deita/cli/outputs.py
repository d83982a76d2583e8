"""What commands do around their work: refuse, before any work, outputs that would overwrite an input or
each other; build the command's bad-record policy; print the result lines."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from deita.data.policy import CLI_SWITCH, RecordPolicy
from deita.errors import DeitaError


def echo_lines(lines: list[str]) -> None:
    """Print a command's result lines to stdout."""
    for line in lines:
        click.echo(line)


def command_name() -> str:
    """The running command as users type it: "deita filter", "deita train sft"."""
    path = click.get_current_context().command_path.split(" ", 1)
    return "deita" + (f" {path[1]}" if len(path) > 1 else "")


def has_flag(flag: str) -> bool:
    """Whether the running command has `flag` (e.g. "--on-error") among its options."""
    return any(flag in getattr(param, "opts", ()) for param in click.get_current_context().command.params)


def command_policy(options: Any, rejects: Path | None, *, write: bool = True,
                   keep_failures: bool = False) -> RecordPolicy:
    """The running command's bad-record policy, rejects into `rejects`. Its hint names `--on-error` only when
    the command has that flag; a command without it cannot skip, and the hint says so."""
    if not has_flag("--on-error"):
        return RecordPolicy.failing(switch=None, who=f"`{command_name()}`")
    return RecordPolicy.for_run(options, rejects, switch=CLI_SWITCH, write=write, keep_failures=keep_failures)


@contextlib.contextmanager
def checked_stage(input: Path, output: Path, options: Any) -> Iterator[RecordPolicy]:
    """Refuse, before any work, outputs that would overwrite the input or each other; then yield the
    command's bad-record policy (rejects beside `output`), closed at the end."""
    from deita.data.paths import check_paths, prepare_output
    from deita.data.policy import rejects_path_for
    from deita.runtime.runner import cache_root

    if not input.exists():
        raise DeitaError(f"{input}: no such file or directory")
    policy = command_policy(options, rejects_path_for(output))  # touches no file before the checks pass
    outputs = {"--output": output, "rejects file": policy.path, "cache": cache_root(options, output)}
    check_paths({"input": input}, outputs)
    prepare_output("--output", output)
    with policy:
        yield policy


@contextlib.contextmanager
def cleaning_policy(input: Path, output: Path, options: Any, side: dict[str, Path],
                    inputs: dict[str, Path]) -> Iterator[RecordPolicy]:
    """Refuse, before any work, outputs that would overwrite an input or each other, or cannot be written;
    then yield the command's bad-record policy (rejects beside `output`), closed at the end."""
    from deita.data.paths import check_paths, prepare_output
    from deita.data.policy import rejects_path_for

    for label, path in {"input": input, **inputs}.items():
        if not path.exists():
            raise DeitaError(f"{path}: no such file or directory" + (f" ({label})" if label != "input" else ""))
    policy = command_policy(options, rejects_path_for(output))  # touches no file before the checks pass
    outputs = {"--output": output, **side, "rejects file": policy.path}
    check_paths({"input": input, **inputs}, outputs)
    for label, path in outputs.items():
        if path is not None:
            prepare_output(label, path)
    with policy:
        yield policy
