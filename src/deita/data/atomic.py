"""Temporary files beside an output, which clean up after themselves.

Every atomic writer (records, ``.npy`` sinks, shard caches, manifests, reports) writes to ``temp_path(target)``
and moves it into place with ``commit``; on any failure it calls ``discard``. The registry of live temporary
files lets the CLI remove whatever is left on an interrupt (SIGINT, SIGTERM) or an error (``remove_all``) and
name the file being written when the disk fills (``writing``). A temporary file left by a process that no
longer runs (``kill -9``) is removed by the next writer of the same target (``sweep_stale``), so a rerun
starts clean.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

from deita.errors import DeitaError

_LIVE: dict[Path, Path] = {}
"""Temporary file or folder → the target it becomes, for every write in flight in this process."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep_stale(target: Path) -> None:
    """Remove the temporary files of ``target`` that a process no longer running left behind."""
    prefix = f".{target.name}."
    try:
        siblings = list(target.parent.iterdir()) if target.parent.is_dir() else []
    except OSError:
        return
    for path in siblings:
        name = path.name
        if not name.startswith(prefix) or ".tmp" not in name:
            continue
        pid = name[len(prefix):].partition(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            _remove(path)


def temp_path(target: str | Path, suffix: str = ".tmp") -> Path:
    """A fresh temporary path beside ``target`` (``.NAME.PID.RANDOM.tmp``), registered until ``commit`` or
    ``discard``; stale ones of dead processes are removed first."""
    target = Path(target)
    sweep_stale(target)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")
    _LIVE[temporary] = target
    return temporary


def track(temporary: Path, target: Path) -> None:
    """Register a temporary path made by other means (a helper file of a writer) for cleanup."""
    _LIVE[temporary] = target


def commit(temporary: Path, target: str | Path) -> None:
    """Move ``temporary`` to ``target`` (a file, or a folder replacing a folder), then forget it."""
    target = Path(target)
    try:
        if target.is_dir() and not target.is_symlink():
            aside = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.old")
            os.replace(target, aside)
            os.replace(temporary, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(temporary, target)
    except OSError as e:
        raise write_error(e, target) from e
    _LIVE.pop(temporary, None)


def discard(temporary: Path) -> None:
    """Remove a temporary file or folder (if there) and forget it."""
    _remove(temporary)
    _LIVE.pop(temporary, None)


def remove_all() -> list[Path]:
    """Remove every temporary file still registered (the CLI calls this on an interrupt or error); returns
    their targets."""
    targets = []
    for temporary, target in list(_LIVE.items()):
        discard(temporary)
        targets.append(target)
    return targets


def target_of(temporary: Path) -> Path:
    """The output a registered temporary file belongs to (itself when not registered)."""
    return _LIVE.get(temporary, temporary)


def writing() -> list[Path]:
    """The targets being written now."""
    return list(dict.fromkeys(_LIVE.values()))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n:,.1f} TB"


def write_error(e: OSError, target: Path, written: int | None = None, needed: int | None = None) -> DeitaError:
    """One line for a failed write: the target's path, the reason and, for a full disk, the bytes written
    so far or needed and the space free there."""
    reason = e.strerror or str(e)
    parts = [f"{target}: cannot write ({reason})"]
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = shutil.disk_usage(target.parent if target.parent.exists() else Path.cwd()).free
        except OSError:
            free = None
        facts = []
        if needed is not None:
            facts.append(f"{_size(needed)} needed")
        if written:  # 0: the first buffer of the file could not be flushed
            facts.append(f"{_size(written)} written before it filled")
        if free is not None:
            facts.append(f"{_size(free)} free in {target.parent}")
        if facts:
            parts.append("; ".join(facts))
        parts.append("the partial file was removed; free some space or write elsewhere, then run again")
    return DeitaError(": ".join(parts[:1]) + "".join(f"; {p}" for p in parts[1:]))


def write_bytes(target: str | Path, data: bytes, *, sync: bool = False) -> None:
    """Write ``data`` to ``target`` atomically (temporary file, then rename); nothing is left on failure."""
    target = Path(target)
    temporary = temp_path(target)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
    except OSError as e:
        discard(temporary)
        raise write_error(e, target, needed=len(data)) from e
    except BaseException:
        discard(temporary)
        raise
    commit(temporary, target)
