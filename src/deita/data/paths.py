"""Checks on a command's paths before any work: no output overwrites an input or another output, and
every output can be written where it is asked for.

A run that discovers such a clash at the end (the atomic writer renaming its output over the input it
was still reading, two outputs written to one file) loses hours of work or the input itself, so
commands call these first. Labels are what the user typed or reads: ``"input"``, ``"--output"``,
``"--stats"``, ``"rejects file"``, ``"cache"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from deita.errors import DeitaError

from .source import compression_of, inner_name

PathLike = str | os.PathLike


def _real(path: PathLike) -> Path:
    """The absolute path with every symlink resolved (also for a path that does not exist yet)."""
    return Path(os.path.realpath(path))


def _same_file(a: Path, b: Path) -> bool:
    """Same path after resolving, or two existing names of one file (hard links: same device and inode)."""
    if a == b:
        return True
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _inside(inner: Path, outer: Path) -> bool:
    return inner != outer and inner.is_relative_to(outer)


def check_paths(inputs: Mapping[str, PathLike | None], outputs: Mapping[str, PathLike | None]) -> None:
    """Raise ``DeitaError`` when an output is one of the inputs, lies inside an input folder (a dataset),
    is a folder that holds an input (e.g. a cache directory), or is the same file as another output.

    Paths are compared after resolving ``./``, relative paths and symlinks, and existing files also by
    device and inode, so a hard link to the input is caught too. ``None`` paths are left out.
    """
    ins = [(label, p, _real(p)) for label, p in inputs.items() if p is not None]
    outs = [(label, p, _real(p)) for label, p in outputs.items() if p is not None]
    for n, (olabel, o, oreal) in enumerate(outs):
        for ilabel, i, ireal in ins:
            if _same_file(oreal, ireal):
                raise DeitaError(f"{olabel} {o} is the {ilabel} file {i}: refusing to overwrite the {ilabel}")
            if _inside(oreal, ireal):
                raise DeitaError(
                    f"{olabel} {o} is inside the {ilabel} folder {i}: write it outside the {ilabel}"
                )
            if _inside(ireal, oreal):
                raise DeitaError(
                    f"{olabel} {o} is a folder that holds the {ilabel} {i}: writing it would replace the "
                    f"{ilabel}; give {olabel} a path outside it"
                )
        for olabel2, o2, oreal2 in outs[n + 1 :]:
            if _same_file(oreal2, oreal):
                raise DeitaError(
                    f"{olabel2} {o2} is the same file as {olabel} {o}: give them different paths"
                )


def check_writable(label: str, path: PathLike) -> None:
    """Raise a one-line ``DeitaError`` unless ``path`` can be written: its folder exists or can be created
    (no existing file on the way) and is writable. Creates nothing."""
    target = Path(path)
    if compression_of(target):
        raise DeitaError(f"{label} {target}: compressed outputs are not written (inputs are read compressed); "
                         f"write {inner_name(target).name} and compress it afterwards")
    folder = target.parent
    while not folder.exists():
        if folder.is_symlink():  # a dangling symlink: creating the folder would fail
            raise DeitaError(f"{label} {target}: {folder} is a broken symbolic link")
        folder = folder.parent
    if not folder.is_dir():
        raise DeitaError(f"{label} {target}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DeitaError(f"{label} {target}: cannot write in {folder} (permission denied)")
    if target.is_dir() and target.suffix.lower() in (".json", ".jsonl", ".parquet"):
        raise DeitaError(f"{label} {target}: a folder is in the way of the output file")


def prepare_output(label: str, path: PathLike) -> None:
    """``check_writable``, then create the output's folder, so a command fails on its paths before any
    work and never after it (a missing folder, a read-only one)."""
    check_writable(label, path)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DeitaError(f"{label} {path}: cannot create its folder ({e.strerror or e})") from e
