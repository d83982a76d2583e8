"""The pass with main's budgets and inputs: token costs and groups are columns of its one read, a pipe is
refused before any work (the pool is read more than once), and a pool replaced between its reads stops the
run before the output is written."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from builders import run_main

from deita.data import read_counts
from deita.passes.columns import GROUP_IDS, TOKEN_COSTS, Columns
from deita.selection.tokens import TokenCounter, record_tokens

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample.jsonl"
LENGTHS = ("--sort-key", "instruction_lengths,response_lengths")


def select(capsys, pool: Path, output: Path, *more: str) -> tuple[int, str, str]:
    return run_main(capsys, "select", pool, "-o", output, "--preset", "offline", *LENGTHS, *more)


def test_token_costs_and_groups_are_columns_of_the_one_read(capsys, monkeypatch, tmp_path):
    pool = tmp_path / "pool.jsonl"
    lines = SAMPLE.read_text().splitlines()
    # a source field on some records, so --max-share balances real groups (and the '(no field)' one)
    records = [{**json.loads(line), **({"source": f"s{i % 3}"} if i % 4 else {})} for i, line in enumerate(lines)]
    pool.write_text("".join(json.dumps(record) + "\n" for record in records))
    output = tmp_path / "sel.jsonl"
    monkeypatch.setattr(read_counts, "READS", Counter())
    code, _, err = select(capsys, pool, output, "--size", "40", "--token-budget", "30000", "--max-share", "0.3",
                          "--source-field", "source")
    assert code == 0, err
    assert list(read_counts.READS) == [str(pool.resolve())] and read_counts.READS[str(pool.resolve())] <= 3
    work = output.with_name("sel.jsonl.work")
    columns = Columns(work / "columns")
    rows = np.asarray(columns.row_index).tolist()
    stats = json.loads((work / "filter_stats.json").read_text())
    counter = TokenCounter(stats["budget_tokenizer"])
    expected = [record_tokens(records[row], counter) for row in rows]
    assert np.asarray(columns.record_column(TOKEN_COSTS)).tolist() == expected
    keys = columns.group_keys
    assert [keys[g] for g in np.asarray(columns.record_column(GROUP_IDS)).tolist()] == \
        [records[row].get("source") for row in rows]
    selected = [json.loads(line) for line in output.read_text().splitlines()]
    held = sum(record_tokens(record, counter) for record in selected)
    assert stats["tokens_selected"] == held <= 30000
    per_group: dict[str, int] = {}
    for record in selected:
        name = record.get("source", "(no field)")
        per_group[name] = per_group.get(name, 0) + 1
    assert per_group == stats["selected_per_group"] and max(per_group.values()) <= stats["group_cap"] == 12

    # another budget is a setting of the walk only: the finished columns serve it
    code, out, err = select(capsys, pool, output, "--size", "40", "--token-budget", "10000", "--max-share", "0.3",
                            "--source-field", "source")
    assert code == 0, err
    assert "reused the finished columns" in out
    assert json.loads((work / "filter_stats.json").read_text())["tokens_selected"] <= 10000


def test_a_pipe_is_refused_before_any_work(capsys, tmp_path):
    fifo = tmp_path / "pool.fifo"
    os.mkfifo(fifo)

    def feed() -> None:  # a writer, so a reader that opened the pipe would not hang
        try:
            with open(fifo, "wb") as f:
                f.write(SAMPLE.read_bytes())
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    output = tmp_path / "sel.jsonl"
    code, out, err = select(capsys, fifo, output, "--size", "5")
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: {fifo} is a pipe or device, which can be read only once"), err
    assert not output.exists()
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    if writer.is_alive():  # nobody read it: let the writer go
        with open(fifo, "rb") as f:
            f.read()


def _replace(pool: Path, keep_stat: bool) -> None:
    """Other records of the same size (and with `keep_stat` the same mtime: only the bytes' hash tells)."""
    data, stat = pool.read_bytes(), pool.stat()
    changed = data.replace(b" the ", b" thy ", 50)  # in the texts only: every record stays good
    assert len(changed) == len(data) and changed != data
    pool.write_bytes(changed)
    if keep_stat:
        os.utime(pool, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize("keep_stat", [False, True], ids=["new-mtime", "same-size-and-mtime"])
def test_a_pool_replaced_after_the_first_read_stops_the_run(capsys, monkeypatch, tmp_path, keep_stat):
    import deita.passes.run as pass_run

    pool = tmp_path / "pool.jsonl"
    pool.write_bytes(SAMPLE.read_bytes())
    decide = pass_run.hash_and_decide

    def then_replaced(*args, **kwargs):
        keep = decide(*args, **kwargs)
        _replace(pool, keep_stat)
        return keep

    monkeypatch.setattr(pass_run, "hash_and_decide", then_replaced)
    output = tmp_path / "sel.jsonl"
    code, _, err = select(capsys, pool, output, "--size", "5")
    assert code == 1
    assert re.match(rf"error: {re.escape(str(pool))} changed during the run .*nothing was written", err.strip()), err
    assert not output.exists() and not output.with_name("sel.jsonl.report.html").exists()
    assert not (output.with_name("sel.jsonl.work") / "columns" / "columns.json").exists()


def test_a_pool_replaced_before_the_fetch_stops_the_run(capsys, monkeypatch, tmp_path):
    import deita.passes.select as pass_select

    pool = tmp_path / "pool.jsonl"
    pool.write_bytes(SAMPLE.read_bytes())
    choose = pass_select.select_on_columns

    def then_replaced(*args, **kwargs):
        _replace(pool, keep_stat=False)
        return choose(*args, **kwargs)

    monkeypatch.setattr(pass_select, "select_on_columns", then_replaced)
    output = tmp_path / "sel.jsonl"
    code, _, err = select(capsys, pool, output, "--size", "5")
    assert code == 1
    assert f"{pool} changed" in err and "nothing was written" in err, err
    assert not output.exists()


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_a_compressed_pool_selects_the_bytes_of_the_plain_one(capsys, tmp_path, suffix):
    """Every read of the pass goes through data/source.py: decompressed by its bytes, fetched by streaming."""
    import gzip

    import zstandard

    stored = json.loads((ROOT / "tests" / "data" / "select_ids.json").read_text())["runs"]["sample_size20"]
    data = SAMPLE.read_bytes()
    pool = tmp_path / f"sample{suffix}"
    pool.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else zstandard.ZstdCompressor().compress(data))
    output = tmp_path / "sel.jsonl"
    code, _, err = select(capsys, pool, output, "--size", "20")
    assert code == 0, err
    assert hashlib.sha256(output.read_bytes()).hexdigest() == stored["sha256"]


def test_a_rerun_that_adds_limits_keeps_the_scores_and_embeddings(capsys, tmp_path):
    """Only the limit columns depend on --token-budget's tokenizer and --max-share's field: a rerun that adds
    them reads the pool once more for them and writes the bytes a fresh run writes."""
    pool = tmp_path / "pool.jsonl"
    lines = SAMPLE.read_text().splitlines()
    pool.write_text("".join(json.dumps({**json.loads(line), "source": f"s{i % 3}"}) + "\n"
                            for i, line in enumerate(lines)))
    limits = ("--size", "30", "--token-budget", "20000", "--max-share", "0.4", "--source-field", "source")
    fresh = tmp_path / "fresh.jsonl"
    assert select(capsys, pool, fresh, *limits)[0] == 0
    rerun = tmp_path / "rerun.jsonl"
    assert select(capsys, pool, rerun, "--size", "30")[0] == 0
    work = rerun.with_name("rerun.jsonl.work")
    computed = {path.name: path.stat().st_mtime_ns for path in (work / "columns").glob("*.values.npy")}
    embeddings = (work / "embeddings.npy").stat().st_mtime_ns
    code, out, err = select(capsys, pool, rerun, *limits)
    assert code == 0, err
    rows = Columns(work / "columns").rows
    assert f"read the pool once more for the limit columns ({rows:,} records)" in out
    assert rerun.read_bytes() == fresh.read_bytes()
    assert {path.name: path.stat().st_mtime_ns for path in (work / "columns").glob("*.values.npy")} == computed
    assert (work / "embeddings.npy").stat().st_mtime_ns == embeddings
    code, out, err = select(capsys, pool, rerun, "--size", "30", "--token-budget", "20000")
    assert code == 0 and "limit columns" in out, err  # a limit taken away: the marker follows, nothing recomputed
    assert (work / "embeddings.npy").stat().st_mtime_ns == embeddings
