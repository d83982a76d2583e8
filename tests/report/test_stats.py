"""`deita report --stats`: a malformed statistics file is one error naming the file (and the field)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from builders import sharegpt, write_jsonl

from deita.errors import DeitaError
from deita.report.stats import check_stats


@pytest.mark.parametrize(("text", "problem"), [
    ('{"selected": [1, 2', "not a readable statistics JSON (Expecting"),
    ("[1, 2]", "not filter statistics (a JSON object from `deita filter --stats`), but [1, 2]"),
    ('{"skipped": [{"index": "a"}]}', "field 'skipped' should be a list of"),
    ('{"sort_key": "complexity_scores"}', "field 'sort_key' should be a list of field names"),
    ('{"n_examined": -4}', "field 'n_examined' should be a count, not -4"),
])
def test_a_malformed_stats_file_is_one_error_naming_it(tmp_path: Path, text: str, problem: str) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", [sharegpt(("human", f"q{i}"), ("gpt", f"a{i}"), id=str(i))
                                                 for i in range(4)])
    stats = tmp_path / "stats.json"
    stats.write_text(text)
    result = subprocess.run([sys.executable, "-m", "deita.cli", "report", str(pool), "--pool", str(pool),
                             "--stats", str(stats), "-o", str(tmp_path / "r.html")], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: --stats {stats}: {problem}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_a_huge_value_is_quoted_short() -> None:
    with pytest.raises(DeitaError) as e:
        check_stats({"threshold": "x" * 10_000}, "--stats s.json")
    assert len(str(e.value)) < 200
