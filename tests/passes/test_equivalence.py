"""`deita select` as one pass selects what the staged path selected, byte for byte: the ids and sha256 of
whole outputs recorded on main before the pass (tests/data/select_ids.json)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STORED = json.loads((ROOT / "tests" / "data" / "select_ids.json").read_text())["runs"]
POOL5K = Path(os.environ.get("DEITA_POOL5K", ROOT.parent / "shared" / "data" / "sharegpt_v3_5k.json"))


def select(args: list[str], output: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "deita.cli", "select", *args, "-o", str(output), "--preset", "offline", "-q"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return done


def ids_of(path: Path) -> list[str]:
    text = path.read_text()
    records = json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.split("\n") if line]
    return [record["id"] for record in records]


def check_run(name: str, tmp_path: Path) -> None:
    """Select with the stored arguments into `tmp_path`; a folder that holds an earlier case's run reuses its
    finished columns (only the walk's settings differ), which is the rerun path, checked to the same bytes."""
    run = STORED[name]
    args = [str(POOL5K) if arg == "POOL5K" else arg for arg in run["args"]]
    output = tmp_path / f"sel{run['output_suffix']}"
    select(args, output)
    assert ids_of(output) == run["ids"]
    assert hashlib.sha256(output.read_bytes()).hexdigest() == run["sha256"]


@pytest.mark.parametrize("name", ["sample_size20", "sample_size50"])
def test_sample_selection_is_byte_identical_to_the_staged_path(name, tmp_path):
    check_run(name, tmp_path)


def test_a_json_array_pool_selects_the_same_records_as_its_jsonl(tmp_path):
    """A JSON array has no byte offsets to fetch by: the selected records come from one streaming read."""
    records = [json.loads(line) for line in (ROOT / "examples" / "sample.jsonl").read_text().splitlines()]
    pool = tmp_path / "sample.json"
    pool.write_text(json.dumps(records, indent=1))
    output = tmp_path / "sel.jsonl"
    select([str(pool), "--sort-key", "instruction_lengths,response_lengths", "--size", "20"], output)
    assert hashlib.sha256(output.read_bytes()).hexdigest() == STORED["sample_size20"]["sha256"]


@pytest.mark.slow
@pytest.mark.skipif(not POOL5K.exists(), reason=f"the real 5K pool is not at {POOL5K} (DEITA_POOL5K)")
@pytest.mark.parametrize("name", ["pool5k_size200_skip", "pool5k_size1000_skip", "pool5k_size500_default_sortkey_skip",
                                  "pool5k_token_budget_skip", "pool5k_max_share_skip",
                                  "pool5k_size500_aggregate_mean_skip"])
def test_real_pool_selection_is_byte_identical_to_the_staged_path(name, real_pool_run):
    check_run(name, real_pool_run)


@pytest.fixture(scope="module")
def real_pool_run(tmp_path_factory) -> Path:
    """One folder for the real pool's cases: the first computes the columns, the others walk them again (a
    limit column is added in one more read) — a fresh pass costs about 30 s on two cores."""
    return tmp_path_factory.mktemp("pool5k")
