"""`deita probe` as a person runs it: the table, the JSON, the page, everything injected kept in its folder,
and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import chat_pool, scored_pool, write_jsonl

from deita.probe.injectors import DEFAULT_CLASSES
from deita.report.run import report_file

DEITA = shutil.which("deita") or str(Path(sys.executable).parent / "deita")


def deita(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([DEITA, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=dict(os.environ))


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("probe")
    write_jsonl(folder / "pool.jsonl", chat_pool(120, seed=11))
    result = deita("probe", folder / "pool.jsonl", "-o", folder / "probe.json", "--preset", "offline",
                   "--size", "30", "--rate", "0.25", "--seeds", "0,1")
    assert result.returncode == 0, result.stderr
    return folder, result


def test_probe_prints_the_table_and_writes_json_and_page(probed) -> None:
    folder, result = probed
    probe = json.loads((folder / "probe.json").read_text())
    assert probe["seeds"] == [0, 1] and probe["classes"] == list(DEFAULT_CLASSES) and probe["rate"] == 0.25
    for run in probe["runs"]:
        assert run["pool_records"] == 150 and sum(run["pool_counts"].values()) == 30 and run["size"] == 30
        assert run["selected"] == run["random_selected"] == 30
        for name, ratio in run["ratios"].items():
            if name != "all":
                expected = (run["selected_counts"][name] / 30) / (run["pool_counts"][name] / 150)
                assert ratio == pytest.approx(expected)
    # exact copies come after their original, so dedup drops every one of them for both strategies
    assert probe["summary"]["exact_copy"]["selector"]["max"] == probe["summary"]["exact_copy"]["random"]["max"] == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["class", "in", "pool", "offline/deita"] and lines[0].split()[-1] == "random"
    assert [line.split()[0] for line in lines[1:len(DEFAULT_CLASSES) + 2]] == [*DEFAULT_CLASSES, "all"]
    page = (folder / "probe.html").read_text()
    assert "Probe: how much known-bad data the selection keeps" in page and "data:image/png;base64," in page


def test_injected_records_stay_in_the_probe_folder(probed) -> None:
    folder, _ = probed
    assert sorted(p.name for p in folder.iterdir()) == ["pool.jsonl", "probe.html", "probe.json", "probe.json.work"]
    assert "deita_probe" not in (folder / "pool.jsonl").read_text()


def test_report_shows_the_probe_section(probed, tmp_path) -> None:
    folder, _ = probed
    pool = scored_pool(folder / "probe.json.work" / "seed-0" / "selected.jsonl", tmp_path / "scored.jsonl")
    out = report_file(folder / "probe.json.work" / "seed-0" / "selected.jsonl", pool,
                      tmp_path / "r.html", probe_path=folder / "probe.json")
    html = out.read_text()
    assert "Probe: how much known-bad data the selection keeps" in html and "near_copy" in html
    (tmp_path / "bad.json").write_text('{"runs": []}')
    result = deita("report", folder / "probe.json.work" / "seed-0" / "selected.jsonl", "--pool", pool,
                   "-o", tmp_path / "r2.html", "--probe", tmp_path / "bad.json")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --probe") and "not a probe JSON" in result.stderr


@pytest.mark.parametrize(("args", "code", "message"), [
    (("--rate", "1.5"), 1, "error: --rate: 1.5 is out of range (must be above 0 and below 1)"),
    (("--seeds", "0,x"), 2, "is not a comma-separated list of int values"),
    (("--classes", "truncated,bogus"), 1, "error: unknown probe class 'bogus'"),
    (("--size", "500"), 1, "error: the selection size (500) is not below the probe's pool (60 records)"),
    (("--preset", "fast"), 1, "error: --preset: 'fast' is not one of paper, offline"),
])
def test_probe_usage_and_value_errors_are_one_line(tmp_path, args, code, message) -> None:
    write_jsonl(tmp_path / "pool.jsonl", chat_pool(50, seed=1))
    result = deita("probe", tmp_path / "pool.jsonl", "-o", tmp_path / "p.json", "--preset", "offline", *args)
    assert result.returncode == code and "Traceback" not in result.stderr
    assert message in result.stderr
    if code == 1:
        assert result.stderr.count("\n") == 1


def test_probe_of_a_missing_pool(tmp_path) -> None:
    result = deita("probe", tmp_path / "none.jsonl", "-o", tmp_path / "p.json", "--preset", "offline")
    assert result.returncode == 1 and result.stderr == f"error: {tmp_path / 'none.jsonl'}: no such file or directory\n"
