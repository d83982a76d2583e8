"""data/source.py through the installed command: compressed and UTF-16/32 inputs read as they are, pipes
streamed once or refused at once, a file that is not JSON named for what it is, and an input that changes
between two reads stopping the command before anything is written."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zstandard
from builders import sharegpt, write_jsonl

from deita.data.io import ReadStats, iter_records
from deita.data.source import InputChanged
from deita.dedup.config import DedupConfig
from deita.dedup.run import dedup_file
from deita.selection.config import FilterConfig
from deita.selection.run import filter_file
from deita.training.data import sample_pairs

DEITA = [sys.executable, "-m", "deita.cli"]


def deita(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*DEITA, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def one_error(result: subprocess.CompletedProcess, code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


def records(n: int = 12) -> list[dict]:
    return [sharegpt(("human", f"question number {i} about topic {i * 7}"), ("gpt", f"answer {i} " * (i + 2)),
                     id=f"r{i}") for i in range(n)]


def no_temporary_files(folder: Path) -> None:
    left = [p for p in folder.rglob("*") if ".tmp" in p.name]
    assert left == [], left


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pool.jsonl", records())


# ---------------------------------------------------------------- compressed and other encodings


def _encodings(tmp_path: Path, plain: Path) -> dict[str, Path]:
    data = plain.read_bytes()
    rows = [json.loads(line) for line in data.splitlines()]
    files = {
        "gzip": tmp_path / "pool.jsonl.gz",
        "zstd": tmp_path / "pool.jsonl.zst",
        "gzip json": tmp_path / "pool.json.gz",
        "utf-16 json": tmp_path / "pool16.json",
        "utf-32 jsonl": tmp_path / "pool32.jsonl",
        "utf-16-be json": tmp_path / "pool16be.json",
    }
    files["gzip"].write_bytes(gzip.compress(data))
    files["zstd"].write_bytes(zstandard.ZstdCompressor().compress(data))
    files["gzip json"].write_bytes(gzip.compress(json.dumps(rows, indent=1).encode()))
    files["utf-16 json"].write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-16")  # with its BOM
    files["utf-32 jsonl"].write_text(data.decode(), encoding="utf-32")
    files["utf-16-be json"].write_bytes(b"\xfe\xff" + json.dumps(rows).encode("utf-16-be"))
    return files


def test_compressed_and_utf16_32_inputs_read_the_same_records(tmp_path: Path, plain: Path) -> None:
    expected = [record.raw for record in iter_records(plain)]
    for name, path in _encodings(tmp_path, plain).items():
        assert [record.raw for record in iter_records(path)] == expected, name


def test_dedup_of_a_gzip_file_writes_what_the_plain_file_gives(tmp_path: Path, plain: Path) -> None:
    files = _encodings(tmp_path, plain)
    assert deita("dedup", plain, "-o", tmp_path / "plain.out.jsonl").returncode == 0
    for name in ("gzip", "zstd", "utf-16 json"):
        out = tmp_path / f"{name.replace(' ', '-')}.out.jsonl"
        result = deita("dedup", files[name], "-o", out)
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == (tmp_path / "plain.out.jsonl").read_bytes(), name


def test_a_compressed_output_is_refused_before_any_work(tmp_path: Path, plain: Path) -> None:
    line = one_error(deita("convert", plain, "-o", tmp_path / "out.jsonl.gz", "--to", "alpaca"))
    assert "compressed outputs are not written" in line and "out.jsonl" in line


@pytest.mark.parametrize(("content", "what"), [
    (b"id,name\n1,two\n", "text starting 'id,name"),
    (b"PAR1\x00\x01binary", "a parquet file"),
    (b"\x00\x01\x02\x03\xff\xfe\xfd", "binary data"),
])
def test_a_file_that_is_not_json_is_named_for_what_it_is(tmp_path: Path, content: bytes, what: str) -> None:
    path = tmp_path / "pool.json"
    path.write_bytes(content)
    line = one_error(deita("validate", path))
    assert line.startswith(f"{path}, line 1: not JSON: ") and what in line, line
    assert "not a JSON array" not in line


def test_a_bad_utf16_file_names_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "pool.json"
    path.write_bytes(b"\xff\xfe" + "[{}]".encode("utf-16-le") + b"\x00\xd8")  # a lone high surrogate at the end
    line = one_error(deita("validate", path))
    assert "not valid UTF-16-LE text" in line and str(path) in line


# ---------------------------------------------------------------- pipes


def _fifo(tmp_path: Path, data: bytes, name: str = "pool.fifo") -> Path:
    """A real named pipe, fed by a thread; the command must read it once, to its end."""
    fifo = tmp_path / name
    os.mkfifo(fifo)

    def feed() -> None:
        try:
            with open(fifo, "wb") as f:
                f.write(data)
        except BrokenPipeError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    return fifo


def test_a_command_that_reads_once_streams_a_named_pipe(tmp_path: Path, plain: Path) -> None:
    fifo = _fifo(tmp_path, gzip.compress(plain.read_bytes()))  # zcat's job too: compressed through a pipe
    result = deita("convert", fifo, "-o", tmp_path / "out.jsonl", "--to", "alpaca", "--on-error", "skip", timeout=60)
    assert result.returncode == 0, result.stderr
    direct = deita("convert", plain, "-o", tmp_path / "direct.jsonl", "--to", "alpaca", "--on-error", "skip")
    assert direct.returncode == 0
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "direct.jsonl").read_bytes()


def test_process_substitution_streams_into_validate(plain: Path) -> None:
    result = subprocess.run(["bash", "-c", f"{' '.join(DEITA)} validate <(cat {plain})"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "12 records" in result.stdout


@pytest.mark.parametrize("command", [["dedup"], ["dpo-data", "--size", "2"]])
def test_a_command_that_reads_twice_refuses_a_pipe_at_once(tmp_path: Path, plain: Path, command: list) -> None:
    fifo = _fifo(tmp_path, plain.read_bytes())
    line = one_error(deita(command[0], fifo, "-o", tmp_path / "out.jsonl", *command[1:], timeout=60))
    assert line.startswith(f"{fifo} is a pipe or device, which can be read only once"), line
    assert not (tmp_path / "out.jsonl").exists()
    no_temporary_files(tmp_path)


# ---------------------------------------------------------------- an input replaced between two reads


def _replace_before_the_second_read(monkeypatch: pytest.MonkeyPatch, path: Path, keep_stat: bool) -> list:
    """Replace ``path`` the moment the command starts its second read (``ReadStats.again``): with other
    records of the same size, and with ``keep_stat`` the same mtime, so only the content hash can tell."""
    calls = []
    again = ReadStats.again

    def replaced(self: ReadStats) -> ReadStats:
        calls.append(path)
        data = path.read_bytes()
        stat = path.stat()
        changed = data.replace(b"question number 3", b"question NUMBER 9")
        assert len(changed) == len(data) and changed != data
        path.write_bytes(changed)
        if keep_stat:
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        return again(self)

    monkeypatch.setattr(ReadStats, "again", replaced)
    return calls


@pytest.mark.parametrize("keep_stat", [False, True], ids=["new-mtime", "same-size-and-mtime"])
def test_dedup_stops_before_writing_when_its_input_changes(tmp_path: Path, plain: Path, keep_stat: bool,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _replace_before_the_second_read(monkeypatch, plain, keep_stat)
    out = tmp_path / "out" / "dedup.jsonl"
    with pytest.raises(InputChanged, match=rf"^{plain} changed during the run .*nothing was written"):
        dedup_file(plain, out, DedupConfig())
    assert calls == [plain]
    assert not out.exists() and not out.with_name("dedup.jsonl.duplicates.jsonl").exists()
    no_temporary_files(tmp_path)


def test_dpo_data_stops_before_writing_when_its_input_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    pairs = [{"prompt": f"question number {i}", "chosen": f"good answer {i}", "rejected": f"bad answer {i}"}
             for i in range(8)]
    path = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    _replace_before_the_second_read(monkeypatch, path, keep_stat=True)
    with pytest.raises(InputChanged):
        sample_pairs(path, tmp_path / "out.jsonl", 4, seed=1)
    assert not (tmp_path / "out.jsonl").exists()
    no_temporary_files(tmp_path)


def test_filter_stops_before_writing_when_its_json_input_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    rows = [{**r, "complexity_scores": [float(i)], "quality_scores": [1.0]} for i, r in enumerate(records())]
    path = tmp_path / "scored.json"  # a JSON array: filter reads it twice (JSONL is fetched by offset)
    path.write_text(json.dumps(rows, indent=1))
    _replace_before_the_second_read(monkeypatch, path, keep_stat=True)
    with pytest.raises(InputChanged):
        filter_file(path, tmp_path / "sel.json", FilterConfig(strategy="score", size=3))
    assert not (tmp_path / "sel.json").exists()
    no_temporary_files(tmp_path)


def test_a_file_read_once_keeps_no_fingerprint_and_costs_no_hash(plain: Path) -> None:
    stats = ReadStats()
    assert len(list(iter_records(plain, stats=stats))) == 12
    assert stats.fingerprint is None
    twice = ReadStats(reread=True)
    list(iter_records(plain, stats=twice))
    assert twice.fingerprint is not None and twice.fingerprint.size == plain.stat().st_size
    assert len(list(iter_records(plain, stats=twice.again()))) == 12  # unchanged: the second read passes


def test_records_at_streams_a_compressed_file(tmp_path: Path, plain: Path) -> None:
    from deita.data.io import records_at

    gz = tmp_path / "pool.jsonl.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    stats, spans = ReadStats(reread=True), []
    for _ in iter_records(gz, stats=stats):
        spans.append((stats.record_start, stats.bytes_read))
    order = np.array([5, 0, 11, 3])
    got = list(records_at(gz, [spans[i] for i in order], expect=stats.fingerprint))
    assert [r["id"] for r in got] == [f"r{i}" for i in order]


@pytest.mark.parametrize("name", ["pool.parquet", "pool_dataset"])
def test_a_parquet_file_or_dataset_replaced_between_the_reads_is_caught(tmp_path: Path, name: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from deita.data.io import write_records

    path = tmp_path / name
    write_records(path, records())
    again = ReadStats.again

    def replaced(self: ReadStats) -> ReadStats:
        time.sleep(0.01)  # a later mtime even on coarse clocks
        write_records(path, records(13))
        return again(self)

    monkeypatch.setattr(ReadStats, "again", replaced)
    with pytest.raises(InputChanged):
        dedup_file(path, tmp_path / "out.jsonl", DedupConfig())
    assert not (tmp_path / "out.jsonl").exists()
    no_temporary_files(tmp_path)
