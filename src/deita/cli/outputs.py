"""What commands do around their work: refuse, before any work, outputs that would overwrite an input or
each other; open the rejects writer of `--on-error skip`; print the result lines."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from deita.errors import DeitaError


def echo_lines(lines: list[str]) -> None:
    """Print a command's result lines to stdout."""
    for line in lines:
        click.echo(line)


def rejects_writer(options: Any, output: Path):
    """The rejects writer beside `output` under `--on-error skip`; None under fail."""
    from deita.data.io import RejectsWriter, rejects_path_for

    return RejectsWriter(rejects_path_for(output)) if options.on_error == "skip" else None


@contextlib.contextmanager
def checked_stage(input: Path, output: Path, options: Any) -> Iterator[Any]:
    """Refuse, before any work, outputs that would overwrite the input or each other; then yield the rejects
    writer of `--on-error skip` (None for fail), closed at the end."""
    from deita.data.io import rejects_path_for
    from deita.data.paths import check_paths, prepare_output
    from deita.runtime.runner import cache_root

    if not input.exists():
        raise DeitaError(f"{input}: no such file or directory")
    outputs = {"--output": output, "rejects file": rejects_path_for(output) if options.on_error == "skip" else None,
               "cache": cache_root(options, output)}
    check_paths({"input": input}, outputs)
    prepare_output("--output", output)
    rejects = rejects_writer(options, output)
    try:
        yield rejects
    finally:
        if rejects is not None:
            rejects.close()


def clean_paths(input: Path, output: Path, options: Any, side: dict[str, Path], inputs: dict[str, Path]) -> None:
    """Refuse, before any work, outputs that would overwrite an input or each other, or cannot be written."""
    from deita.data.io import rejects_path_for
    from deita.data.paths import check_paths, prepare_output

    for label, path in {"input": input, **inputs}.items():
        if not path.exists():
            raise DeitaError(f"{path}: no such file or directory" + (f" ({label})" if label != "input" else ""))
    outputs = {"--output": output, **side,
               "rejects file": rejects_path_for(output) if options.on_error == "skip" else None}
    check_paths({"input": input, **inputs}, outputs)
    for label, path in outputs.items():
        if path is not None:
            prepare_output(label, path)
