"""data/atomic.py through the installed command: a full disk, SIGTERM and SIGINT leave no temporary file and
no partial output, the error names the path being written, a rerun starts clean, and output folders are
made (and checked) before any work."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import sharegpt, write_jsonl

from deita.data import atomic, writers
from deita.data.io import RecordWriter
from deita.errors import DeitaError

DEITA = [sys.executable, "-m", "deita.cli"]


def deita(*args: object, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*DEITA, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_error(result: subprocess.CompletedProcess, code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0].removeprefix("error: ")


def leftovers(folder: Path) -> list[Path]:
    """Every temporary file under ``folder`` (the scan each fault test ends with)."""
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.fixture(scope="module")
def big_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 30 MB of JSONL: long enough that a signal lands while the output is being written."""
    path = tmp_path_factory.mktemp("pool") / "big.jsonl"
    with open(path, "w") as f:
        for i in range(60_000):
            record = sharegpt(("human", f"question {i} " * 30), ("gpt", f"answer {i} " * 60), id=f"r{i}")
            f.write(json.dumps(record) + "\n")
    return path


def _signal_while_writing(cmd: list, folder: Path, signum: int) -> subprocess.CompletedProcess:
    """Start ``cmd``, wait until a temporary output exists under ``folder``, send ``signum``."""
    process = subprocess.Popen([*DEITA, *map(str, cmd)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not leftovers(folder) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, f"finished before a temporary file appeared: {process.communicate()}"
    time.sleep(0.2)  # well inside the write
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize(("signum", "code", "word"), [(signal.SIGTERM, 130, "terminated"),
                                                       (signal.SIGINT, 130, "interrupted")])
def test_a_signal_while_converting_leaves_nothing(tmp_path: Path, big_pool: Path, signum: int, code: int,
                                                  word: str) -> None:
    out = tmp_path / "out" / "converted.json"
    result = _signal_while_writing(["convert", big_pool, "-o", out, "--to", "alpaca", "--on-error", "skip"],
                                   tmp_path, signum)
    line = one_error(result, code)
    assert line.startswith(word) and "no partial output was left behind" in line
    assert leftovers(tmp_path) == [] and not out.exists()


def test_sigterm_during_a_skip_run_leaves_no_partial_rejects_file(tmp_path: Path, big_pool: Path) -> None:
    """The rejects file is a temporary file too: a killed `--on-error skip` run leaves none (and an earlier
    one as it was); a run that ends well moves it into place."""
    pool = tmp_path / "pool.jsonl"
    with open(pool, "wb") as f:
        f.write(b"{not json\n")  # a reject at once, so its row is written before the signal
        f.write(big_pool.read_bytes())
    out = tmp_path / "out" / "converted.jsonl"
    rejects = out.with_name(out.name + ".rejects.jsonl")
    out.parent.mkdir()
    rejects.write_text("earlier run\n")
    result = _signal_while_writing(["convert", pool, "-o", out, "--to", "alpaca", "--on-error", "skip"],
                                   tmp_path, signal.SIGTERM)
    assert one_error(result, 130).startswith("terminated")
    assert leftovers(tmp_path) == [] and not out.exists() and rejects.read_text() == "earlier run\n"
    small = write_jsonl(tmp_path / "small.jsonl", [sharegpt(("human", "q"), ("gpt", "a"))])
    small.write_text("{not json\n" + small.read_text())
    done = deita("convert", small, "-o", out, "--to", "alpaca", "--on-error", "skip")
    assert done.returncode == 0, done.stderr
    assert json.loads(rejects.read_text())["location"] == "line 1" and leftovers(tmp_path) == []


def test_sigterm_during_dedup_leaves_nothing(tmp_path: Path, big_pool: Path) -> None:
    out = tmp_path / "dedup.jsonl"
    result = _signal_while_writing(["dedup", big_pool, "-o", out], tmp_path, signal.SIGTERM)
    one_error(result, 130)
    assert leftovers(tmp_path) == [] and not out.exists()


@pytest.mark.slow
def test_sigterm_during_select_leaves_no_temporary_file_and_the_rerun_finishes(tmp_path: Path) -> None:
    pool = Path(__file__).parents[2] / "examples" / "sample.jsonl"
    out = tmp_path / "sel" / "selected.jsonl"
    cmd = ["select", pool, "-o", out, "--size", "10", "--preset", "offline"]
    result = _signal_while_writing(cmd, tmp_path, signal.SIGTERM)
    one_error(result, 130)
    assert leftovers(tmp_path) == [] and not out.exists()
    assert deita(*cmd).returncode == 0
    assert leftovers(tmp_path) == [] and out.exists()


def test_a_stale_temporary_file_of_a_dead_process_is_removed_by_the_rerun(tmp_path: Path) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", [sharegpt(("human", "hi"), ("gpt", "hello"))])
    dead = 4_194_305  # above the largest pid Linux hands out
    stale = tmp_path / f".out.jsonl.{dead}.0badf00d.tmp"
    stale.write_text("half a file")
    alive = tmp_path / f".out.jsonl.{os.getpid()}.0badf00d.tmp"  # a running process's: not touched
    alive.write_text("someone else's write in flight")
    assert deita("convert", pool, "-o", tmp_path / "out.jsonl", "--to", "alpaca").returncode == 0
    assert not stale.exists() and alive.exists()


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A real 1 MB tmpfs; skipped where mounting is not allowed (the injected test below still runs)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("command", [["convert", "--to", "alpaca"], ["dedup"]])
def test_a_full_disk_names_the_output_and_leaves_nothing(tiny_disk: Path, big_pool: Path, command: list) -> None:
    out = tiny_disk / "sub" / "out.jsonl"
    line = one_error(deita(command[0], big_pool, "-o", out, *command[1:]))
    assert line.startswith(f"{out}: cannot write (No space left on device)"), line
    assert f"free in {out.parent}" in line
    if command[0] == "convert":  # records stream out: the first megabyte was written before the disk filled
        assert "written before it filled" in line
    assert leftovers(tiny_disk) == [] and not out.exists()


def test_a_failing_write_injected_at_the_os_call_names_the_output(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no tmpfs can be mounted: the file object the writer opens fails as a full disk does."""
    real_open = open

    class Full:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data: bytes) -> int:
            self.n += len(data)
            if self.n > 5000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def close(self) -> None:
            self.f.close()

    monkeypatch.setattr(writers, "open", lambda *a, **k: Full(real_open(*a, **k)), raising=False)
    out = tmp_path / "out.jsonl"
    with pytest.raises(DeitaError, match=rf"^{out}: cannot write \(No space left on device\); .* free in"):
        with RecordWriter(out) as writer:
            for i in range(1000):
                writer.write({"i": i, "text": "x" * 50})
    assert list(tmp_path.iterdir()) == [] and atomic.writing() == []


# ---------------------------------------------------------------- output folders, before the work


def test_dedup_makes_a_missing_output_folder(tmp_path: Path) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", [sharegpt(("human", f"q{i}"), ("gpt", f"a{i}")) for i in range(3)])
    out = tmp_path / "missing" / "deeper" / "out.jsonl"
    result = deita("dedup", pool, "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.exists() and out.with_name("out.jsonl.duplicates.jsonl").exists()


@pytest.mark.parametrize("command", [["dedup"], ["convert", "--to", "alpaca"], ["filter", "--strategy", "random",
                                                                                    "--size", "1"]])
def test_an_output_that_cannot_be_written_fails_before_reading_the_input(tmp_path: Path, command: list) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", [sharegpt(("human", f"q{i}"), ("gpt", f"a{i}")) for i in range(3)])
    (tmp_path / "file").write_text("in the way")
    result = deita(command[0], pool, "-o", tmp_path / "file" / "out.jsonl", *command[1:],
                   env={"DEITA_COUNT_READS": "1"})
    line = one_error(result)
    assert line.endswith("file is a file, not a folder"), line
    assert "deita reads:" not in result.stderr  # refused before the input was opened
