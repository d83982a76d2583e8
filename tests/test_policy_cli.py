"""The bad-record policy through the real commands: a bad record stops a run with one line naming the file
and the record, whose hint names only flags the command has and the rejects file a skipping run really
writes; with `--on-error skip` that file holds the record with its index, location, kind and reason, and
the summary counts the rejects by kind. Commands that cannot skip say so."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from builders import run_main, sharegpt, write_jsonl

from deita.data.policy import KINDS

BAD_LINE = "{broken json"



def pool_with_bad_line(path: Path, n: int = 6) -> Path:
    """`n` good ShareGPT records with a broken JSON line as line 2."""
    lines = [json.dumps(sharegpt(("human", f"question {i} about topic {i}"), ("gpt", f"answer {i} in words"),
                                 id=f"r{i}")) for i in range(n)]
    lines.insert(1, BAD_LINE)
    path.write_text("\n".join(lines) + "\n")
    return path


def help_flags(capsys, command: list[str]) -> set[str]:
    code, out, _ = run_main(capsys, *command, "--help")
    assert code == 0
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", out))


def named_flags(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))


def fail_line(capsys, args: list, data: Path) -> str:
    """The run stops with exit 1 and one `error:` line naming the file and the record."""
    code, _, err = run_main(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {data}, line 2: invalid JSON"), err
    return lines[0]


def check_skippable(capsys, command: list[str], args: list, data: Path) -> list[dict]:
    """Fail mode: the hint names `--on-error` (which the command has) and a rejects path; skip mode writes
    exactly there, rows with index/location/kind/reason, and the summary counts by kind."""
    line = fail_line(capsys, [*command, *args], data)
    assert named_flags(line) <= help_flags(capsys, command), line
    assert "--on-error" in help_flags(capsys, command)
    hinted = re.search(r"Use --on-error skip to write bad records to (\S+) and continue$", line)
    assert hinted, line
    rejects = Path(hinted.group(1))
    assert not rejects.exists()
    code, out, err = run_main(capsys, *command, *args, "--on-error", "skip")
    assert code == 0, err
    rows = [json.loads(text) for text in rejects.read_text().splitlines()]
    assert rows and {"index", "location", "kind", "reason", "record"} <= set(rows[0])
    assert (rows[0]["index"], rows[0]["location"], rows[0]["kind"]) == (1, "line 2", "parse")
    assert rows[0]["reason"].startswith("invalid JSON") and rows[0]["record"] == BAD_LINE
    assert all(row["kind"] in KINDS for row in rows)
    assert re.search(rf"rejected 1 (of \d+ )?records \(1 parse\) → {re.escape(str(rejects))}", out), out
    return rows


def test_convert(tmp_path, capsys):
    data = pool_with_bad_line(tmp_path / "pool.jsonl")
    check_skippable(capsys, ["convert"], [data, "-o", tmp_path / "out.jsonl", "--to", "messages"], data)


def test_dedup(tmp_path, capsys):
    data = pool_with_bad_line(tmp_path / "pool.jsonl")
    check_skippable(capsys, ["dedup"], [data, "-o", tmp_path / "out.jsonl", "-q"], data)


def test_decontaminate(tmp_path, capsys):
    data = pool_with_bad_line(tmp_path / "pool.jsonl")
    evals = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": "question 3 about topic 3 and nothing else here"}])
    check_skippable(capsys, ["decontaminate"], [data, "--against", evals, "-o", tmp_path / "out.jsonl", "-q"], data)


def test_score(tmp_path, capsys, tiny_llama):
    data = pool_with_bad_line(tmp_path / "pool.jsonl", n=3)
    check_skippable(capsys, ["score"], [data, "-o", tmp_path / "out.jsonl", "--model", tiny_llama, "-q"], data)


def test_embed(tmp_path, capsys):
    data = pool_with_bad_line(tmp_path / "pool.jsonl", n=3)
    check_skippable(capsys, ["embed"], [data, "-o", tmp_path / "emb.npy", "-q"], data)


def test_select_hint_names_the_rejects_file_select_writes(tmp_path, capsys):
    """Before the policy, select's hint named a file under OUTPUT.work/ while skip wrote OUTPUT.rejects.jsonl."""
    data = pool_with_bad_line(tmp_path / "pool.jsonl", n=8)
    rows = check_skippable(capsys, ["select"], [data, "-o", tmp_path / "sel.jsonl", "--size", 3, "--preset",
                                                "offline", "--no-report", "-q"], data)
    assert len(rows) == 1 and (tmp_path / "sel.jsonl.rejects.jsonl").exists()


def test_dpo_data(tmp_path, capsys):
    pairs = [json.dumps({"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}) for i in range(4)]
    pairs.insert(1, BAD_LINE)
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(pairs) + "\n")
    check_skippable(capsys, ["dpo-data"], [data, "-o", tmp_path / "out.jsonl", "--size", 2], data)


def test_evol_dry_run_hint_names_its_flag_and_file(tmp_path, capsys):
    seeds = pool_with_bad_line(tmp_path / "seeds.jsonl", n=2)
    command = ["evol", "complexity"]
    line = fail_line(capsys, [*command, seeds, "-o", tmp_path / "e.jsonl", "--base-url", "http://127.0.0.1:9/v1",
                              "--served-model", "m", "--dry-run"], seeds)
    assert named_flags(line) <= help_flags(capsys, command)
    assert line.endswith(f"Use --on-error skip to write bad records to {tmp_path / 'e.jsonl.rejects.jsonl'} and "
                         "continue")


RANKED_ROW = {"index": 0, "type": "complexity", "instruction": "Name a colour.", "order": [1, 0],
              "variants": ["Name a colour.", "Name three colours with hex codes."], "scores": [1, 2]}


@pytest.mark.parametrize("kind", ["sft", "scorer"])
def test_train_hint_names_the_rejects_file_in_the_output_folder(tmp_path, capsys, tiny_llama, kind):
    pytest.importorskip("trl")
    if kind == "sft":
        data = pool_with_bad_line(tmp_path / "data.jsonl", n=2)
    else:
        data = tmp_path / "ranked.jsonl"
        data.write_text(json.dumps(RANKED_ROW) + "\n" + BAD_LINE + "\n")
    command = ["train", kind]
    line = fail_line(capsys, [*command, data, "-o", tmp_path / "out", "--model", tiny_llama], data)
    assert named_flags(line) <= help_flags(capsys, command)
    assert line.endswith(f"Use --on-error skip to write bad records to {tmp_path / 'out' / 'rejects.jsonl'} and "
                         "continue")


def test_validate_names_no_flag_it_lacks(tmp_path, capsys):
    data = pool_with_bad_line(tmp_path / "pool.jsonl")
    code, out, _ = run_main(capsys, "validate", data)
    assert code == 1 and f"problem: {data}, line 2: invalid JSON" in out
    assert named_flags(out) <= help_flags(capsys, ["validate"]), out


def test_filter_and_report_say_they_cannot_skip(tmp_path, capsys):
    data = pool_with_bad_line(tmp_path / "pool.jsonl")
    line = fail_line(capsys, ["filter", data, "-o", tmp_path / "sel.jsonl", "--strategy", "random", "--size", 2],
                     data)
    assert "--on-error" not in help_flags(capsys, ["filter"]) and not named_flags(line)
    assert line.endswith(f"The filter stops at bad records (it cannot skip them); `deita validate {data}` lists "
                         "every one")
    good = write_jsonl(tmp_path / "good.jsonl", [sharegpt(("human", "q"), ("gpt", "a"), id="g")])
    line = fail_line(capsys, ["report", data, "--pool", good, "-o", tmp_path / "r.html"], data)
    assert "--on-error" not in help_flags(capsys, ["report"]) and not named_flags(line)
    assert "The report stops at bad records (it cannot skip them)" in line


def test_a_policy_touches_no_file_before_the_path_checks(tmp_path, capsys):
    """The rejects file of a skipping run is also the input: refused, and the input is left as it was (the
    policy removes a stale rejects file only after a run that passed its checks)."""
    seeds = pool_with_bad_line(tmp_path / "e.jsonl.rejects.jsonl", n=2)
    original = seeds.read_bytes()
    code, _, err = run_main(capsys, "evol", "complexity", seeds, "-o", tmp_path / "e.jsonl", "--base-url",
                            "http://127.0.0.1:9/v1", "--served-model", "m", "--on-error", "skip")
    assert code == 1 and "rejects file" in err and seeds.read_bytes() == original
